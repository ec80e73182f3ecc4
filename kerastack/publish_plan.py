"""The publish plan, the pure half of publishing: from the build report, the smoke reports and the matrix,
what is pushed, in which order, and what is held back and why; and the publish report's type and reader.

A stem (the cells that differ only in their platform) with one configured platform is pushed directly under
its tags. A stem with several is published as one multi-platform index, and only when every configured
platform's cell of it is ready: each platform's image is pushed under its own staging tag
(`tags.staging_tag`, never moved), then one index of those digests goes under the immutable tag, then the
cell tag, then the moving tags. In a release the platforms are built on separate runners: each job stages
its platform (`--stage staging`), and `publish-index` joins the staged digests from their publish reports
(`plan_index_from_reports`).

kerastack.publish is the other half: it carries the plan out against a registry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import contract
from .build_report import BuildReport, CellReport
from .config import Config
from .errors import PipelineError
from .files import read_json
from .layout import PUBLISH_REPORT
from .matrix import Cell
from .smoke_report import SmokeReport
from .tags import IMMUTABLE, MOVING, moving_tags, published_tag, staging_tag

CELL = "cell"
STAGING = "staging"  # one platform's image of a multi-platform stem, under its per-platform tag


@dataclass(frozen=True)
class Part:
    """One platform's image of a multi-platform index."""

    platform: str
    cell: str
    source: str  # REPOSITORY:STAGING_TAG, where it was pushed
    image_id: str  # the config digest the registry's manifest must name: the built, smoke-tested image
    digest: str = ""  # its manifest digest when a publish report says so (the join); "" = this run's staging push


@dataclass(frozen=True)
class PushStep:
    ref: str  # where it goes: REPOSITORY:TAG
    source: str  # the local image (immutable ref) or, for a remote retag, REPOSITORY@DIGEST; "" for an index of `parts`
    kind: str  # staging | immutable | cell | moving
    cell: str  # the cell, or for a step of a multi-platform index its stem
    image_id: str = ""  # the image that was built and smoke-tested; the source must still be it
    facts: dict = field(default_factory=dict, compare=False)  # recorded in the publish report, e.g. gpu_op_on_gpu
    stem: str = ""  # a step of a multi-platform index: the stem's entry of the report records it
    parts: tuple[Part, ...] = ()  # immutable/cell steps of an index: every platform's image


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


def stems(all_cells: Sequence[Cell]) -> dict[str, list[Cell]]:
    """Every stem of the matrix and its cells, one per configured platform, in contract.PLATFORMS order."""
    found: dict[str, list[Cell]] = {}
    for cell in all_cells:
        found.setdefault(cell.stem, []).append(cell)
    order = {p: i for i, p in enumerate(contract.PLATFORMS)}
    return {stem: sorted(cells, key=lambda c: order.get(c.platform, len(order))) for stem, cells in found.items()}


def hold_reason(cell: Cell, built: CellReport | None, tested: SmokeReport | None, gates: Gates) -> str:
    """Why this cell may not be published now, or "" when it may."""
    if built is None or built.status != "built":
        return "not built in this run" if built is None else f"build failed: {built.error[:200]}"
    if built.platform != cell.platform:
        return f"the build report says {built.platform}, but the cell is {cell.platform}: build it again"
    if tested is None:
        return "no smoke test result in this run: run `nox -s smoke` first"
    if not tested.ok:
        return f"smoke tests failed: {', '.join(tested.failed) or 'no test passed'}"
    if tested.image_id != built.image_id:
        return "the smoke-tested image is not the built one (rebuilt since?): run smoke again"
    immutable = built.tags[0] if built.tags else ""
    if immutable.removesuffix(contract.platform_suffix(cell.platform)).endswith("-dirty") and not gates.allow_dirty:
        return "built from a tree with uncommitted changes (tracked files, or untracked ones in the build context): commit and rebuild (or --allow-dirty)"
    if immutable.removesuffix(contract.platform_suffix(cell.platform)).endswith("-unknown") and not gates.allow_dirty:
        why = "built where git could not tell the revision (no git, or not a repository), so it may hold anything"
        return f"{why}: build in a git checkout (or --allow-dirty)"
    if bootstrapped(built) and not gates.allow_bootstrapped_base:
        why = f"built on a {built.base_source or 'unrecorded'} base ({built.base_image or 'unknown'}), not the official image pulled by digest"
        return f"{why}: build where the registry is reachable (or --allow-bootstrapped-base, recorded in the publish report)"
    if cell.is_gpu and not tested.gpu_op_ran_on_gpu and not gates.allow_untested_gpu:
        return f"its GPU checks did not run on a GPU ({tested.gpu_skip_reason()}): smoke-test it on a GPU host (or --allow-untested-gpu)"
    suffix = contract.platform_suffix(cell.platform)
    if len(built.tags) < 2 or not all(ref.endswith(suffix) for ref in built.tags[:2]):
        return f"the build report names no immutable and cell tag{f' ending in {suffix}' if suffix else ''} for it: build it again"
    return ""


def _index_tags(config: Config, built: CellReport) -> list[str]:
    """The registry refs (immutable, cell) of a cell's image: its local tags without the platform suffix."""
    return [f"{config.image}:{published_tag(ref.rsplit(':', 1)[1], built.platform)}" for ref in built.tags[:2]]


def stem_hold_reason(config: Config, cell: Cell, platforms: Sequence[Cell], selected: Sequence[Cell], built: Mapping[str, CellReport],
                     smoke: Mapping[str, SmokeReport], gates: Gates) -> str:  # fmt: skip
    """Why a ready cell of a multi-platform stem is still held back, or "": its stem goes out for every
    configured platform or not at all, so a tag never points at an index that lacks one."""
    every = ", ".join(f"{c.id} ({c.platform})" for c in platforms)
    prefix = f"its tags are one index of every platform of {cell.stem} ({every}), published only when all of them are ready, and"
    for other in platforms:
        if other not in selected:
            return f"{prefix} {other.id} is not selected in this run: select every platform of the stem"
        why = hold_reason(other, built.get(other.id), smoke.get(other.id), gates)
        if why:
            return f"{prefix} {other.id} is not: {why}"
    index = {json.dumps(_index_tags(config, built[c.id])) for c in platforms}
    if len(index) != 1:
        return f"{prefix} its platforms were built with different build stamps ({' vs '.join(sorted(index))}): build them from one commit on one day"
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
    staging_only: bool = False,
) -> PublishPlan:
    """Staging tags first (each platform of a multi-platform stem), then immutable tags, then cell tags, then
    moving tags, the last only when every selected cell is ready. `staging_only` (a release's per-platform
    job): multi-platform stems stop at their staging tags, for `publish-index` to join; moving tags stay."""
    built = {c.cell: c for c in build.cells}
    by_stem = stems(all_cells)
    ready: list[CellReport] = []
    held: list[tuple[str, str]] = []
    for cell in selected:
        why = hold_reason(cell, built.get(cell.id), smoke.get(cell.id), gates)
        if not why and not staging_only and len(by_stem[cell.stem]) > 1:
            why = stem_hold_reason(config, cell, by_stem[cell.stem], selected, built, smoke, gates)
        if why:
            held.append((cell.id, why))
        else:
            ready.append(built[cell.id])
    cell_of = {c.id: c for c in all_cells}
    steps = _cell_steps(config, cell_of, by_stem, ready, smoke, staging_only)
    moving_why = ""
    if staging_only or not move_tags:
        moving_why = "not asked to move tags"
    elif held:
        moving_why = f"{len(held)} selected cell(s) not ready, so no moving tag moves"
    else:
        owners, done = moving_tags(config, all_cells), set()
        for r in ready:
            stem = cell_of[r.cell].stem
            if len(by_stem[stem]) == 1:
                steps += [PushStep(f"{config.image}:{tag}", r.image_id, MOVING, r.cell, r.image_id) for tag in owners.get(r.cell, ())]
            elif stem not in done:
                done.add(stem)
                steps += [PushStep(f"{config.image}:{tag}", "", MOVING, stem, stem=stem) for tag in owners.get(r.cell, ())]
    return PublishPlan(tuple(steps), tuple(held), moving_why)


def _cell_steps(config: Config, cell_of: Mapping[str, Cell], by_stem: Mapping[str, list[Cell]], ready: Sequence[CellReport],
                smoke: Mapping[str, SmokeReport], staging_only: bool) -> list[PushStep]:  # fmt: skip
    """Targets are named from the config, so --registry / KERASTACK_REGISTRY decide where images go. The
    source is the image id that was built and smoke-tested, not a tag that a later build may move."""
    staging, immutable, cell_tags, seen = [], [], [], set()
    for r in ready:
        cell = cell_of[r.cell]
        facts = {"gpu_op_on_gpu": smoke[r.cell].gpu_op_ran_on_gpu if cell.is_gpu else None, "base": base_facts(r)}
        refs = _index_tags(config, r)
        if len(by_stem[cell.stem]) == 1:
            immutable.append(PushStep(refs[0], r.image_id, IMMUTABLE, r.cell, r.image_id, facts))
            cell_tags.append(PushStep(refs[1], r.image_id, CELL, r.cell, r.image_id, facts))
            continue
        ref = f"{config.image}:{staging_tag(refs[0].rsplit(':', 1)[1], cell.platform)}"
        facts |= {"platform": cell.platform, "stem": cell.stem, "index_tags": refs, "image_id": r.image_id}
        staging.append(PushStep(ref, r.image_id, STAGING, r.cell, r.image_id, facts))
        if staging_only or cell.stem in seen:
            continue
        seen.add(cell.stem)
        of_stem = {x.cell: x for x in ready if cell_of[x.cell].stem == cell.stem}
        parts = tuple(
            Part(c.platform, c.id, f"{config.image}:{staging_tag(refs[0].rsplit(':', 1)[1], c.platform)}", of_stem[c.id].image_id) for c in by_stem[cell.stem]
        )
        immutable.append(PushStep(refs[0], "", IMMUTABLE, cell.stem, stem=cell.stem, parts=parts))
        cell_tags.append(PushStep(refs[1], "", CELL, cell.stem, stem=cell.stem, parts=parts))
    return staging + immutable + cell_tags


def _retarget(ref: str, image: str) -> str:
    return f"{image}:{ref.rsplit(':', 1)[1]}"


def _staged(reports: Sequence[PublishResult]) -> tuple[dict[str, dict], set[str]]:
    """The staged platform images the publish reports name, by cell; and the cells whose reports disagree."""
    found: dict[str, dict] = {}
    conflicting: set[str] = set()
    for report in reports:
        for cell_id, entry in report.cells.items():
            if not (entry.get("pushed") and entry.get("stem")):
                continue
            if cell_id in found and (found[cell_id]["digest"], found[cell_id]["index_tags"]) != (entry["digest"], entry["index_tags"]):
                conflicting.add(cell_id)
            found.setdefault(cell_id, entry)
    return found, conflicting


def plan_index_from_reports(config: Config, all_cells: Sequence[Cell], selected: Sequence[Cell], reports: Sequence[PublishResult]) -> PublishPlan:
    """For the join of a release: one index per selected multi-platform stem from the staged digests its
    per-platform jobs' publish reports name, under the immutable and then the cell tag; only when every
    configured platform of the stem was staged, from one build stamp. Moving tags are the release job's."""
    by_stem = stems(all_cells)
    staged, conflicting = _staged(reports)
    steps: list[PushStep] = []
    cell_steps: list[PushStep] = []
    held: list[tuple[str, str]] = []
    for stem in dict.fromkeys(c.stem for c in selected if len(by_stem[c.stem]) > 1):
        platforms = by_stem[stem]
        every = ", ".join(f"{c.id} ({c.platform})" for c in platforms)
        prefix = f"the index of {stem} needs every configured platform ({every}), and"
        why = ""
        for c in platforms:
            entry = staged.get(c.id)
            if c.id in conflicting:
                why = f"{prefix} two publish reports name different images for {c.id}: download only this run's reports"
            elif entry is None:
                why = f"{prefix} no publish report says {c.id} was pushed (its job failed, was held back or did not run)"
            elif entry.get("platform") != c.platform or entry.get("stem") != stem:
                why = f"{prefix} the report of {c.id} names platform {entry.get('platform')!r} and stem {entry.get('stem')!r}"
            if why:
                break
        if not why:
            index = {json.dumps([t.rsplit(":", 1)[1] for t in staged[c.id]["index_tags"]]) for c in platforms}
            if len(index) != 1:
                why = f"{prefix} its platforms were built with different build stamps ({' vs '.join(sorted(index))}): release them from one run"
        if why:
            held += [(c.id, why) for c in platforms if c in selected]
            continue
        refs = [_retarget(t, config.image) for t in staged[platforms[0].id]["index_tags"]]
        parts = tuple(
            Part(c.platform, c.id, _retarget(staged[c.id]["tags"][0], config.image), staged[c.id]["image_id"], staged[c.id]["digest"]) for c in platforms
        )
        steps.append(PushStep(refs[0], "", IMMUTABLE, stem, stem=stem, parts=parts))
        cell_steps.append(PushStep(refs[1], "", CELL, stem, stem=stem, parts=parts))
    return PublishPlan(tuple(steps + cell_steps), tuple(held), "the join moves no tag: the release job moves them from its report")


def plan_moving_from_reports(config: Config, all_cells: Sequence[Cell], selected: Sequence[Cell], reports: Sequence[PublishResult]) -> PublishPlan:
    """For the release job: move moving tags to the digests other jobs pushed, if every selected cell was
    pushed: a single-platform cell's image, or for a multi-platform stem its index listing every platform."""
    by_stem = stems(all_cells)
    pushed: dict[str, dict] = {}
    indexes: dict[str, dict] = {}
    for report in reports:
        for cell_id, entry in report.cells.items():
            if entry.get("pushed") and not entry.get("stem"):
                pushed[cell_id] = entry
        for stem, entry in report.stems.items():
            if entry.get("pushed"):
                indexes[stem] = entry
    held = []
    for c in selected:
        if len(by_stem[c.stem]) == 1:
            if c.id not in pushed:
                held.append((c.id, "no publish report says it was pushed"))
            continue
        expected = [x.platform for x in by_stem[c.stem]]
        entry = indexes.get(c.stem)
        if entry is None:
            held.append((c.id, f"no publish report says the index of {c.stem} ({', '.join(expected)}) was pushed"))
        elif sorted(entry["platforms"]) != sorted(expected):
            held.append((c.id, f"the index of {c.stem} lists {', '.join(sorted(entry['platforms']))}, not every configured platform ({', '.join(expected)})"))
    if held:
        return PublishPlan((), tuple(held), f"{len(held)} selected cell(s) not pushed, so no moving tag moves")
    owners = moving_tags(config, all_cells)
    steps, done = [], set()
    for c in selected:
        if len(by_stem[c.stem]) == 1:
            steps += [PushStep(f"{config.image}:{tag}", f"{config.image}@{pushed[c.id]['digest']}", MOVING, c.id) for tag in owners.get(c.id, ())]
        elif c.stem not in done:
            done.add(c.stem)
            steps += [PushStep(f"{config.image}:{tag}", f"{config.image}@{indexes[c.stem]['digest']}", MOVING, c.stem) for tag in owners.get(c.id, ())]
    return PublishPlan(tuple(steps), ())


@dataclass
class PublishResult:
    """What a publish did. Written as the publish report even when it stopped partway."""

    # cell -> pushed, tags (pushed), not_pushed {ref: why}, digest, size; a platform of a multi-platform stem
    # also platform, stem and index_tags (its image went under its staging tag; `pushed` says that it did)
    cells: dict[str, dict] = field(default_factory=dict)
    moved: dict[str, str] = field(default_factory=dict)  # moving tag -> digest
    held_back: dict[str, str] = field(default_factory=dict)
    not_moved: dict[str, str] = field(default_factory=dict)  # moving tag -> why it stayed
    ok: bool = True
    # stem -> pushed, tags, not_pushed, digest (the index's), platforms {platform: {cell, digest, image_id}}
    stems: dict[str, dict] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_data(cls, data: object, source: str) -> PublishResult:
        """A publish report read back (the release job reads the cell jobs'); PipelineError when it is not one."""
        try:
            if not isinstance(data, dict) or set(data) - {f for f in cls.__dataclass_fields__}:
                raise TypeError("expected an object with cells, stems, moved, held_back, not_moved and ok")
            result = cls(**data)
            if not isinstance(result.cells, dict) or not isinstance(result.stems, dict) or not isinstance(result.ok, bool):
                raise TypeError("cells or stems is not an object, or ok is not true/false")
            for name in ("moved", "held_back", "not_moved"):
                if not _str_map(getattr(result, name)):
                    raise TypeError(f"{name} is not an object of strings")
            for cell, entry in result.cells.items():
                why = _entry_problem(cell, entry)
                if why:
                    raise TypeError(f"the entry of {cell!r}"[:80] + f" {why}")
            for stem, entry in result.stems.items():
                why = _stem_problem(stem, entry)
                if why:
                    raise TypeError(f"the index entry of {stem!r}"[:80] + f" {why}")
            return result
        except TypeError as exc:
            raise PipelineError(f"{source}: not a kerastack publish report ({exc}); download the cell jobs' publish reports again") from None

    def pushed(self) -> list[tuple[str, dict]]:
        """(cell, entry) of every pushed cell, by cell (a platform of a multi-platform stem: staged)."""
        return [(cell, entry) for cell, entry in sorted(self.cells.items()) if entry.get("pushed")]

    def pushed_stems(self) -> list[tuple[str, dict]]:
        """(stem, entry) of every multi-platform index pushed under its tags, by stem."""
        return [(stem, entry) for stem, entry in sorted(self.stems.items()) if entry.get("pushed")]


_DIGEST = re.compile(r"sha256:[0-9a-f]{64}", re.ASCII)
_CELL_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}", re.ASCII)


def _str_map(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _common_problem(entry: object) -> str:
    """What the entry of a cell or a stem lacks of the fields both have, or ""."""
    if not isinstance(entry, dict) or not isinstance(entry.get("pushed"), bool):
        return "has no pushed flag"
    tags, digest = entry.get("tags", []), entry.get("digest", "")
    if not _str_list(tags):
        return "has tags that are not a list of strings"
    if not isinstance(digest, str) or (digest and not _DIGEST.fullmatch(digest)):
        return "has a digest that is not sha256:<64 hex digits>"
    if entry["pushed"] and not (tags and digest):
        return "says pushed but has no tags or digest"
    if not _str_map(entry.get("not_pushed", {})) or not isinstance(entry.get("error", ""), str):
        return "has a not_pushed or error of the wrong type"
    return ""


def _entry_problem(cell: str, entry: object) -> str:
    """What makes one cell's entry of a publish report not what `publish` writes, or ""."""
    if not _CELL_ID.fullmatch(cell):
        return "is not named by a cell id"
    why = _common_problem(entry)
    if why:
        return why
    assert isinstance(entry, dict)
    size = entry.get("size", 0)
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        return "has a size that is not a number of bytes"
    if entry.get("gpu_op_on_gpu") not in (True, False, None):
        return "has a gpu_op_on_gpu that is not true, false or null"
    staged = {k: entry[k] for k in ("platform", "stem", "index_tags") if k in entry}
    if staged:
        if set(staged) != {"platform", "stem", "index_tags"}:
            return "names some but not all of platform, stem and index_tags"
        if staged["platform"] not in contract.PLATFORMS or not isinstance(staged["stem"], str) or not _CELL_ID.fullmatch(staged["stem"]):
            return f"has a platform that is not one of {', '.join(contract.PLATFORMS)}, or a stem that is not a cell tag"
        if not _str_list(staged["index_tags"]) or len(staged["index_tags"]) != 2 or not all(":" in t for t in staged["index_tags"]):
            return "has index_tags that are not [IMMUTABLE_REF, CELL_REF]"
        if entry["pushed"] and not _DIGEST.fullmatch(str(entry.get("image_id", ""))):
            return "says its platform image was pushed but names no image_id (sha256:<64 hex digits>)"
    return ""


def _stem_problem(stem: str, entry: object) -> str:
    """What makes one multi-platform index entry of a publish report not what `publish` writes, or ""."""
    if not _CELL_ID.fullmatch(stem):
        return "is not named by a stem (a cell tag)"
    why = _common_problem(entry)
    if why:
        return why
    assert isinstance(entry, dict)
    platforms = entry.get("platforms", {})
    if not isinstance(platforms, dict):
        return "has platforms that are not an object"
    for platform, image in platforms.items():
        if platform not in contract.PLATFORMS:
            return f"names platform {platform!r}, not one of {', '.join(contract.PLATFORMS)}"
        if not isinstance(image, dict) or set(image) != {"cell", "digest", "image_id"}:
            return f"has a {platform} image that is not {{cell, digest, image_id}}"
        if not isinstance(image["cell"], str) or not _CELL_ID.fullmatch(image["cell"]):
            return f"has a {platform} image whose cell is not a cell id"
        if not all(isinstance(image[k], str) and _DIGEST.fullmatch(image[k]) for k in ("digest", "image_id")):
            return f"has a {platform} image whose digest or image_id is not sha256:<64 hex digits>"
    if entry["pushed"] and len(platforms) < 2:
        return "says pushed but lists fewer than two platforms"
    return ""


def load_publish_reports(directory: Path, names: Sequence[str] = (PUBLISH_REPORT,)) -> list[tuple[Path, PublishResult]]:
    """Every publish report under `directory` (the cell jobs' downloads, and the join's), validated."""
    found = sorted(path for name in names for path in directory.rglob(name))
    if not found:
        raise PipelineError(f"no {' or '.join(names)} under {directory}: download the cell jobs' publish reports there")
    fix = "download the cell jobs' publish reports again"
    return [(path, PublishResult.from_data(read_json(path, "a publish report", fix), str(path))) for path in found]
