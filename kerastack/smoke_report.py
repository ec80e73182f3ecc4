"""The smoke result of one cell, as a typed, versioned file: what `nox -s smoke` writes and publish reads. Pure.

The smoke run writes reports/smoke/<cell>.json per cell tested; publish decides from these files only
(no test-runner state): the image that was tested, and every check with its outcome and, for a skip, why.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import PipelineError
from .files import read_json, write_atomic
from .layout import SMOKE_REPORTS_DIR

SMOKE_FORMAT = 1
OUTCOMES = ("passed", "failed", "skipped")
_FIX = "run `nox -s smoke` again to write a new one"


@dataclass(frozen=True)
class Check:
    test: str  # the test's node id
    outcome: str  # passed | failed | skipped
    reason: str = ""  # why it was skipped (or how it failed)
    gpu: bool = False  # needs a GPU to mean anything


@dataclass(frozen=True)
class SmokeReport:
    cell: str
    image: str  # the reference that was tested
    image_id: str  # the image that was tested: publish pushes only this one
    checks: tuple[Check, ...] = field(default_factory=tuple)
    format: int = SMOKE_FORMAT

    def count(self, outcome: str) -> int:
        return sum(c.outcome == outcome for c in self.checks)

    @property
    def failed(self) -> list[str]:
        return [c.test for c in self.checks if c.outcome == "failed"]

    @property
    def ok(self) -> bool:
        """Nothing failed, and something passed (a run that skipped everything proves nothing)."""
        return not self.failed and self.count("passed") > 0

    @property
    def gpu_op_ran_on_gpu(self) -> bool:
        """True when every GPU check passed, and there was one: only then did an op run on a GPU."""
        gpu = [c for c in self.checks if c.gpu]
        return bool(gpu) and all(c.outcome == "passed" for c in gpu)

    def gpu_skip_reason(self) -> str:
        reasons = sorted({c.reason or c.outcome for c in self.checks if c.gpu and c.outcome != "passed"})
        return "; ".join(r for r in reasons if r) or "the smoke report records no GPU check"

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "ok": self.ok}, indent=2) + "\n"

    @classmethod
    def from_data(cls, data: object, source: str) -> SmokeReport:
        try:
            if not isinstance(data, dict):
                raise TypeError("expected a JSON object")
            if data.get("format") != SMOKE_FORMAT:
                raise TypeError(f"format {data.get('format')!r}, expected {SMOKE_FORMAT}")
            for key in ("cell", "image", "image_id"):
                if not isinstance(data.get(key), str):
                    raise TypeError(f"{key} is not a string")
            if not isinstance(data.get("checks"), list):
                raise TypeError("checks is not a list")
            checks = tuple(_check(item) for item in data["checks"])
            return cls(data["cell"], data["image"], data["image_id"], checks)
        except TypeError as exc:
            raise PipelineError(f"{source}: not a kerastack smoke report ({exc}); {_FIX}") from None


def _check(item: object) -> Check:
    if not isinstance(item, dict) or set(item) - {"test", "outcome", "reason", "gpu"}:
        raise TypeError(f"a check is not {{test, outcome, reason, gpu}}: {item!r}"[:200])
    check = Check(item.get("test"), item.get("outcome"), item.get("reason", ""), item.get("gpu", False))
    if not isinstance(check.test, str) or check.outcome not in OUTCOMES or not isinstance(check.reason, str) or not isinstance(check.gpu, bool):
        raise TypeError(f"a check has a bad field: {item!r}"[:200])
    return check


def report_path(report_dir: Path, cell_id: str) -> Path:
    return report_dir / SMOKE_REPORTS_DIR / f"{cell_id}.json"


def write(report_dir: Path, report: SmokeReport) -> Path:
    return write_atomic(report_path(report_dir, report.cell), report.to_json())


def load(report_dir: Path, cell_ids: Iterable[str]) -> dict[str, SmokeReport]:
    """The smoke reports of those cells that have one; each file is validated, and names its own cell."""
    found = {}
    for cell_id in cell_ids:
        path = report_path(report_dir, cell_id)
        if not path.exists():
            continue
        report = SmokeReport.from_data(read_json(path, "a kerastack smoke report", _FIX), str(path))
        if report.cell != cell_id:
            raise PipelineError(f"{path}: the smoke report of {report.cell}, not of {cell_id}; {_FIX}")
        found[cell_id] = report
    return found
