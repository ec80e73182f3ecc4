"""`nox -s reproduce`: build each selected cell twice from scratch and compare the two images.

Each build starts from a clean `git archive` export of the commit in its own temporary folder (so
checkout times, untracked files and the other build cannot leak in) and runs with no layer cache.
The two images are streamed out (`docker save`, never written to disk) and compared layer by layer
(kerastack.image_compare); the build cache records each build added are removed after it.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from . import base_images, emulation, git
from .build import build_plan
from .docker_client import SOURCE_DATE_EPOCH_SINCE, Docker, DockerException, docker_error, parse_buildkit_version
from .errors import PipelineError
from .files import write_atomic
from .image_compare import ImageComparison, ReproduceReport, SavedImage, compare_images, layers_to_read, load_saved, read_saved, write_reproduce_report
from .layout import LOGS_DIR
from .matrix import Cell
from .options import Options, Selection
from .plan import plan_cell, source_date_epoch
from .tags import BuildStamp

# On BuildKit < 0.11 the image config's creation times are the build's wall clock: nothing in the
# Dockerfile can set them. Everything else in the config must still match.
ENGINE_TIMES = ("created", "history[*].created")
# The engine stamps cache records with its own clock: records a few seconds older than the build's start
# (by this machine's clock) still count as the build's.
CLOCK_SLACK = timedelta(seconds=5)


def builder_description(docker: Docker, builder: str | None) -> str:
    version = docker.buildkit_version(builder)
    parsed = parse_buildkit_version(version)
    rewrite = "with rewrite-timestamp" if docker.rewrites_timestamps(builder) else "without rewrite-timestamp (the Dockerfile clamps file times)"
    return f"{builder or 'default'} builder, BuildKit {version or 'unknown'}{'' if parsed else ' (unrecognised version)'}, {rewrite}"


def tolerated_config_fields(docker: Docker, builder: str | None) -> tuple[str, ...]:
    return tolerated_for(docker.buildkit_version(builder))


def tolerated_for(buildkit_version: str) -> tuple[str, ...]:
    """The wall-clock fields a builder cannot set: only on a known BuildKit older than 0.11. An unknown
    version tolerates nothing (and then the image IDs must match)."""
    version = parse_buildkit_version(buildkit_version)
    return ENGINE_TIMES if version is not None and version < SOURCE_DATE_EPOCH_SINCE else ()


def reproduce(docker: Docker, options: Options, selection: Selection, console: Console | None = None) -> ReproduceReport:
    console = console or Console(stderr=True)
    commit = git.head(options.root)
    if git.has_uncommitted_changes(options.root):
        console.print(f"[yellow]note:[/] uncommitted changes are not checked: both builds use commit {commit.revision}")
    stamp = BuildStamp.at(datetime.now(UTC), commit.revision)  # one stamp: both builds get the same labels
    tolerated = tolerated_config_fields(docker, options.builder)
    comparisons = []
    for cell in selection.selected:
        console.print(f"{cell.id}: two builds from scratch")
        try:
            comparisons.append(_reproduce_cell(docker, options, selection, cell, commit, stamp, tolerated, console))
        except (PipelineError, DockerException) as exc:
            comparisons.append(ImageComparison(cell.id, "", "", 0, error=str(exc).strip()[-500:]))
            console.print(f"[red]✗ {cell.id}[/]: {escape(str(exc))}")
    notes = []
    if tolerated:
        notes.append(
            "This builder's BuildKit (< 0.11) stamps the image config's `created` and each history entry's `created` with the build's "
            "wall clock, and nothing in a Dockerfile can change them; they are the only config fields allowed to differ, so the image ID "
            "differs while every layer digest is identical. BuildKit >= 0.11 takes them from SOURCE_DATE_EPOCH."
        )
    report = ReproduceReport(commit.revision, source_date_epoch(commit.created), builder_description(docker, options.builder), comparisons, notes)
    write_reproduce_report(report, options.report_dir)
    return report


def _reproduce_cell(
    docker: Docker, options: Options, selection: Selection, cell: Cell, commit: git.Commit, stamp: BuildStamp, tolerated, console: Console
) -> ImageComparison:
    engine = docker.engine_platform()
    if cell.platform != engine:
        emulation.require(cell.platform)  # both builds run under QEMU
    python = selection.config.python[cell.python]
    base = base_images.resolve(docker, python, offline=options.offline_base, mirror=options.debian_mirror, platform=cell.platform)
    build_base = (
        base_images.resolve(docker, python, offline=options.offline_base, mirror=options.debian_mirror, platform=engine) if cell.platform != engine else base
    )
    base_layers = len(docker.layers(base.ref))
    labels = base_images.labels(base, base_images.record(docker, base))
    plan = plan_cell(selection.config, selection.all_cells, cell, stamp, base.ref, commit.created, labels, build_base.ref)
    refs = [f"{plan.image}:reproduce-{cell.id}-{n}" for n in (1, 2)]
    if options.work_dir is not None:
        options.work_dir.mkdir(parents=True, exist_ok=True)  # --work-dir is created when missing
    cache_before = _cache_ids(docker, options, console)
    with tempfile.TemporaryDirectory(prefix=f"kerastack-reproduce-{cell.id}-", dir=options.work_dir) as tmp:
        try:
            for n, ref in enumerate(refs, start=1):
                started = datetime.now(UTC)
                context = Path(tmp) / f"export-{n}"
                git.export_head(options.root, context)
                outcome = build_plan(
                    docker,
                    options,
                    plan,
                    context=context,
                    no_cache=True,
                    tags=[ref],
                    on_step=lambda step, n=n: console.print(escape(f"  build {n}: {step}"), highlight=False) if "RUN" in step or "COPY" in step else None,
                )
                log_file = write_atomic(options.report_dir / LOGS_DIR / f"reproduce-{cell.id}-{n}.log", "\n".join(outcome.log) + "\n")
                if not outcome.ok:
                    raise PipelineError(f"build {n} of {cell.id} failed: {outcome.error} (log: {log_file})")
                console.print(f"  build {n}: {outcome.image_id[:19]} in {outcome.seconds:.0f} s")
                shutil.rmtree(context)  # the export is in the image now
                # The image keeps its layers; its stage snapshots can go before the next build starts,
                # so the two builds never hold the disk twice.
                after = _remove_new_cache(docker, cache_before, started, console, f"build {n}")
                cache_before = after if after is not None else _cache_ids(docker, options, console)
            comparison = compare_images(cell.id, *_read_both(docker, options, cell, refs, console), base_layers, tolerated)
        finally:
            if not options.get("keep_images"):
                docker.remove_images(refs)
            _remove_new_cache(docker, cache_before, started, console, "the failed build")
    verdict = "[green]identical[/]" if comparison.ok else "[red]differs[/]"
    console.print(f"{cell.id}: {verdict}: {comparison.identical_layers}/{len(comparison.layers_above_base)} layers above the base identical")
    return comparison


def _read_both(docker: Docker, options: Options, cell: Cell, refs: list[str], console: Console) -> tuple[SavedImage, SavedImage]:
    """Both images, each `docker save`d once and read as a stream: nothing on disk, and the layers' members
    read only when some diff ID differs (then only the member lists of layers some differing position needs
    are kept). --keep-archives writes the two archives instead, for a look inside."""
    ids = [list(docker.inspect(ref).root_fs.layers or []) for ref in refs]
    look_inside, known_identical = layers_to_read(ids[0], ids[1])
    saved = []
    for n, ref in enumerate(refs, start=1):
        try:
            if options.get("keep_archives"):
                folder = options.work_dir or options.report_dir
                folder.mkdir(parents=True, exist_ok=True)
                archive = folder / f"reproduce-{cell.id}-{n}.tar"
                docker.save(ref, archive)
                console.print(f"  kept {archive}")
                saved.append(load_saved(archive, look_inside, known_identical))
            else:
                with docker.save_stream(ref) as stream:
                    saved.append(read_saved(stream, f"docker save {ref}", look_inside, known_identical))
        except ValueError as exc:  # what the engine gave is not a readable archive of one image
            raise PipelineError(f"cannot read build {n} of {cell.id} ({ref}): {exc}") from exc
    return saved[0], saved[1]


@dataclass(frozen=True)
class CacheBefore:
    records: frozenset[str]  # the engine's cache record IDs before a build


def _cache_ids(docker: Docker, options: Options, console: Console) -> CacheBefore | None:
    """The engine's build cache before the builds: what each adds is its own to remove. Only the engine's
    own builder is listed this way; another builder keeps what the builds leave. A listing that fails means
    nothing is removed later (never "everything is new")."""
    if options.builder:
        console.print(f"[yellow]note:[/] the builds' cache stays in builder {options.builder} (only the engine's own builder's cache is removed)")
        return None
    try:
        return CacheBefore(frozenset(docker.build_cache_records()))
    except DockerException as exc:
        console.print(f"[yellow]note:[/] the build cache cannot be listed, so the builds' cache records will stay: {escape(docker_error(exc))}")
        return None


def _remove_new_cache(docker: Docker, before: CacheBefore | None, since: datetime, console: Console, label: str) -> CacheBefore | None:
    """A no-cache build leaves a full set of stage snapshots (gigabytes) that no later build can use;
    remove the records it added: not listed before, and created since it started (a build of the same
    engine at the same time would lose its new records too: cache only, it makes them again). Cache
    mounts (the pip and apt downloads) stay. What went is counted from a second listing, which is also
    what the next build starts from (None when there is none)."""
    if before is None:
        return None
    try:
        added = {i: r for i, r in docker.build_cache_records().items() if i not in before.records and r.created >= since - CLOCK_SLACK}
        docker.remove_build_cache(added)
        after = CacheBefore(frozenset(docker.build_cache_records()))
    except DockerException as exc:
        console.print(f"[yellow]note:[/] {label}: its build cache could not be removed: {escape(docker_error(exc))}")
        return None
    stayed = set(added) & after.records
    if added:
        console.print(f"  {label}: removed {len(added) - len(stayed)} build cache records it added ({len(stayed)} still in use stay)")
    return after
