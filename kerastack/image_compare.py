"""Is a rebuild bit-identical? Compare two saved images layer by layer, the way diffoci does.

Pure apart from reading what it is given: the inputs are two `docker save` archives, each read once
front to back from a pipe or a file (or single layer tars), the output is a comparison that names, for every layer that differs, the files
and the tar fields (name, type, mode, uid/gid, size, mtime, link target, PAX headers, content) that
differ. The reports are written by `write_reproduce_report`.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import itertools
import json
import tarfile
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

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
    configs_match: bool = False  # the canonical bytes of both configs are equal (tolerated time fields masked)

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
        """Every layer identical, the configs' canonical bytes equal apart from what the engine cannot set
        (its wall-clock times, on a known builder that cannot set them), and where it can set them, the
        same image ID. Nothing else is tolerated."""
        if self.error or self.identical_layers != len(self.layers_above_base) or not all(layer.identical for layer in self.layers):
            return False
        if self.unexplained_config_differences or not self.configs_match:
            return False
        return bool(self.tolerated_config_fields) or self.same_image_id

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
    return compare_members(read_members(first), read_members(second))


def compare_members(first: tuple[list[str], dict[str, dict[str, str]]], second: tuple[list[str], dict[str, dict[str, str]]]) -> list[MemberDifference]:
    """compare_layer_tars on two layers' read_members."""
    (order_a, a), (order_b, b) = first, second
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


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(path, leaf as canonical JSON) pairs of a JSON document: `config.Labels.a`, `history[2].created`.
    Nothing is dropped: an empty object or list is a leaf of its own (`{}`, `[]`), and leaves keep their
    JSON type (`true` is not `1`, `1` is not `1.0`)."""
    if isinstance(value, dict) and value:
        for key in sorted(value):
            yield from flatten(value[key], f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and value:
        for i, item in enumerate(value):
            yield from flatten(item, f"{prefix}[{i}]")
    else:
        yield prefix, canonical_json(value)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def compare_configs(first: dict, second: dict) -> list[MemberDifference]:
    """Every config field that differs (the layers' diff IDs too), each leaf as canonical JSON; "absent" where one side has none."""
    a, b = (dict(flatten(doc)) for doc in (first, second))
    paths = sorted(a.keys() | b.keys())
    return [MemberDifference(path, "config", a.get(path, "absent"), b.get(path, "absent")) for path in paths if a.get(path) != b.get(path)]


def masked(value: Any, patterns: Sequence[str], prefix: str = "") -> Any:
    """`value` with each string leaf at a tolerated path replaced by a marker (the field must exist on both sides)."""
    if isinstance(value, dict):
        return {k: masked(v, patterns, f"{prefix}.{k}" if prefix else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v, patterns, f"{prefix}[{i}]") for i, v in enumerate(value)]
    return "<builder wall clock>" if isinstance(value, str) and _tolerated(prefix, patterns) else value


def configs_equal(first: dict, second: dict, tolerated: Sequence[str]) -> bool:
    """The configs' canonical bytes, tolerated time fields masked, are equal."""
    return canonical_json(masked(first, tolerated)).encode() == canonical_json(masked(second, tolerated)).encode()


# ---------------------------------------------------------------- two saved images

Members = tuple[list[str], dict[str, dict[str, str]]]  # what read_members gives: tar order, fields by name
SMALL_MEMBER = 16 << 20  # archive members kept in memory while streaming (manifests, configs, tiny layers)


@dataclass(frozen=True)
class SavedImage:
    """A `docker save` archive, read once front to back (a pipe or a file; never unpacked): its config,
    its layer members, and what is inside each layer that was looked into."""

    source: str  # the archive's path, or the `docker save` it was streamed from
    image_id: str
    config: dict
    layer_members: tuple[str, ...]  # member names of the layer tars, bottom first
    contents: dict[str, Members] = field(default_factory=dict)  # by layer member name

    @property
    def diff_ids(self) -> list[str]:
        return list(self.config.get("rootfs", {}).get("diff_ids", []))

    def layer(self, index: int) -> Members:
        member = self.layer_members[index]
        if member not in self.contents:
            raise ValueError(f"{self.source}: layer {index} ({member}) was not read")
        return self.contents[member]


class _Hashing(io.RawIOBase):
    """A reader that hashes what passes through it (a layer's digest while tarfile streams over it)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream, self.digest = stream, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.stream.read(len(buffer))
        self.digest.update(data)
        buffer[: len(data)] = data
        return len(data)

    def hexdigest(self) -> str:
        while self.read(1 << 20):  # tar's end blocks and padding belong to the digest too
            pass
        return "sha256:" + self.digest.hexdigest()


def layers_to_read(first: Sequence[str], second: Sequence[str]) -> tuple[bool, set[str]]:
    """From two images' diff IDs: whether to look inside their layers at all, and the digests whose member
    lists need not be kept (identical at their position, and at no differing position too)."""
    pairs = list(itertools.zip_longest(first, second, fillvalue=""))
    needed = {digest for a, b in pairs if a != b for digest in (a, b) if digest}
    return list(first) != list(second), {a for a, b in pairs if a == b} - needed


def read_saved(stream: IO[bytes], source: str, look_inside: bool = True, known_identical: Collection[str] = ()) -> SavedImage:
    """Read a `docker save` archive in one pass: its manifest and config and, when `look_inside`, the
    members of every layer (the member list of a layer whose digest is in `known_identical` is dropped
    once read: nothing needs comparing there). Layers are streamed, so memory holds member lists only."""
    small: dict[str, bytes] = {}
    contents: dict[str, Members] = {}
    unreadable: dict[str, str] = {}
    try:
        with tarfile.open(fileobj=stream, mode="r|") as outer:
            for info in outer:
                handle = outer.extractfile(info) if info.isfile() else None
                if handle is None:
                    continue
                if info.size <= SMALL_MEMBER or "/" not in info.name.strip("/"):  # top-level files are the archive's own JSON
                    small[info.name] = handle.read()
                elif look_inside:
                    hashing = _Hashing(handle)
                    try:
                        with tarfile.open(fileobj=io.BufferedReader(hashing, 1 << 20), mode="r|*") as layer:
                            members = read_members(layer)
                    except (tarfile.TarError, EOFError, OSError) as exc:  # not a layer (or a broken one): only an error if the manifest lists it
                        unreadable[info.name] = str(exc)
                        continue
                    if hashing.hexdigest() not in known_identical:
                        contents[info.name] = members
    except (tarfile.TarError, EOFError) as exc:
        raise ValueError(f"{source}: not a readable docker save archive ({exc})") from exc
    if "manifest.json" not in small:
        raise ValueError(f"{source}: no manifest.json")
    manifest = json.loads(small["manifest.json"])
    if not isinstance(manifest, list) or len(manifest) != 1 or not isinstance(manifest[0], dict):
        raise ValueError(f"{source}: manifest.json lists {len(manifest) if isinstance(manifest, list) else 'no'} images, expected one")
    entry = manifest[0]
    config_name, layers = entry.get("Config"), entry.get("Layers")
    if not isinstance(config_name, str) or config_name not in small or not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
        raise ValueError(f"{source}: manifest.json names no readable config and layer list")
    config_bytes = small[config_name]
    config = json.loads(config_bytes)
    if not isinstance(config, dict):
        raise ValueError(f"{source}: the image config is not an object")
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    if len(layers) != len(diff_ids):
        raise ValueError(f"{source}: the manifest lists {len(layers)} layers, the config {len(diff_ids)}")
    if look_inside:
        for member, diff_id in zip(layers, diff_ids, strict=True):
            if member in unreadable:
                raise ValueError(f"{source}: layer {member} is not a readable tar ({unreadable[member]})")
            if member in small and diff_id not in known_identical:
                with tarfile.open(fileobj=io.BytesIO(small[member]), mode="r:*") as layer:
                    contents[member] = read_members(layer)
    return SavedImage(source, "sha256:" + hashlib.sha256(config_bytes).hexdigest(), config, tuple(layers), contents)


def load_saved(archive: Path, look_inside: bool = True, known_identical: Collection[str] = ()) -> SavedImage:
    """Read a `docker save` archive file (one image); see read_saved."""
    with archive.open("rb") as stream:
        return read_saved(stream, str(archive), look_inside, known_identical)


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
            differences = compare_members(first.layer(index), second.layer(index))
            if not differences:  # same members, same fields, same order: the tar encoding itself differs
                differences = [MemberDifference("/", "tar encoding", ids_a[index], ids_b[index])]
        result.layers.append(summarise(index, ids_a[index], ids_b[index], differences, _at(steps, index)))
    result.config_differences = compare_configs(first.config, second.config)
    try:
        result.configs_match = configs_equal(first.config, second.config, result.tolerated_config_fields)
    except ValueError:  # NaN or infinity: not JSON, so not comparable as canonical bytes
        result.configs_match = False
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
