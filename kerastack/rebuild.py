"""`nox -s reproduce`: build each selected cell twice from scratch and compare the two images.

Each build starts from a clean `git archive` export of the commit in its own temporary folder (so
checkout times, untracked files and the other build cannot leak in) and runs with no layer cache.
The two images are saved (`docker save`) and compared layer by layer (kerastack.reproduce).
"""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from . import base_images, ca, docker_client
from .config import Config
from .errors import PipelineError
from .matrix import Cell
from .plan import plan_cell, source_date_epoch
from .reproduce import ImageComparison, ReproduceReport, SavedImage, compare_images, load_saved, write_reproduce_report
from .tags import BuildStamp

# On BuildKit < 0.11 the image config's creation times are the build's wall clock: nothing in the
# Dockerfile can set them. Everything else in the config must still match.
ENGINE_TIMES = ("created", "history[*].created")


@dataclass(frozen=True)
class ReproduceOptions:
    root: Path
    config: Config
    all_cells: tuple[Cell, ...]
    selected: tuple[Cell, ...]
    ca_bundle: Path | None = None
    builder: str | None = None
    report_dir: Path = Path("reports")
    work_dir: Path | None = None  # where the exports and saved images go (default: the system's temp dir)


@dataclass(frozen=True)
class Commit:
    revision: str  # short hash
    created: str  # RFC 3339 commit time


def head_commit(root: Path) -> Commit:
    """HEAD's short hash and commit time; fails closed outside a git checkout."""
    result = subprocess.run(["git", "log", "-1", "--format=%h %ct", "--abbrev=7"], cwd=root, capture_output=True, text=True)
    if result.returncode != 0 or not result.stdout.strip():
        raise PipelineError(f"{root} is not a git checkout with a commit: the reproducibility check builds a commit (`git archive HEAD`)")
    revision, seconds = result.stdout.split()
    return Commit(revision, datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))


def export_commit(root: Path, destination: Path) -> None:
    """A clean copy of HEAD's files (no untracked files, no checkout times) in `destination`."""
    destination.mkdir(parents=True)
    archive = destination.parent / f"{destination.name}.tar"
    with archive.open("wb") as out:
        result = subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=root, stdout=out, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise PipelineError(f"git archive HEAD failed in {root}: {result.stderr.strip()}")
    with tarfile.open(archive) as tar:
        tar.extractall(destination, filter="tar")
    archive.unlink()


def builder_description(builder: str | None) -> str:
    version = docker_client.buildkit_version(builder)
    parsed = docker_client.parse_buildkit_version(version)
    rewrite = "with rewrite-timestamp" if docker_client.rewrites_timestamps(builder) else "without rewrite-timestamp (the Dockerfile clamps file times)"
    return f"{builder or 'default'} builder, BuildKit {version or 'unknown'}{'' if parsed else ' (unrecognised version)'}, {rewrite}"


def tolerated_config_fields(builder: str | None) -> tuple[str, ...]:
    version = docker_client.parse_buildkit_version(docker_client.buildkit_version(builder))
    return () if version is not None and version >= docker_client.SOURCE_DATE_EPOCH_SINCE else ENGINE_TIMES


def reproduce(options: ReproduceOptions, console: Console | None = None) -> ReproduceReport:
    console = console or Console(stderr=True)
    commit = head_commit(options.root)
    if subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=options.root, capture_output=True, text=True).stdout.strip():
        console.print(f"[yellow]note:[/] uncommitted changes are not checked: both builds use commit {commit.revision}")
    secrets = ca.secret_spec(options.ca_bundle)
    builder = docker_client.builder_name(options.builder)
    stamp = BuildStamp.at(datetime.now(UTC), commit.revision)  # one stamp: both builds get the same labels
    tolerated = tolerated_config_fields(builder)
    comparisons = []
    for cell in options.selected:
        console.print(f"{cell.id}: two builds from scratch")
        try:
            comparisons.append(_reproduce_cell(options, cell, commit, stamp, secrets, builder, tolerated, console))
        except (PipelineError, docker_client.DockerException) as exc:
            comparisons.append(ImageComparison(cell.id, "", "", 0, error=str(exc).strip()[-500:]))
            console.print(f"[red]✗ {cell.id}[/]: {escape(str(exc))}")
    notes = []
    if tolerated:
        notes.append(
            "This builder's BuildKit (< 0.11) stamps the image config's `created` and each history entry's `created` with the build's "
            "wall clock, and nothing in a Dockerfile can change them; they are the only config fields allowed to differ, so the image ID "
            "differs while every layer digest is identical. BuildKit >= 0.11 takes them from SOURCE_DATE_EPOCH."
        )
    report = ReproduceReport(commit.revision, source_date_epoch(commit.created), builder_description(builder), comparisons, notes)
    write_reproduce_report(report, options.report_dir)
    return report


def _reproduce_cell(options: ReproduceOptions, cell: Cell, commit: Commit, stamp: BuildStamp, secrets, builder, tolerated, console: Console) -> ImageComparison:
    base = base_images.resolve(options.config.python[cell.python])
    base_layers = len(docker_client.layers(base.ref))
    plan = plan_cell(options.config, options.all_cells, cell, stamp, base.ref, commit.created)
    refs = [f"{plan.image}:reproduce-{cell.id}-{n}" for n in (1, 2)]
    with tempfile.TemporaryDirectory(prefix=f"kerastack-reproduce-{cell.id}-", dir=options.work_dir) as tmp:
        saved: list[SavedImage] = []
        try:
            for n, ref in enumerate(refs, start=1):
                context = Path(tmp) / f"export-{n}"
                export_commit(options.root, context)
                outcome = docker_client.build(
                    plan,
                    context,
                    secrets=secrets,
                    builder=builder,
                    no_cache=True,
                    only_tags=[ref],
                    on_step=lambda step, n=n: console.print(escape(f"  build {n}: {step}"), highlight=False) if "RUN" in step or "COPY" in step else None,
                )
                if not outcome.ok:
                    raise PipelineError(f"build {n} of {cell.id} failed: {outcome.error}")
                console.print(f"  build {n}: {outcome.image_id[:19]} in {outcome.seconds:.0f} s")
                archive = Path(tmp) / f"image-{n}.tar"
                docker_client.save(ref, archive)
                saved.append(load_saved(archive))
            comparison = compare_images(cell.id, saved[0], saved[1], base_layers, tolerated)
        finally:
            docker_client.remove_images(refs)
    verdict = "[green]identical[/]" if comparison.ok else "[red]differs[/]"
    console.print(f"{cell.id}: {verdict}: {comparison.identical_layers}/{len(comparison.layers_above_base)} layers above the base identical")
    return comparison
