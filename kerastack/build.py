"""The build stage: build every selected cell, keep going past failures, write the build report."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from python_on_whales import DockerException
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import base_images, ca, docker_client, layers, lock, manifest
from .config import Config
from .matrix import Cell
from .plan import BuildPlan, plan_cell
from .report import BuildReport, CellReport, write_build_report
from .tags import BuildStamp

NAIVE_DOCKERFILE = "images/naive.Dockerfile"
# What reaches the builder (see .dockerignore) or decides what is built: a new file here changes the image.
BUILD_CONTEXT_PATHS = ("images", "locks", "versions.toml", ".dockerignore")


@dataclass(frozen=True)
class BuildOptions:
    root: Path
    config: Config
    all_cells: tuple[Cell, ...]
    selected: tuple[Cell, ...]
    stamp: BuildStamp
    created: str
    ca_bundle: Path | None = None
    builder: str | None = None
    cache_from: str | None = None
    cache_to: str | None = None
    no_cache: bool = False
    naive: bool = False
    report_dir: Path = Path("reports")
    extra_tags: dict[str, tuple[str, ...]] = field(default_factory=dict)


def current_stamp(root: Path, now: datetime | None = None) -> tuple[BuildStamp, str]:
    """The build stamp from git and the RFC 3339 time.

    The revision is `unknown` without git or outside a repository, and gets `-dirty` when a tracked file
    changed anywhere or an untracked (not git-ignored) file sits inside the build context.
    """
    now = now or datetime.now(UTC)

    def git(*args: str) -> str:
        try:
            result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        except OSError:  # no git on PATH: the revision cannot be known
            return ""
        return result.stdout.strip() if result.returncode == 0 else ""

    revision = git("rev-parse", "--short=7", "HEAD") or "unknown"
    if revision != "unknown" and (
        git("status", "--porcelain", "--untracked-files=no") or git("status", "--porcelain", "--untracked-files=all", "--", *BUILD_CONTEXT_PATHS)
    ):
        revision += "-dirty"
    # `created` is the commit time (the SOURCE_DATE_EPOCH convention): rebuilding the same inputs
    # then gives the same image id, so a cached rebuild is recognisably the image that was tested.
    committed = git("log", "-1", "--format=%ct")
    created = datetime.fromtimestamp(int(committed), UTC) if committed else now
    return BuildStamp.at(now, revision), created.strftime("%Y-%m-%dT%H:%M:%SZ")


def build_matrix(options: BuildOptions, console: Console | None = None) -> BuildReport:
    console = console or Console(stderr=True)
    secrets = ca.secret_spec(options.ca_bundle)
    statuses = {s.cell_id: s for s in lock.status(options.root, options.config, options.selected, known=options.all_cells)}
    bases: dict[str, base_images.BaseImage] = {}
    results: list[CellReport] = []
    log_dir = options.report_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("matrix", total=len(options.selected))
        for cell in options.selected:
            progress.update(task, description=f"{cell.id}: starting")
            status = statuses[cell.id]
            if status.state != "ok":
                results.append(CellReport.failed(cell.id, f"lock {status.state}: {status.detail}; run `nox -s lock -- id={cell.id}`"))
                console.print(f"[red]✗ {cell.id}[/]: lock {status.state}: {escape(status.detail)}")
                progress.advance(task)
                continue
            python = options.config.python[cell.python]
            try:
                if str(cell.python) not in bases:
                    progress.update(task, description=f"{cell.id}: base image")
                    bases[str(cell.python)] = base_images.resolve(python)
            except Exception as exc:  # a base that cannot be had fails this cell, not the run
                results.append(CellReport.failed(cell.id, f"base image: {exc}"))
                console.print(f"[red]✗ {cell.id}[/]: base image: {escape(str(exc))}")
                progress.advance(task)
                continue
            base = bases[str(cell.python)]
            plan = plan_cell(options.config, options.all_cells, cell, options.stamp, base.ref, options.created)
            previous_id = docker_client.image_id(plan.cell_ref)
            outcome = docker_client.build(
                plan,
                options.root,
                secrets=secrets,
                builder=options.builder,
                cache_from=options.cache_from,
                cache_to=options.cache_to,
                no_cache=options.no_cache,
                extra_tags=options.extra_tags.get(cell.id, ()),
                on_step=lambda step, c=cell: progress.update(task, description=escape(f"{c.id}: {step}")),
            )
            log_file = log_dir / f"{cell.id}.log"
            log_file.write_text("\n".join(outcome.log) + "\n")
            if not outcome.ok:
                console.print(f"[red]✗ {cell.id}[/] failed after {outcome.seconds:.0f} s: {escape(outcome.error)}")
                console.print("\n".join(outcome.log[-40:]), markup=False, highlight=False)
                results.append(CellReport.failed(cell.id, outcome.error, seconds=outcome.seconds, log_file=str(log_file)))
            else:
                report = _built(plan, outcome, base, previous_id, str(log_file))
                try:
                    _write_manifest(options, plan, base.ref, report)
                except (DockerException, ValueError, KeyError) as exc:  # an image without its manifest is not shippable
                    results.append(
                        CellReport.failed(cell.id, f"manifest: cannot read {manifest.IN_IMAGE_PATH} from the image: {exc}", outcome.seconds, str(log_file))
                    )
                    console.print(f"[red]✗ {cell.id}[/]: manifest: {escape(str(exc))}")
                    progress.advance(task)
                    continue
                if options.naive:
                    progress.update(task, description=f"{cell.id}: naive baseline")
                    _measure_naive(options, plan, base.ref, secrets, report)
                results.append(report)
                console.print(
                    f"[green]✓ {cell.id}[/] {report.size / 1e9:.2f} GB in {outcome.seconds:.0f} s ({outcome.cached_steps}/{outcome.total_steps} steps cached)"
                )
            progress.advance(task)
        progress.update(task, description="matrix done")

    layers.annotate_sharing(options.config, options.all_cells, results)
    report = BuildReport(revision=options.stamp.revision, created=options.created, filter_cells=[c.id for c in options.selected], cells=results)
    write_build_report(report, options.report_dir)
    return report


def _built(plan: BuildPlan, outcome: docker_client.BuildOutcome, base: base_images.BaseImage, previous_id: str | None, log_file: str) -> CellReport:
    base_record = base_images.record(base)
    return CellReport(
        cell=plan.id,
        status="built",
        tags=[plan.immutable_ref, plan.cell_ref],
        moving_tags=list(plan.tags.moving),
        image_id=outcome.image_id,
        size=docker_client.image_size(plan.immutable_ref),
        bytecode_bytes=docker_client.bytecode_size(plan.immutable_ref),
        seconds=round(outcome.seconds, 1),
        cached_steps=outcome.cached_steps,
        total_steps=outcome.total_steps,
        base_image=base.ref,
        base_source=base.source,
        base_image_id=base_record.image_id,
        base_suite=base_record.suite,
        base_mirror=base_record.mirror,
        log_file=log_file,
        previous_image_id=previous_id if previous_id and previous_id != outcome.image_id else None,
        layers=[(layer.diff_id, layer.size) for layer in docker_client.layers(plan.immutable_ref)],
    )


def _write_manifest(options: BuildOptions, plan: BuildPlan, base_ref: str, report: CellReport) -> None:
    """reports/manifests/<cell>.{json,md,cdx.json}: the image's own manifest plus its id, tags and sizes."""
    base_layers = len(docker_client.layers(base_ref))
    report.os_layer_size = report.layers[base_layers][1] if len(report.layers) > base_layers else None
    in_image = json.loads(docker_client.read_file(plan.immutable_ref, manifest.IN_IMAGE_PATH))
    full = manifest.with_image(
        in_image,
        image_id=report.image_id,
        tags=report.tags,
        size=report.size,
        os_layer_size=report.os_layer_size,
        revision=options.stamp.revision,
        created=options.created,
    )
    report.manifest_files = [str(p) for p in manifest.write(options.report_dir / manifest.MANIFESTS_DIR, full)]


def _measure_naive(options: BuildOptions, plan: BuildPlan, base_ref: str, secrets: Sequence[str], report: CellReport) -> None:
    """Build the same pins the naive way (one `pip install` in one RUN), measure it, remove it."""
    cell = plan.cell
    pins = lock.locked_versions(options.root, cell)
    tag = f"kerastack-naive/{cell.id}:measure"
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp)
        (context / "requirements.txt").write_text("".join(f"{name}=={version}\n" for name, version in sorted(pins.items())))
        dockerfile = context / "Dockerfile"
        dockerfile.write_text((options.root / NAIVE_DOCKERFILE).read_text())
        outcome = docker_client.build_dockerfile(dockerfile, context, tag, {"BASE_IMAGE": base_ref}, secrets)
    try:
        if outcome.ok:
            report.naive_size = docker_client.image_size(tag)
            report.naive_seconds = round(outcome.seconds, 1)
        else:
            report.naive_error = outcome.error
    finally:
        docker_client.remove_images([tag])
