"""Build reports (JSON for machines, Markdown for people): the typed report, its rendering, its reader."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .contract import DEFAULT_PLATFORM
from .errors import PipelineError
from .files import read_json, write_atomic
from .layout import BUILD_REPORT, BUILD_REPORT_MD

JSON_NAME = BUILD_REPORT
MARKDOWN_NAME = BUILD_REPORT_MD


@dataclass
class CellReport:
    cell: str
    status: str  # built | failed
    platform: str = DEFAULT_PLATFORM  # the cell's platform, e.g. linux/arm64 (reports written before it had none: the default)
    tags: list[str] = field(default_factory=list)
    moving_tags: list[str] = field(default_factory=list)
    image_id: str = ""
    size: int = 0
    seconds: float = 0.0
    cached_steps: int = 0
    total_steps: int = 0
    base_image: str = ""
    base_source: str = ""
    base_image_id: str = ""  # the base actually used, and for a bootstrapped one its Debian suite and mirror
    base_suite: str = ""
    base_mirror: str = ""
    base_created: str = ""  # a bootstrapped base's import time: the day's snapshot of its suite
    log_file: str = ""
    error: str = ""
    previous_image_id: str | None = None
    layers: list[tuple[str, int]] = field(default_factory=list)
    shared_bytes: int | None = None  # bytes of layers that other cells' images also have
    shared_with: list[str] = field(default_factory=list)
    upgrade_from: str | None = None  # the previous TF release of the same Python/variant/CUDA
    upgrade_download_bytes: int | None = None
    rebuild_download_bytes: int | None = None  # from the image this cell's tag had before this build
    os_layer_size: int | None = None  # the base step's apt layer (OS tools) on top of the base image
    named_layers: list[tuple[str, int]] = field(default_factory=list)  # contract.image_layers' names and sizes, bottom first
    manifest_files: list[str] = field(default_factory=list)
    naive_size: int | None = None
    naive_seconds: float | None = None
    naive_error: str = ""
    bytecode_bytes: int | None = None  # the .pyc files compiled at build time, part of `size`

    @classmethod
    def failed(cls, cell: str, error: str, seconds: float = 0.0, log_file: str = "") -> CellReport:
        return cls(cell=cell, status="failed", error=error, seconds=round(seconds, 1), log_file=log_file)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return _is_int(value) or isinstance(value, float)


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_layer_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, list | tuple) and len(v) == 2 and isinstance(v[0], str) and _is_int(v[1]) for v in value)


# What each field of a cell entry must be when read back: the types `to_json` writes, from the annotations.
_TYPES = {
    "str": ("a string", lambda v: isinstance(v, str)),
    "int": ("a whole number", _is_int),
    "float": ("a number", _is_number),
    "list[str]": ("a list of strings", _is_str_list),
    "list[tuple[str, int]]": ("a list of [diff ID, size] pairs", _is_layer_list),
}


def _field_check(annotation: str):
    optional = annotation.endswith(" | None")
    words, check = _TYPES[annotation.removesuffix(" | None")]
    return words + (" or null" if optional else ""), lambda v: (optional and v is None) or check(v)


_FIELD_TYPES, _FIELD_CHECKS = {}, {}
for _field in fields(CellReport):
    _FIELD_TYPES[_field.name], _FIELD_CHECKS[_field.name] = _field_check(str(_field.type))


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
    def from_data(cls, data: object, source: str = "build report") -> BuildReport:
        """The report from its parsed JSON; PipelineError when the shape is not the one `to_json` writes."""
        fix = "run `nox -s build-matrix` again to write a new one"
        try:
            if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
                raise TypeError("expected an object with a list of cells")
            known = {f.name for f in fields(CellReport)}
            cells = []
            for entry in data["cells"]:
                if not isinstance(entry, dict) or set(entry) - known or not isinstance(entry.get("cell"), str):
                    raise TypeError(
                        f"a cell entry has unknown keys or no cell name: {sorted(set(entry) - known) if isinstance(entry, dict) else entry!r}"[:200]
                    )
                for name, value in entry.items():
                    if not _FIELD_CHECKS[name](value):
                        raise TypeError(f"{entry['cell']!r}"[:80] + f": {name} is not {_FIELD_TYPES[name]}")
                if entry.get("status") not in ("built", "failed"):
                    raise TypeError(f"{entry['cell']!r}"[:80] + ": status is neither built nor failed")
                layers = [(d, n) for d, n in entry.get("layers", [])]
                named = [(name, n) for name, n in entry.get("named_layers", [])]
                cells.append(CellReport(**{**entry, "layers": layers, "named_layers": named}))
            rest = {k: data[k] for k in ("revision", "created", "filter_cells")}
            if not all(isinstance(rest[k], str) for k in ("revision", "created")) or not _is_str_list(rest["filter_cells"]):
                raise TypeError("revision, created and filter_cells have the wrong types")
            return cls(cells=cells, **rest)
        except (TypeError, KeyError, ValueError) as exc:
            raise PipelineError(f"{source}: not a kerastack build report ({exc}); {fix}") from None

    @classmethod
    def from_json(cls, text: str) -> BuildReport:
        return cls.from_data(json.loads(text))


def human(size: int | None) -> str:
    if size is None:
        return "–"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{size} B"


def shared_layers(cells: list[CellReport]) -> list[tuple[str, int, list[str]]]:
    """(diff ID, size, cells) of every non-empty layer that two or more built cells have, largest first."""
    holders: dict[str, list[str]] = {}
    sizes: dict[str, int] = {}
    for c in cells:
        if c.status != "built":
            continue
        for diff_id, size in dict(c.layers).items():
            if size > 0:
                holders.setdefault(diff_id, []).append(c.cell)
                sizes[diff_id] = size
    return sorted(((d, sizes[d], sorted(h)) for d, h in holders.items() if len(h) > 1), key=lambda row: (-row[1], row[0]))


def to_markdown(report: BuildReport) -> str:
    lines = [
        f"# Build report ({report.created}, revision {report.revision})",
        "",
        "Sizes are uncompressed, as `docker image ls` shows them. *Shared*: bytes of this image's layers that other cells' images "
        "also have; *bytecode*: the `.pyc` files compiled at build time, included in the size. "
        "*Upgrade*: what a user who has the previous TensorFlow release of the same Python/variant/CUDA downloads.",
        "",
        "| cell | platform | status | size | naive single-stage | shared with other cells | upgrade download | build s | cached steps | tags |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in report.cells:
        if c.status != "built":
            error = " ".join(c.error.split()).replace("|", "\\|")[:160]
            lines.append(f"| {c.cell} | {c.platform} | **failed**: {error} | | | | | {c.seconds:.0f} | | |")
            continue
        naive = human(c.naive_size) + (f" ({100 * (1 - c.size / c.naive_size):.0f}% saved)" if c.naive_size else "")
        upgrade = f"{human(c.upgrade_download_bytes)} from {c.upgrade_from}" if c.upgrade_from else "–"
        tags = "<br>".join(f"`{t.rsplit(':', 1)[-1]}`" for t in c.tags + c.moving_tags)
        size = human(c.size) + (f" (bytecode {human(c.bytecode_bytes)})" if c.bytecode_bytes else "")
        cells = (c.cell, c.platform, "built", size, naive, human(c.shared_bytes), upgrade, f"{c.seconds:.0f}", f"{c.cached_steps}/{c.total_steps}", tags)
        lines.append("| " + " | ".join(cells) + " |")
    with_os = [c for c in report.cells if c.os_layer_size is not None]
    if with_os:
        lines += ["", "OS packages layer (the base step's apt install: tini, git, curl, wget, less, nano, procps, ...):"]
        lines += [f"- {c.cell}: {human(c.os_layer_size)}" for c in with_os]
    named = [c for c in report.cells if c.named_layers]
    if named:
        lines += ["", "Layers on top of the base image, bottom first (toolkit: pandoc, TeX, ffmpeg, fonts, compilers; venv: the locked pip and setuptools):"]
        lines += [f"- {c.cell}: " + ", ".join(f"{name} {human(size)}" for name, size in c.named_layers) for c in named]
    manifests = [f for c in report.cells for f in c.manifest_files if f.endswith(".md")]
    if manifests:
        lines += ["", "Manifests (packages and versions of each image): " + ", ".join(f"`{f}`" for f in manifests)]
    common = shared_layers(report.cells)
    if common:
        lines += ["", "Layers that several cells of this report share (one download for all of them):", "", "| layer | size | cells |", "|---|---|---|"]
        lines += [f"| `{diff_id[:19]}` | {human(size)} | {', '.join(cells)} |" for diff_id, size, cells in common]
    bases = sorted({(c.base_image, c.base_image_id, c.base_suite, c.base_mirror, c.platform) for c in report.cells if c.base_image_id})
    if bases:
        lines += ["", "Base images:", ""]
        for ref, image_id, suite, mirror, platform in bases:
            arch = platform.split("/", 1)[-1]
            origin = f"; bootstrapped: `debootstrap --arch={arch} --variant=minbase {suite}` from {mirror}" if suite else ""
            lines.append(f"- `{ref}`: image ID `{image_id}`{origin}")
    return "\n".join(lines) + "\n"


def write_pair(directory: Path, json_name: str, json_text: str, markdown_name: str, markdown: str) -> tuple[Path, Path]:
    """Write a report's JSON (for machines) and Markdown (for people) side by side, each atomically."""
    return write_atomic(directory / json_name, json_text), write_atomic(directory / markdown_name, markdown)


def write_build_report(report: BuildReport, directory: Path) -> tuple[Path, Path]:
    return write_pair(directory, JSON_NAME, report.to_json(), MARKDOWN_NAME, to_markdown(report))


def load_build_report(directory: Path) -> BuildReport:
    path = directory / JSON_NAME
    data = read_json(path, "a build report", "run `nox -s build-matrix` (it writes one)")
    return BuildReport.from_data(data, str(path))
