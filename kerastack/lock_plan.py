"""Lock files, the pure half: resolver inputs per cell, parsing the resolver's output, splitting it into
layer groups, rendering the group files, and checking committed locks against versions.toml.

kerastack.lock is the other half: it runs the resolver (uv) and swaps the new files in.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name

from .config import Config, requirement_name
from .contract import DEFAULT_PLATFORM, LOCK_GROUPS, PACKAGE_GROUPS, VENV_GROUP, VENV_PACKAGES
from .errors import PipelineError
from .files import read_json
from .layout import Layout
from .matrix import Cell, cells, on_platform, resolve

LOCK_FORMAT = 3  # 3: the science, data and visualisation groups (2 had one science group)
# uv's --python-platform for each image platform: the wheels a cell's lock may pick. manylinux_2_28 fits the
# bases (Debian 12 has glibc 2.36) and TensorFlow 2.21's aarch64 wheels (manylinux_2_27). The default
# platform's target is part of every committed lock's fingerprint: changing it relocks every cell.
UV_TARGETS = {DEFAULT_PLATFORM: "x86_64-manylinux_2_28", "linux/arm64": "aarch64-manylinux_2_28"}
GROUPS = (VENV_GROUP, *LOCK_GROUPS)  # the lock files: the venv's tools, then the layers, least to most often changing
# The package groups with roots of their own; jupyter, the last, takes whatever no lower group needs.
ROOTED_GROUPS = tuple(g for g in PACKAGE_GROUPS if g != "jupyter")


@dataclass(frozen=True)
class LockInputs:
    """Everything a cell's resolution depends on; its fingerprint says when to relock."""

    cell_id: str
    python: str
    platform: str
    requirements: tuple[str, ...]
    constraints: tuple[str, ...]
    group_roots: tuple[str, ...]  # distributions that, with their dependencies, form the tensorflow group
    # ... and each of ROOTED_GROUPS (with their dependencies, less what the groups below already have)
    layer_roots: dict[str, tuple[str, ...]]

    def fingerprint(self) -> str:
        canonical = json.dumps({"format": LOCK_FORMAT, **self.__dict__}, sort_keys=True, default=list)
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Pin:
    name: str  # normalised distribution name
    version: str
    hashes: tuple[str, ...]
    via: tuple[str, ...] = field(default=())  # normalised names of the packages that need it, "-" for a root

    def render(self) -> str:
        lines = [f"{self.name}=={self.version}"] + [f"    --hash={h}" for h in self.hashes]
        return " \\\n".join(lines)


def normalise(name: str) -> str:
    """The PEP 503 normal form of a distribution name (packaging's rule, the one every module uses)."""
    return canonicalize_name(name)


def inputs_for(config: Config, cell: Cell) -> LockInputs:
    r = resolve(config, cell)
    tf_package = r.variant.tensorflow_package_for(cell.platform)
    tf_requirement = f"{tf_package}=={r.release.version}"
    listed = tuple(p for group in PACKAGE_GROUPS for p in config.group_packages[group])
    requirements = (tf_requirement, f"keras=={r.release.keras}", *listed, *VENV_PACKAGES)
    constraints = tuple(f"{name}=={version}" for name, version in r.cuda.wheels) if r.cuda else ()
    tf_name = normalise(re.split(r"[\[<>=!~ ]", tf_package, maxsplit=1)[0])
    return LockInputs(
        cell_id=cell.id,
        python=str(cell.python),
        platform=UV_TARGETS[cell.platform],
        requirements=requirements,
        constraints=constraints,
        group_roots=(tf_name, "keras"),
        layer_roots={group: tuple(requirement_name(p) for p in config.group_packages[group]) for group in ROOTED_GROUPS},
    )


_PIN_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s\\;]+)")


def parse_compiled(text: str) -> list[Pin]:
    """Parse `uv pip compile --generate-hashes` output (requirements format with `# via` notes)."""
    pins: list[Pin] = []
    current: dict | None = None
    in_via = False

    def finish() -> None:
        if current is not None:
            pins.append(Pin(current["name"], current["version"], tuple(current["hashes"]), tuple(sorted(set(current["via"])))))

    for raw in text.splitlines():
        line = raw.strip()
        match = _PIN_LINE.match(raw)
        if match:
            finish()
            current = {"name": normalise(match.group(1)), "version": match.group(3), "hashes": [], "via": []}
            in_via = False
            continue
        if current is None or not line:
            continue
        if line.startswith("--hash="):
            current["hashes"].append(line.removeprefix("--hash=").rstrip(" \\"))
        elif line.startswith("# via"):
            in_via = True
            rest = line.removeprefix("# via").strip()
            if rest:
                current["via"].append(_via_name(rest))
        elif line.startswith("#") and in_via:
            current["via"].append(_via_name(line.lstrip("# ").strip()))
    finish()
    for pin in pins:
        if not pin.hashes:
            raise PipelineError(f"the resolver gave {pin.name}=={pin.version} without hashes; relock with --generate-hashes")
    return pins


def _via_name(text: str) -> str:
    if text.startswith("-r") or text.startswith("-c"):
        return "-"
    return normalise(text.split()[0])


def split_groups(pins: Sequence[Pin], roots: Iterable[str], layer_roots: Mapping[str, Iterable[str]] | None = None) -> dict[str, list[Pin]]:
    """venv: pip and setuptools (whoever else needs them); cuda: nvidia-* wheels; tensorflow: the roots and all they need;
    then each of ROOTED_GROUPS in order (science, data, visualisation): its roots and all they need that no group below
    owns (numpy, h5py, ml-dtypes stay TensorFlow's; pandas, which seaborn needs, stays science's); jupyter: the rest."""
    layer_roots = layer_roots or {}
    unknown = sorted(set(layer_roots) - set(ROOTED_GROUPS))
    if unknown:
        raise ValueError(f"split_groups: no such rooted group {', '.join(unknown)} (one of {', '.join(ROOTED_GROUPS)})")
    children: dict[str, set[str]] = {}
    for pin in pins:
        for parent in pin.via:
            children.setdefault(parent, set()).add(pin.name)
    owned = _closure(children, roots)
    group_of = dict.fromkeys(owned, "tensorflow")
    for group in ROOTED_GROUPS:  # layer order, whatever the mapping's order
        closure = _closure(children, layer_roots.get(group, ())) - owned
        group_of |= dict.fromkeys(closure, group)
        owned |= closure
    groups: dict[str, list[Pin]] = {g: [] for g in GROUPS}
    for pin in sorted(pins, key=lambda p: p.name):
        if pin.name in VENV_PACKAGES:
            groups[VENV_GROUP].append(pin)
        elif pin.name.startswith("nvidia-"):
            groups["cuda"].append(pin)
        else:
            groups[group_of.get(pin.name, "jupyter")].append(pin)
    return groups


def _closure(children: dict[str, set[str]], roots: Iterable[str]) -> set[str]:
    """The roots and everything they need, transitively."""
    closure: set[str] = set()
    todo = [normalise(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in closure:
            continue
        closure.add(name)
        todo.extend(children.get(name, ()))
    return closure


def render_group(inputs: LockInputs, group: str, pins: Sequence[Pin]) -> str:
    # No cell name and no platform in here: identical groups of different cells must be identical files, so
    # that the build cache, and so the image layer, is shared between them (CPU and GPU cells), and so that a
    # group that comes out the same on two platforms is one file (shared, see SHARED). uv lists the hashes of
    # every wheel of a version, whatever the target, so the content says nothing platform-specific either;
    # lock.json records the platform the cell was resolved for.
    header = f"# Lock group '{group}' for Python {inputs.python}. Generated by `nox -s lock`; do not edit.\n"
    return header + "".join(pin.render() + "\n" for pin in pins)


# ---------------------------------------------------------------- platforms: one tag, same versions, shared files
# A cell off the default platform (tf2.21.0-py3.11-cpu-arm64) has a sibling: the default platform's cell of the
# same stem (tf2.21.0-py3.11-cpu). One tag serves both, so the lock of the non-default cell prefers the sibling's
# versions (uv's preferences: a version the target has no wheel for moves, nothing else), and each group that
# comes out identical to the sibling's is not a copy but a relative symbolic link to the sibling's file
# (`science.txt -> ../tf2.21.0-py3.11-cpu/science.txt`), recorded in lock.json's "shared". A COPY of the link in
# the Dockerfile copies the file it points to (checked with BuildKit 0.8 / Engine 20.10), so the Dockerfile and
# LOCK_DIR stay as they are. The default platform's cell never shares: it is the one that holds the files.
SHARED = "shared"  # lock.json: group -> the sibling cell id whose file it links to


def sibling_of(config: Config, cell: Cell) -> Cell | None:
    """The default platform's cell of the same stem, for a cell off the default platform; else None."""
    return None if cell.is_default_platform else on_platform(cell, cells(config), DEFAULT_PLATFORM)


def lock_order(selected: Sequence[Cell]) -> list[Cell]:
    """The default platform's cells first (their locks are the preferences and shared files of the others),
    otherwise in the given order."""
    return sorted(selected, key=lambda c: not c.is_default_platform)


def preferences(sibling_meta: Mapping) -> str:
    """The sibling's pins as a requirements file (`name==version` lines), for uv's existing output file: uv pip
    compile prefers the versions it finds there (soft: where the target has no wheel of one, it picks another)."""
    pins = sorted({(name, version) for group in sibling_meta["groups"].values() for name, version in group.items()})
    return "".join(f"{name}=={version}\n" for name, version in pins)


def shared_link(sibling_id: str, group: str) -> str:
    """The link's target, relative to the cell's folder (so it holds in any checkout and in staging folders)."""
    return f"../{sibling_id}/{group}.txt"


def _pin_key(pins: Sequence[Pin]) -> list[tuple[str, str, tuple[str, ...]]]:
    return sorted((p.name, p.version, tuple(sorted(p.hashes))) for p in pins)


def shareable_groups(groups: Mapping[str, Sequence[Pin]], sibling_groups: Mapping[str, Sequence[Pin]]) -> list[str]:
    """The groups whose pins (names, versions and hashes) equal the sibling's: those become links to its files.
    The `via` notes are not in the files, so they do not count."""
    return [g for g in GROUPS if g in sibling_groups and _pin_key(groups[g]) == _pin_key(sibling_groups[g])]


def lock_dir(root: Path, cell: Cell) -> Path:
    return Layout(root).lock_dir(cell.id)


def inputs_record(inputs: LockInputs) -> dict:
    """The inputs as lock.json holds them (JSON: tuples become lists, in the dictionaries too)."""
    return json.loads(json.dumps(inputs.__dict__))


def lock_record(inputs: LockInputs, groups: dict[str, list[Pin]], file_hashes: dict[str, str], shared: Mapping[str, str] | None = None) -> dict:
    """lock.json: what the lock was made from (its fingerprint), the content hash of each group file (a shared one's
    too: the content it links to), every pin, and the groups shared with the sibling (group -> sibling id)."""
    return {
        "cell": inputs.cell_id,
        "format": LOCK_FORMAT,
        "fingerprint": inputs.fingerprint(),
        "files": file_hashes,
        "inputs": inputs_record(inputs),
        "groups": {g: {p.name: p.version for p in groups[g]} for g in GROUPS},
        SHARED: dict(sorted((shared or {}).items())),
    }


@dataclass(frozen=True)
class LockStatus:
    cell_id: str
    state: str  # ok | missing | stale | modified | corrupt
    detail: str = ""


def file_hash(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def read_meta(directory: Path) -> dict:
    """A cell's lock.json; PipelineError when it is not the JSON object `nox -s lock` writes."""
    meta_file = directory / "lock.json"
    fix = f"run `nox -s lock -- id={directory.name}` to relock"
    meta = read_json(meta_file, "a lock record", fix)
    why = _lock_record_problem(meta)
    if why:
        raise PipelineError(f"{meta_file} is not a lock record ({why}): {fix}")
    return meta


def _lock_record_problem(meta: object) -> str:
    """What makes `meta` not the lock.json `nox -s lock` writes, or ""."""
    if not isinstance(meta, dict):
        return "not a JSON object"
    groups, files = meta.get("groups"), meta.get("files", {})
    if not isinstance(groups, dict) or not all(isinstance(g, str) and isinstance(pins, dict) for g, pins in groups.items()):
        return "groups is not an object of groups"
    for group, pins in groups.items():
        if not all(isinstance(name, str) and isinstance(version, str) for name, version in pins.items()):
            return f"group {group!r} is not an object of name: version strings"
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        return "files is not an object of file: hash strings"
    if not isinstance(meta.get("fingerprint", ""), str):
        return "fingerprint is not a string"
    shared = meta.get(SHARED, {})
    if not isinstance(shared, dict) or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in shared.items()):
        return f"{SHARED} is not an object of group: sibling cell id strings"
    odd = sorted(set(shared) - set(GROUPS))
    if odd:
        return f"{SHARED} names {', '.join(map(repr, odd))}, not lock groups ({', '.join(GROUPS)})"
    return ""


def _shared_problem(config: Config, cell: Cell, directory: Path, meta: dict) -> LockStatus | None:
    """Each group file is what lock.json says it is: a plain file, or (shared) a link to exactly the sibling's
    file of that group, which exists and still has the content this cell was locked with."""
    shared = meta.get(SHARED, {})
    sibling = sibling_of(config, cell)
    fix = f"run `nox -s lock -- id={cell.id}`"
    for group in GROUPS:
        path = directory / f"{group}.txt"
        if group not in shared:
            if path.is_symlink():
                return LockStatus(cell.id, "modified", f"{group}.txt is a link, but lock.json records no shared {group} group: {fix}")
            continue
        if sibling is None or shared[group] != sibling.id:
            expected = f"its sibling {sibling.id}" if sibling else "nothing (a default-platform cell holds its own files)"
            why = f"lock.json records {group}.txt as shared with {shared[group]!r}, but this cell can share with {expected}"
            return LockStatus(cell.id, "corrupt", f"{why}: {fix}")
        link = shared_link(sibling.id, group)
        if not path.is_symlink():
            return LockStatus(
                cell.id, "modified",
                f"{group}.txt should be a link to {link} (shared with {sibling.id}) but is a plain file "
                f"(a checkout without symbolic links? set `git config core.symlinks true` and check out again, or {fix})",
            )  # fmt: skip
        target = str(path.readlink())
        if target != link:
            return LockStatus(cell.id, "modified", f"{group}.txt links to {target}, not to {link} (shared with {sibling.id}): {fix}")
        if not path.is_file():
            first = f"lock {sibling.id} first (`nox -s lock -- id={sibling.id}`), then {cell.id}"
            return LockStatus(cell.id, "missing", f"{group}.txt links to {link}, which does not exist: {first}")
        if meta.get("files", {}).get(f"{group}.txt") != file_hash(path):
            return LockStatus(cell.id, "stale", f"the shared {group}.txt of {sibling.id} changed since this cell was locked ({sibling.id} relocked?): {fix}")
    return None


def _recorded_versions_problem(directory: Path, meta: dict) -> str:
    """Where lock.json's versions (what `changes` reads) disagree with the group files (what is installed)."""
    for group in GROUPS:
        installed = {pin.name: pin.version for pin in parse_compiled((directory / f"{group}.txt").read_text(encoding="utf-8", errors="replace"))}
        recorded = {normalise(name): version for name, version in (meta["groups"].get(group) or {}).items()}
        if installed != recorded:
            differ = sorted(n for n in installed.keys() | recorded.keys() if installed.get(n) != recorded.get(n))
            shown = ", ".join(f"{n} {recorded.get(n, 'absent')} in lock.json, {installed.get(n, 'absent')} in {group}.txt" for n in differ[:5])
            return f"lock.json's versions disagree with {group}.txt ({shown}{', ...' if len(differ) > 5 else ''}); edited by hand? run nox -s lock"
    return ""


def _cell_status(root: Path, config: Config, cell: Cell) -> LockStatus:
    directory = lock_dir(root, cell)
    if not directory.is_dir() and directory.with_name(f".{cell.id}.old").is_dir():
        return LockStatus(cell.id, "missing", "an interrupted lock run left its previous lock aside: run `nox -s lock` (it puts it back)")
    if not (directory / "lock.json").exists():
        return LockStatus(cell.id, "missing", f"{directory / 'lock.json'} does not exist")
    try:
        meta = read_meta(directory)
    except PipelineError as exc:
        return LockStatus(cell.id, "corrupt", str(exc))
    missing = [g for g in GROUPS if not (directory / f"{g}.txt").is_symlink() and not (directory / f"{g}.txt").exists()]  # a dangling link: below
    if meta.get("fingerprint") != inputs_for(config, cell).fingerprint():
        return LockStatus(cell.id, "stale", "versions.toml changed since it was locked")
    if missing:
        return LockStatus(cell.id, "missing", f"group files missing: {', '.join(missing)}")
    recorded = meta.get("files", {})
    if not recorded:
        return LockStatus(cell.id, "stale", "lock.json records no content hashes (an older lock): run nox -s lock")
    problem = _shared_problem(config, cell, directory, meta)
    if problem:
        return problem
    modified = [f"{g}.txt" for g in GROUPS if recorded.get(f"{g}.txt") != file_hash(directory / f"{g}.txt")]
    if modified:
        return LockStatus(cell.id, "modified", f"{', '.join(modified)} changed since it was locked (edited by hand?): run nox -s lock")
    disagree = _recorded_versions_problem(directory, meta)
    if disagree:
        return LockStatus(cell.id, "modified", disagree)
    return LockStatus(cell.id, "ok")


def status(root: Path, config: Config, cells: Sequence[Cell], known: Sequence[Cell] | None = None) -> list[LockStatus]:
    """Check the selected cells' locks (inputs and content), and flag folders of cells not in the matrix.

    `known` is every cell of the matrix (default: `cells`): a filtered check never calls the locks of the
    other cells stale. Folders starting with a dot are a lock run's staging and backups, not cells.
    """
    result = [_cell_status(root, config, cell) for cell in cells]
    known_ids = {cell.id for cell in (cells if known is None else known)}
    locks = Layout(root).locks
    if locks.is_dir():
        for extra in sorted(p.name for p in locks.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in known_ids):
            result.append(LockStatus(extra, "stale", "no such cell in versions.toml any more; delete the folder"))
    return result


def check_cuda_pins(config: Config, cell: Cell, cuda_pins: Sequence[Pin]) -> None:
    """The CUDA in a tag must be the CUDA inside: every locked nvidia wheel is one versions.toml pins."""
    if cell.cuda is None:
        if cuda_pins:
            raise PipelineError(f"{cell.id}: a CPU cell resolved CUDA wheels ({', '.join(p.name for p in cuda_pins)})")
        return
    pinned = dict(config.cuda[cell.cuda].wheels)
    unpinned = [f"{p.name}=={p.version}" for p in cuda_pins if pinned.get(p.name) != p.version]
    if unpinned:
        raise PipelineError(
            f'{cell.id}: these CUDA wheels are not the versions pinned by [cuda."{cell.cuda}"] in versions.toml: {", ".join(unpinned)}; add them to its wheels'
        )


def locked_versions(root: Path, cell: Cell) -> dict[str, str]:
    """name -> version of everything the cell's lock installs."""
    meta = read_meta(lock_dir(root, cell))
    return {name: version for group in meta["groups"].values() for name, version in group.items()}


def shared_between(root: Path, a: Cell, b: Cell) -> list[str]:
    """The lock groups two cells hold as one file (the one off the default platform links to the other's)."""
    found = []
    for cell, other in ((a, b), (b, a)):
        shared = read_meta(lock_dir(root, cell)).get(SHARED, {})
        found += [g for g, sibling in shared.items() if sibling == other.id]
    return [g for g in GROUPS if g in found]
