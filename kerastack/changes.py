"""What changed between two tags: package diffs of lock files and published manifests. Pure."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from .contract import PLATFORMS
from .errors import PipelineError
from .files import read_json
from .matrix import Cell, on_platform, previous_release

KINDS = ("added", "removed", "upgraded", "downgraded", "changed")


@dataclass(frozen=True)
class Change:
    name: str
    old: str | None
    new: str | None

    @property
    def kind(self) -> str:
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        try:
            return "upgraded" if Version(self.new) > Version(self.old) else "downgraded"
        except InvalidVersion:  # not PEP 440: say it changed, without guessing a direction
            return "changed"


@dataclass(frozen=True)
class Comparison:
    """One cell's packages against a baseline; `changes` is None when there is no baseline."""

    cell: str
    baseline: str  # what it is compared with: a cell id or a manifest file
    changes: tuple[Change, ...] | None
    note: str = ""  # why there is no baseline (changes is None), or a remark on the comparison

    def counts(self) -> dict[str, int]:
        found = {kind: 0 for kind in KINDS}
        for change in self.changes or ():
            found[change.kind] += 1
        return found


def diff(old: Mapping[str, str], new: Mapping[str, str]) -> tuple[Change, ...]:
    """Packages added, removed or with another version, by kind then name; unchanged ones are left out."""
    changes = [Change(name, old.get(name), new.get(name)) for name in sorted(old.keys() | new.keys()) if old.get(name) != new.get(name)]
    return tuple(sorted(changes, key=lambda c: (KINDS.index(c.kind), c.name)))


def comparisons(
    selected: Sequence[Cell],
    all_cells: Sequence[Cell],
    versions_of: Callable[[Cell], Mapping[str, str]],
    manifest: tuple[str, str, Mapping[str, str]] | None = None,
    against_platform: str | None = None,
    shared_with: Callable[[Cell, Cell], Sequence[str]] | None = None,
) -> list[Comparison]:
    """Per selected cell: against the previous TensorFlow release of the same Python/variant/CUDA/platform in the
    matrix, or with `against_platform` against the cell of the same stem (same tag) on that platform (or a note
    that there is none), and against `manifest` (source, cell, packages) when given. `shared_with(cell, other)`
    names the lock groups the two share as one file; a platform comparison says how many."""
    if against_platform is not None and against_platform not in PLATFORMS:
        raise PipelineError(f"--against-platform {against_platform!r}: not a platform of the matrix; use one of {', '.join(PLATFORMS)}")
    result = []
    for cell in selected:
        new = versions_of(cell)
        if against_platform is not None:
            other = on_platform(cell, all_cells, against_platform)
            if cell.platform == against_platform:
                result.append(Comparison(cell.id, "", None, f"is itself the {against_platform} cell: select another platform's cell of {cell.stem}"))
            elif other is None:
                result.append(Comparison(cell.id, "", None, f"no {against_platform} cell of {cell.stem} in the matrix to compare with"))
            else:
                shared = list(shared_with(cell, other)) if shared_with else []
                note = f"lock groups shared as one file: {', '.join(shared)}" if shared else "no lock group shared as one file"
                result.append(Comparison(cell.id, other.id, diff(versions_of(other), new), note))
        else:
            previous = previous_release(cell, all_cells)
            if previous is None:
                what = f"Python {cell.python} {cell.variant}" + (f" CUDA {cell.cuda}" if cell.cuda else "") + f" on {cell.platform}"
                result.append(Comparison(cell.id, "", None, f"no earlier TensorFlow release of {what} in the matrix to compare with"))
            else:
                result.append(Comparison(cell.id, previous.id, diff(versions_of(previous), new)))
        if manifest is not None:
            source, manifest_cell, packages = manifest
            result.append(Comparison(cell.id, f"the manifest of {manifest_cell} ({source})", diff(packages, new)))
    return result


MANIFEST_FIX = "give a reports/manifests/<cell>.json or an image's /usr/share/kerastack/manifest.json"


def manifest_packages(data: object, source: str) -> tuple[str, dict[str, str]]:
    """(cell, name -> version) of the locked Python packages of a published manifest (parsed JSON)."""
    try:
        if not isinstance(data, dict) or not isinstance(data.get("cell"), str) or not isinstance(data.get("python_packages"), list):
            raise TypeError("expected an object with a cell and a list of python_packages")
        packages = {}
        for p in data["python_packages"]:
            if not isinstance(p, dict) or not all(isinstance(p.get(k), str) for k in ("name", "version")):
                raise TypeError(f"a package entry is not a name and a version: {p!r}"[:200])
            if p.get("group") != "venv":
                packages[p["name"]] = p["version"]
        return data["cell"], packages
    except TypeError as exc:
        raise PipelineError(f"{source}: not a kerastack manifest ({exc}); {MANIFEST_FIX}") from None


def read_manifest(path: Path) -> tuple[str, dict[str, str]]:
    return manifest_packages(read_json(path, "a kerastack manifest", MANIFEST_FIX), str(path))


def to_text_rows(comparison: Comparison) -> list[tuple[str, str, str, str]]:
    """(change, package, from, to) rows of one comparison."""
    return [(c.kind, c.name, c.old or "–", c.new or "–") for c in comparison.changes or ()]


def summary_line(comparison: Comparison) -> str:
    if comparison.changes is None:
        return f"{comparison.cell}: {comparison.note}"
    counts = ", ".join(f"{n} {kind}" for kind, n in comparison.counts().items() if n) or "no package changed"
    return f"{comparison.cell} vs {comparison.baseline}: {counts}" + (f" ({comparison.note})" if comparison.note else "")


def to_markdown(comparisons: Sequence[Comparison]) -> str:
    """The release summary: one section per comparison, each with its table of changes."""
    lines = ["## What changed", ""]
    for comparison in comparisons:
        lines += [f"### {summary_line(comparison)}", ""]
        rows = to_text_rows(comparison)
        if rows:
            lines += ["| change | package | from | to |", "|---|---|---|---|", *(f"| {k} | {n} | {o} | {v} |" for k, n, o, v in rows), ""]
    return "\n".join(lines) + "\n"
