"""Is a rebuild bit-identical? Compare two saved images layer by layer, the way diffoci does.

Pure apart from reading files: the inputs are two `docker save` exports unpacked into folders (or
single layer tars), the output is a comparison that names, for every layer that differs, the files
and the tar fields (name, type, mode, uid/gid, size, mtime, link target, PAX headers, content) that
differ. The reports are written by `write_reproduce_report`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import tarfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .build_report import write_pair
from .layout import REPRODUCE_REPORT, REPRODUCE_REPORT_MD

JSON_NAME = REPRODUCE_REPORT
MARKDOWN_NAME = REPRODUCE_REPORT_MD
# Fields of a tar member compared one by one, in the order they are reported.
MEMBER_FIELDS = ("type", "mode", "uid", "gid", "uname", "gname", "size", "mtime", "linkname", "devmajor", "devminor", "pax_headers", "content")
LISTED_PER_LAYER = 50  # member differences listed per layer; the counts by field cover all of them


@dataclass(frozen=True)
class MemberDifference:
    path: str
    field: str  # one of MEMBER_FIELDS, or "presence" (only in one tar) or "order"
    first: str
    second: str


@dataclass
class LayerComparison:
    index: int  # position in the image's layers, bottom first
    first: str  # diff ID in the first build
    second: str
    created_by: str = ""  # the history step that made the layer (from the first build)
    differences: list[MemberDifference] = field(default_factory=list)
    difference_count: int = 0
    fields: dict[str, int] = field(default_factory=dict)  # how many members differ in each field

    @property
    def identical(self) -> bool:
        return self.first == self.second


@dataclass
class ImageComparison:
    cell: str
    first_image: str
    second_image: str
    base_layers: int  # layers of the base image: compared, but outside the verdict
    layers: list[LayerComparison] = field(default_factory=list)
    config_differences: list[MemberDifference] = field(default_factory=list)
    tolerated_config_fields: list[str] = field(default_factory=list)  # what this engine cannot normalise
    error: str = ""

    @property
    def layers_above_base(self) -> list[LayerComparison]:
        return self.layers[self.base_layers :]

    @property
    def identical_layers(self) -> int:
        return sum(layer.identical for layer in self.layers_above_base)

    @property
    def unexplained_config_differences(self) -> list[MemberDifference]:
        return [d for d in self.config_differences if not _tolerated(d.path, self.tolerated_config_fields)]

    @property
    def ok(self) -> bool:
        """Every layer above the base identical, and the config identical apart from what the engine cannot fix."""
        return not self.error and self.identical_layers == len(self.layers_above_base) and not self.unexplained_config_differences

    @property
    def same_image_id(self) -> bool:
        return bool(self.first_image) and self.first_image == self.second_image


def _tolerated(path: str, patterns: Sequence[str]) -> bool:
    """`history[*].created` matches `history[3].created`."""
    return any(fnmatch.fnmatchcase(path, pattern.replace("[*]", "[[]*[]]")) for pattern in patterns)


# ---------------------------------------------------------------- one layer


def _describe(tar: tarfile.TarFile, info: tarfile.TarInfo) -> dict[str, str]:
    content = ""
    if info.isreg():
        digest = hashlib.sha256()
        handle = tar.extractfile(info)
        if handle is not None:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        content = "sha256:" + digest.hexdigest()
    values: dict[str, Any] = {
        "type": info.type.decode(errors="replace") if isinstance(info.type, bytes) else str(info.type),
        "mode": oct(info.mode),
        "uid": info.uid,
        "gid": info.gid,
        "uname": info.uname,
        "gname": info.gname,
        "size": info.size,
        "mtime": info.mtime,
        "linkname": info.linkname,
        "devmajor": info.devmajor,
        "devminor": info.devminor,
        "pax_headers": json.dumps(dict(sorted(info.pax_headers.items())), ensure_ascii=False) if info.pax_headers else "",
        "content": content,
    }
    return {name: str(values[name]) for name in MEMBER_FIELDS}


def _normalise(name: str) -> str:
    """`./opt/venv/`, `opt/venv` -> `/opt/venv` (keeps leading dots of names like `.wh.x`)."""
    while name.startswith("./"):
        name = name[2:]
    return "/" + name.strip("/") if name not in ("", ".") else "/"


def read_members(tar: tarfile.TarFile) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The member names in tar order, and each member's compared fields (content as a SHA-256)."""
    order: list[str] = []
    members: dict[str, dict[str, str]] = {}
    for info in tar:
        name = _normalise(info.name)
        order.append(name)
        members[name] = _describe(tar, info)
    return order, members


def compare_layer_tars(first: tarfile.TarFile, second: tarfile.TarFile) -> list[MemberDifference]:
    """Every difference between two layer tars: members only in one, fields that differ, then order."""
    order_a, a = read_members(first)
    order_b, b = read_members(second)
    differences: list[MemberDifference] = []
    for name in sorted(a.keys() | b.keys()):
        if name not in b:
            differences.append(MemberDifference(name, "presence", "present", "missing"))
        elif name not in a:
            differences.append(MemberDifference(name, "presence", "missing", "present"))
        else:
            differences.extend(MemberDifference(name, f, a[name][f], b[name][f]) for f in MEMBER_FIELDS if a[name][f] != b[name][f])
    if not differences and order_a != order_b:
        moved = next(i for i, (x, y) in enumerate(zip(order_a, order_b, strict=False)) if x != y)
        differences.append(MemberDifference(order_a[moved], "order", f"entry {moved}", f"entry {order_b.index(order_a[moved])}"))
    return differences


def summarise(index: int, first: str, second: str, differences: Sequence[MemberDifference], created_by: str = "") -> LayerComparison:
    counts = Counter(d.field for d in differences)
    return LayerComparison(
        index=index,
        first=first,
        second=second,
        created_by=created_by,
        differences=list(differences[:LISTED_PER_LAYER]),
        difference_count=len(differences),
        fields=dict(sorted(counts.items())),
    )


# ---------------------------------------------------------------- the image config


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(path, leaf) pairs of a JSON document: `config.Labels.a`, `history[2].created`."""
    if isinstance(value, dict):
        for key in sorted(value):
            yield from flatten(value[key], f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from flatten(item, f"{prefix}[{i}]")
    else:
        yield prefix, value


def compare_configs(first: dict, second: dict) -> list[MemberDifference]:
    """Config fields that differ; the layers' diff IDs are left out (the layer comparison covers them)."""
    a, b = ({path: leaf for path, leaf in flatten(doc) if not path.startswith("rootfs.diff_ids[")} for doc in (first, second))
    paths = sorted(a.keys() | b.keys())
    return [MemberDifference(path, "config", json.dumps(a.get(path)), json.dumps(b.get(path))) for path in paths if a.get(path) != b.get(path)]


# ---------------------------------------------------------------- two saved images


@dataclass(frozen=True)
class SavedImage:
    """A `docker save` archive: its manifest's config and layer tars, read in place (never unpacked)."""

    archive: Path
    image_id: str
    config: dict
    layer_members: tuple[str, ...]  # member names of the layer tars, bottom first

    @property
    def diff_ids(self) -> list[str]:
        return list(self.config.get("rootfs", {}).get("diff_ids", []))

    @contextlib.contextmanager
    def open_layer(self, index: int) -> Iterator[tarfile.TarFile]:
        with tarfile.open(self.archive) as outer:
            handle = outer.extractfile(self.layer_members[index])
            if handle is None:
                raise ValueError(f"{self.archive}: {self.layer_members[index]} is not a file")
            with tarfile.open(fileobj=handle, mode="r:*") as layer:
                yield layer


def load_saved(archive: Path) -> SavedImage:
    """Read the manifest and config of a `docker save` archive (one image)."""
    with tarfile.open(archive) as tar:
        manifest = json.loads(_read(tar, "manifest.json"))
        if len(manifest) != 1:
            raise ValueError(f"{archive}: manifest.json lists {len(manifest)} images, expected one")
        entry = manifest[0]
        config_bytes = _read(tar, entry["Config"])
    config = json.loads(config_bytes)
    layers = tuple(entry["Layers"])
    if len(layers) != len(config.get("rootfs", {}).get("diff_ids", [])):
        raise ValueError(f"{archive}: the manifest lists {len(layers)} layers, the config {len(config.get('rootfs', {}).get('diff_ids', []))}")
    return SavedImage(archive, "sha256:" + hashlib.sha256(config_bytes).hexdigest(), config, layers)


def _read(tar: tarfile.TarFile, name: str) -> bytes:
    handle = tar.extractfile(name)
    if handle is None:
        raise ValueError(f"{tar.name}: {name} is not a file")
    return handle.read()


def compare_images(cell: str, first: SavedImage, second: SavedImage, base_layers: int, tolerated_config_fields: Sequence[str] = ()) -> ImageComparison:
    """Layer by layer: identical diff IDs need no look inside; differing ones are compared member by member."""
    result = ImageComparison(cell, first.image_id, second.image_id, base_layers, tolerated_config_fields=list(tolerated_config_fields))
    ids_a, ids_b = first.diff_ids, second.diff_ids
    steps = _layer_steps(first)
    for index in range(max(len(ids_a), len(ids_b))):
        if index >= len(ids_a) or index >= len(ids_b):
            missing = MemberDifference("/", "presence", "present" if index < len(ids_a) else "missing", "present" if index < len(ids_b) else "missing")
            result.layers.append(summarise(index, _at(ids_a, index), _at(ids_b, index), [missing], _at(steps, index)))
            continue
        differences: list[MemberDifference] = []
        if ids_a[index] != ids_b[index]:
            with first.open_layer(index) as a, second.open_layer(index) as b:
                differences = compare_layer_tars(a, b)
            if not differences:  # same members, same fields, same order: the tar encoding itself differs
                differences = [MemberDifference("/", "tar encoding", ids_a[index], ids_b[index])]
        result.layers.append(summarise(index, ids_a[index], ids_b[index], differences, _at(steps, index)))
    result.config_differences = compare_configs(first.config, second.config)
    return result


def _at(values: Sequence[str], index: int) -> str:
    return values[index] if index < len(values) else ""


def _layer_steps(image: SavedImage) -> list[str]:
    """The history step that made each layer (entries marked empty_layer made none); [] when they do not line up."""
    steps = [h.get("created_by", "") for h in image.config.get("history", []) if not h.get("empty_layer")]
    return steps if len(steps) == len(image.diff_ids) else []


# ---------------------------------------------------------------- reports


@dataclass
class ReproduceReport:
    revision: str
    source_date_epoch: int
    builder: str  # e.g. "docker driver, BuildKit v0.8"
    cells: list[ImageComparison]
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.cells) and all(c.ok for c in self.cells)

    def to_json(self) -> str:
        data = asdict(self)
        for cell, comparison in zip(data["cells"], self.cells, strict=True):
            cell |= {
                "ok": comparison.ok,
                "identical_layers": comparison.identical_layers,
                "layers_above_base": len(comparison.layers_above_base),
                "same_image_id": comparison.same_image_id,
            }
            for layer, layer_obj in zip(cell["layers"], comparison.layers, strict=True):
                layer["identical"] = layer_obj.identical
        return json.dumps({"ok": self.ok, **data}, indent=2) + "\n"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def to_markdown(report: ReproduceReport) -> str:
    lines = [
        f"# Reproducibility report (revision {report.revision}, SOURCE_DATE_EPOCH {report.source_date_epoch})",
        "",
        f"Each cell was built twice with no layer cache, each time from a clean `git archive` export. Builder: {report.builder}.",
        "",
        "| cell | result | layers identical above the base | image ID | config differences |",
        "|---|---|---|---|---|",
    ]
    for c in report.cells:
        if c.error:
            lines.append(f"| {c.cell} | **error**: {_cell(c.error)[:200]} | | | |")
            continue
        config = f"{len(c.config_differences)} ({len(c.unexplained_config_differences)} unexplained)" if c.config_differences else "none"
        image = "identical" if c.same_image_id else "differs"
        lines.append(f"| {c.cell} | {'identical' if c.ok else '**differs**'} | {c.identical_layers}/{len(c.layers_above_base)} | {image} | {config} |")
    for c in report.cells:
        if c.error:
            continue
        lines += ["", f"## {c.cell}", "", "| # | layer | step | result |", "|---|---|---|---|"]
        for layer in c.layers:
            where = "base" if layer.index < c.base_layers else ""
            by_field = ", ".join(f"{k}: {v}" for k, v in layer.fields.items())
            verdict = "identical" if layer.identical else f"**{layer.difference_count} entries differ** ({by_field})"
            lines.append(f"| {layer.index} | `{layer.first[:19]}` {where} | {_cell(layer.created_by)[:80]} | {verdict} |")
        for layer in c.layers:
            if layer.identical:
                continue
            lines += ["", f"### layer {layer.index}: {_cell(layer.created_by)[:100]}", "", "```"]
            lines += [f"{d.path}: {d.field}: {d.first} != {d.second}" for d in layer.differences]
            if layer.difference_count > len(layer.differences):
                lines.append(f"... and {layer.difference_count - len(layer.differences)} more")
            lines.append("```")
        if c.config_differences:
            tolerated = f" (tolerated on this engine: {', '.join(c.tolerated_config_fields)})" if c.tolerated_config_fields else ""
            lines += ["", f"Image config differences{tolerated}:", "", "```"]
            lines += [f"{d.path}: {d.first} != {d.second}" for d in c.config_differences]
            lines.append("```")
    if report.notes:
        lines += ["", "## Notes", "", *(f"- {note}" for note in report.notes)]
    return "\n".join(lines) + "\n"


def write_reproduce_report(report: ReproduceReport, directory: Path) -> tuple[Path, Path]:
    return write_pair(directory, JSON_NAME, report.to_json(), MARKDOWN_NAME, to_markdown(report))
