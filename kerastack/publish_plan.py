"""The publish plan, the pure half of publishing: from the build report, the smoke reports and the matrix,
what is pushed, in which order, and what is held back and why; and the publish report's type and reader.

kerastack.publish is the other half: it carries the plan out against a registry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .build_report import BuildReport, CellReport
from .config import Config
from .errors import PipelineError
from .files import read_json
from .layout import PUBLISH_REPORT
from .matrix import Cell
from .smoke_report import SmokeReport
from .tags import IMMUTABLE, MOVING, moving_tags

CELL = "cell"
MULTI_PLATFORM_NOT_IMPLEMENTED = "multi-platform publish is not implemented yet"


@dataclass(frozen=True)
class PushStep:
    ref: str  # where it goes: REPOSITORY:TAG
    source: str  # the local image (immutable ref) or, for a remote retag, REPOSITORY@DIGEST
    kind: str  # immutable | cell | moving
    cell: str
    image_id: str = ""  # the image that was built and smoke-tested; the source must still be it
    facts: dict = field(default_factory=dict, compare=False)  # recorded in the publish report, e.g. gpu_op_on_gpu


@dataclass(frozen=True)
class PublishPlan:
    steps: tuple[PushStep, ...]
    held_back: tuple[tuple[str, str], ...]  # (cell, why)
    moving_held_back: str = ""  # why moving tags do not move, when they don't

    @property
    def cells(self) -> list[str]:
        return sorted({s.cell for s in self.steps if s.kind != MOVING})


@dataclass(frozen=True)
class Gates:
    """What a publish may let through that it refuses by default."""

    allow_dirty: bool = False
    allow_untested_gpu: bool = False
    allow_bootstrapped_base: bool = False


def base_facts(built: CellReport) -> dict:
    """Which base an image was built on, as the publish report records it."""
    return {"source": built.base_source or "unknown", "image": built.base_image, "id": built.base_image_id, "suite": built.base_suite,
            "mirror": built.base_mirror, "created": built.base_created}  # fmt: skip


def bootstrapped(built: CellReport) -> bool:
    """Built on the offline recipe's base (or on a base whose source the report does not say)."""
    return built.base_source != "pulled" or bool(built.base_suite)


def platform_hold_reason(cell: Cell, all_cells: Sequence[Cell]) -> str:
    """Why a cell whose tags another platform's cell shares (or that is not on the default platform) is not
    published, or "". Its tags must become one multi-platform index of every platform, each smoke-tested;
    pushing one platform's image under them would leave a half-populated tag."""
    sharing = sorted(c.id for c in all_cells if c.stem == cell.stem and c != cell)
    if cell.is_default_platform and not sharing:
        return ""
    shared = f"its tags are shared with {', '.join(sharing)}, and " if sharing else ""
    return f"{MULTI_PLATFORM_NOT_IMPLEMENTED}: {shared}a {cell.platform} image cannot be pushed under them on its own (issue 17)"


def hold_reason(cell: Cell, built: CellReport | None, tested: SmokeReport | None, gates: Gates) -> str:
    """Why this cell may not be published now, or "" when it may."""
    if built is None or built.status != "built":
        return "not built in this run" if built is None else f"build failed: {built.error[:200]}"
    if tested is None:
        return "no smoke test result in this run: run `nox -s smoke` first"
    if not tested.ok:
        return f"smoke tests failed: {', '.join(tested.failed) or 'no test passed'}"
    if tested.image_id != built.image_id:
        return "the smoke-tested image is not the built one (rebuilt since?): run smoke again"
    immutable = built.tags[0] if built.tags else ""
    if immutable.endswith("-dirty") and not gates.allow_dirty:
        return "built from a tree with uncommitted changes (tracked files, or untracked ones in the build context): commit and rebuild (or --allow-dirty)"
    if immutable.endswith("-unknown") and not gates.allow_dirty:
        why = "built where git could not tell the revision (no git, or not a repository), so it may hold anything"
        return f"{why}: build in a git checkout (or --allow-dirty)"
    if bootstrapped(built) and not gates.allow_bootstrapped_base:
        why = f"built on a {built.base_source or 'unrecorded'} base ({built.base_image or 'unknown'}), not the official image pulled by digest"
        return f"{why}: build where the registry is reachable (or --allow-bootstrapped-base, recorded in the publish report)"
    if cell.is_gpu and not tested.gpu_op_ran_on_gpu and not gates.allow_untested_gpu:
        return f"its GPU checks did not run on a GPU ({tested.gpu_skip_reason()}): smoke-test it on a GPU host (or --allow-untested-gpu)"
    return ""


def plan_publish(
    config: Config,
    all_cells: Sequence[Cell],
    selected: Sequence[Cell],
    build: BuildReport,
    smoke: Mapping[str, SmokeReport],
    *,
    gates: Gates = Gates(),
    move_tags: bool = True,
) -> PublishPlan:
    """Immutable tags first, then cell tags, then moving tags, the last only when every selected cell is ready."""
    built = {c.cell: c for c in build.cells}
    ready: list[CellReport] = []
    held: list[tuple[str, str]] = []
    for cell in selected:
        why = platform_hold_reason(cell, all_cells) or hold_reason(cell, built.get(cell.id), smoke.get(cell.id), gates)
        if why:
            held.append((cell.id, why))
        else:
            ready.append(built[cell.id])
    steps = _cell_steps(config, selected, ready, smoke)
    moving_why = ""
    if not move_tags:
        moving_why = "not asked to move tags"
    elif held:
        moving_why = f"{len(held)} selected cell(s) not ready, so no moving tag moves"
    else:
        owners = moving_tags(config, all_cells)
        steps += [PushStep(f"{config.image}:{tag}", r.image_id, MOVING, r.cell, r.image_id) for r in ready for tag in owners.get(r.cell, ())]
    return PublishPlan(tuple(steps), tuple(held), moving_why)


def _cell_steps(config: Config, selected: Sequence[Cell], ready: Sequence[CellReport], smoke: Mapping[str, SmokeReport]) -> list[PushStep]:
    """Targets are named from the config, so --registry / KERASTACK_REGISTRY decide where images go. The
    source is the image id that was built and smoke-tested, not a tag that a later build may move."""
    gpu_cells = {cell.id for cell in selected if cell.is_gpu}
    facts = {r.cell: {"gpu_op_on_gpu": smoke[r.cell].gpu_op_ran_on_gpu if r.cell in gpu_cells else None, "base": base_facts(r)} for r in ready}
    steps = [PushStep(_retarget(r.tags[0], config.image), r.image_id, IMMUTABLE, r.cell, r.image_id, facts[r.cell]) for r in ready]
    steps += [PushStep(_retarget(tag, config.image), r.image_id, CELL, r.cell, r.image_id, facts[r.cell]) for r in ready for tag in r.tags[1:]]
    return steps


def _retarget(ref: str, image: str) -> str:
    return f"{image}:{ref.rsplit(':', 1)[1]}"


def plan_moving_from_reports(config: Config, all_cells: Sequence[Cell], selected: Sequence[Cell], reports: Sequence[PublishResult]) -> PublishPlan:
    """For the release job: move moving tags to the digests other jobs pushed, if every selected cell was pushed."""
    pushed: dict[str, dict] = {}
    for report in reports:
        for cell_id, entry in report.cells.items():
            if entry.get("pushed"):
                pushed[cell_id] = entry
    held = tuple(
        (c.id, platform_hold_reason(c, all_cells) or "no publish report says it was pushed")
        for c in selected
        if c.id not in pushed or platform_hold_reason(c, all_cells)
    )
    if held:
        return PublishPlan((), held, f"{len(held)} selected cell(s) not pushed, so no moving tag moves")
    owners = moving_tags(config, all_cells)
    steps = tuple(PushStep(f"{config.image}:{tag}", f"{config.image}@{pushed[c.id]['digest']}", MOVING, c.id) for c in selected for tag in owners.get(c.id, ()))
    return PublishPlan(steps, ())


@dataclass
class PublishResult:
    """What a publish did. Written as the publish report even when it stopped partway."""

    cells: dict[str, dict] = field(default_factory=dict)  # cell -> pushed, tags (pushed), not_pushed {ref: why}, digest, size
    moved: dict[str, str] = field(default_factory=dict)  # moving tag -> digest
    held_back: dict[str, str] = field(default_factory=dict)
    not_moved: dict[str, str] = field(default_factory=dict)  # moving tag -> why it stayed
    ok: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_data(cls, data: object, source: str) -> PublishResult:
        """A publish report read back (the release job reads the cell jobs'); PipelineError when it is not one."""
        try:
            if not isinstance(data, dict) or set(data) - {f for f in cls.__dataclass_fields__}:
                raise TypeError("expected an object with cells, moved, held_back, not_moved and ok")
            result = cls(**data)
            if not isinstance(result.cells, dict) or not isinstance(result.ok, bool):
                raise TypeError("cells is not an object, or ok is not true/false")
            for name in ("moved", "held_back", "not_moved"):
                if not _str_map(getattr(result, name)):
                    raise TypeError(f"{name} is not an object of strings")
            for cell, entry in result.cells.items():
                why = _entry_problem(cell, entry)
                if why:
                    raise TypeError(f"the entry of {cell!r}"[:80] + f" {why}")
            return result
        except TypeError as exc:
            raise PipelineError(f"{source}: not a kerastack publish report ({exc}); download the cell jobs' publish reports again") from None

    def pushed(self) -> list[tuple[str, dict]]:
        """(cell, entry) of every pushed cell, by cell."""
        return [(cell, entry) for cell, entry in sorted(self.cells.items()) if entry.get("pushed")]


_DIGEST = re.compile(r"sha256:[0-9a-f]{64}", re.ASCII)
_CELL_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}", re.ASCII)


def _str_map(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _entry_problem(cell: str, entry: object) -> str:
    """What makes one cell's entry of a publish report not what `publish` writes, or ""."""
    if not _CELL_ID.fullmatch(cell):
        return "is not named by a cell id"
    if not isinstance(entry, dict) or not isinstance(entry.get("pushed"), bool):
        return "has no pushed flag"
    tags, digest, size = entry.get("tags", []), entry.get("digest", ""), entry.get("size", 0)
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        return "has tags that are not a list of strings"
    if not isinstance(digest, str) or (digest and not _DIGEST.fullmatch(digest)):
        return "has a digest that is not sha256:<64 hex digits>"
    if entry["pushed"] and not (tags and digest):
        return "says pushed but has no tags or digest"
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        return "has a size that is not a number of bytes"
    if entry.get("gpu_op_on_gpu") not in (True, False, None):
        return "has a gpu_op_on_gpu that is not true, false or null"
    if not _str_map(entry.get("not_pushed", {})) or not isinstance(entry.get("error", ""), str):
        return "has a not_pushed or error of the wrong type"
    return ""


def _str_list(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def load_publish_reports(directory: Path, name: str = PUBLISH_REPORT) -> list[tuple[Path, PublishResult]]:
    """Every publish report under `directory` (the cell jobs' downloads), validated."""
    found = sorted(directory.rglob(name))
    if not found:
        raise PipelineError(f"no {name} under {directory}: download the cell jobs' publish reports there")
    fix = "download the cell jobs' publish reports again"
    return [(path, PublishResult.from_data(read_json(path, "a publish report", fix), str(path))) for path in found]
