"""`nox -s reproduce`: build each selected cell twice from scratch and compare the two images.

Each build starts from a clean `git archive` export of the commit in its own temporary folder (so
checkout times, untracked files and the other build cannot leak in) and runs with no layer cache.
The two images are saved (`docker save`) and compared layer by layer (kerastack.image_compare).
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from . import base_images, git
from .build import build_plan
from .docker_client import SOURCE_DATE_EPOCH_SINCE, Docker, DockerException, parse_buildkit_version
from .errors import PipelineError
from .files import write_atomic
from .image_compare import ImageComparison, ReproduceReport, SavedImage, compare_images, load_saved, write_reproduce_report
from .layout import LOGS_DIR
from .matrix import Cell
from .options import Options, Selection
from .plan import plan_cell, source_date_epoch
from .tags import BuildStamp

# On BuildKit < 0.11 the image config's creation times are the build's wall clock: nothing in the
# Dockerfile can set them. Everything else in the config must still match.
ENGINE_TIMES = ("created", "history[*].created")


def builder_description(docker: Docker, builder: str | None) -> str:
    version = docker.buildkit_version(builder)
    parsed = parse_buildkit_version(version)
    rewrite = "with rewrite-timestamp" if docker.rewrites_timestamps(builder) else "without rewrite-timestamp (the Dockerfile clamps file times)"
    return f"{builder or 'default'} builder, BuildKit {version or 'unknown'}{'' if parsed else ' (unrecognised version)'}, {rewrite}"


def tolerated_config_fields(docker: Docker, builder: str | None) -> tuple[str, ...]:
    version = parse_buildkit_version(docker.buildkit_version(builder))
    return () if version is not None and version >= SOURCE_DATE_EPOCH_SINCE else ENGINE_TIMES


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
    base = base_images.resolve(docker, selection.config.python[cell.python], offline=options.offline_base, mirror=options.debian_mirror)
    base_layers = len(docker.layers(base.ref))
    plan = plan_cell(selection.config, selection.all_cells, cell, stamp, base.ref, commit.created)
    refs = [f"{plan.image}:reproduce-{cell.id}-{n}" for n in (1, 2)]
    if options.work_dir is not None:
        options.work_dir.mkdir(parents=True, exist_ok=True)  # --work-dir is created when missing
    with tempfile.TemporaryDirectory(prefix=f"kerastack-reproduce-{cell.id}-", dir=options.work_dir) as tmp:
        saved: list[SavedImage] = []
        try:
            for n, ref in enumerate(refs, start=1):
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
                archive = Path(tmp) / f"image-{n}.tar"
                docker.save(ref, archive)
                saved.append(load_saved(archive))
            comparison = compare_images(cell.id, saved[0], saved[1], base_layers, tolerated)
            if options.get("keep_archives"):
                _keep(saved, options.work_dir or options.report_dir, cell, console)
        finally:
            docker.remove_images(refs)
    verdict = "[green]identical[/]" if comparison.ok else "[red]differs[/]"
    console.print(f"{cell.id}: {verdict}: {comparison.identical_layers}/{len(comparison.layers_above_base)} layers above the base identical")
    return comparison


def _keep(saved: list[SavedImage], folder: Path, cell: Cell, console: Console) -> None:
    """--keep-archives: the two `docker save` archives stay, for a look inside (they are what was compared)."""
    folder.mkdir(parents=True, exist_ok=True)
    for n, image in enumerate(saved, start=1):
        kept = folder / f"reproduce-{cell.id}-{n}.tar"
        shutil.move(image.archive, kept)
        console.print(f"  kept {kept}")
