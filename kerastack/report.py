"""Build reports (JSON for machines, Markdown for people). Pure apart from reading and writing files."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

JSON_NAME = "build-report.json"
MARKDOWN_NAME = "build-report.md"


@dataclass
class CellReport:
    cell: str
    status: str  # built | failed
    tags: list[str] = field(default_factory=list)
    moving_tags: list[str] = field(default_factory=list)
    image_id: str = ""
    size: int = 0
    seconds: float = 0.0
    cached_steps: int = 0
    total_steps: int = 0
    base_image: str = ""
    base_source: str = ""
    log_file: str = ""
    error: str = ""
    previous_image_id: str | None = None
    layers: list[tuple[str, int]] = field(default_factory=list)
    shared_bytes: int | None = None  # bytes of layers that other cells' images also have
    shared_with: list[str] = field(default_factory=list)
    upgrade_from: str | None = None  # the previous TF release of the same Python/variant/CUDA
    upgrade_download_bytes: int | None = None
    rebuild_download_bytes: int | None = None  # from the image this cell's tag had before this build
    naive_size: int | None = None
    naive_seconds: float | None = None
    naive_error: str = ""
    bytecode_bytes: int | None = None  # the .pyc files compiled at build time, part of `size`

    @classmethod
    def failed(cls, cell: str, error: str, seconds: float = 0.0, log_file: str = "") -> CellReport:
        return cls(cell=cell, status="failed", error=error, seconds=round(seconds, 1), log_file=log_file)


@dataclass
class BuildReport:
    revision: str
    created: str
    filter_cells: list[str]
    cells: list[CellReport]

    @property
    def ok(self) -> bool:
        return all(c.status == "built" for c in self.cells)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> BuildReport:
        data = json.loads(text)
        cells = [CellReport(**{**c, "layers": [tuple(layer) for layer in c.get("layers", [])]}) for c in data.pop("cells")]
        return cls(cells=cells, **data)


def human(size: int | None) -> str:
    if size is None:
        return "–"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{size} B"


def to_markdown(report: BuildReport) -> str:
    lines = [
        f"# Build report ({report.created}, revision {report.revision})",
        "",
        "Sizes are uncompressed, as `docker image ls` shows them. *Shared*: bytes of this image's layers that other cells' images "
        "also have; *bytecode*: the `.pyc` files compiled at build time, included in the size. "
        "*Upgrade*: what a user who has the previous TensorFlow release of the same Python/variant/CUDA downloads.",
        "",
        "| cell | status | size | naive single-stage | shared with other cells | upgrade download | build s | cached steps | tags |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in report.cells:
        if c.status != "built":
            error = " ".join(c.error.split()).replace("|", "\\|")[:160]
            lines.append(f"| {c.cell} | **failed**: {error} | | | | | {c.seconds:.0f} | | |")
            continue
        naive = human(c.naive_size) + (f" ({100 * (1 - c.size / c.naive_size):.0f}% saved)" if c.naive_size else "")
        upgrade = f"{human(c.upgrade_download_bytes)} from {c.upgrade_from}" if c.upgrade_from else "–"
        tags = "<br>".join(f"`{t.rsplit(':', 1)[-1]}`" for t in c.tags + c.moving_tags)
        size = human(c.size) + (f" (bytecode {human(c.bytecode_bytes)})" if c.bytecode_bytes else "")
        cells = (c.cell, "built", size, naive, human(c.shared_bytes), upgrade, f"{c.seconds:.0f}", f"{c.cached_steps}/{c.total_steps}", tags)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_build_report(report: BuildReport, directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / JSON_NAME, directory / MARKDOWN_NAME
    json_path.write_text(report.to_json())
    md_path.write_text(to_markdown(report))
    return json_path, md_path


def load_build_report(directory: Path) -> BuildReport:
    return BuildReport.from_json((directory / JSON_NAME).read_text())
