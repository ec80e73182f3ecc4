"""The build stage: build every selected cell, keep going past failures, write the build report."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import base_images, ca, contract, emulation, layers, lock_plan, manifest
from .build_report import BuildReport, CellReport, write_build_report
from .docker_client import BuildOutcome, Docker, DockerException
from .files import write_atomic
from .layout import LOGS_DIR, MANIFESTS_DIR
from .matrix import Cell
from .options import Options, Selection
from .plan import BuildPlan, plan_cell
from .tags import BuildStamp, local_ref


def build_plan(docker: Docker, options: Options, plan: BuildPlan, *, context: Path | None = None, tags: Sequence[str] = (), no_cache: bool | None = None,
               on_step=lambda step: None) -> BuildOutcome:  # fmt: skip
    """Build one plan with buildx. `tags` replaces the plan's local tags (throwaway builds such as the
    reproducibility check). Where the builder's BuildKit can (>= 0.13), it also clamps every file time in
    the layers to SOURCE_DATE_EPOCH itself (`rewrite-timestamp`); the Dockerfile does it on older ones."""
    context = context or options.root
    tags = list(tags) or plan.local_refs
    output = {"type": "docker", "rewrite-timestamp": "true"} if docker.rewrites_timestamps(options.builder) else None
    return docker.build(
        tags[0],
        on_step,
        output=output,
        context_path=context,
        file=context / options.layout.dockerfile.relative_to(options.root),
        target=plan.target,
        tags=tags,
        build_args=dict(plan.build_args),
        labels=dict(plan.labels),
        secrets=ca.secret_spec(options.ca_bundle),
        platforms=[plan.cell.platform],
        builder=options.builder,
        cache_from=options.cache_from,
        cache_to=options.cache_to,
        cache=not (options.no_cache if no_cache is None else no_cache),
    )


def build_matrix(
    docker: Docker,
    options: Options,
    selection: Selection,
    stamp: BuildStamp,
    created: str,
    console: Console | None = None,
    extra_tags: Mapping[str, Sequence[str]] | None = None,
) -> BuildReport:
    console = console or Console(stderr=True)
    statuses = {s.cell_id: s for s in lock_plan.status(options.root, selection.config, selection.selected, known=selection.all_cells)}
    bases: dict[str, base_images.BaseImage] = {}
    results: list[CellReport] = []
    previous_layers: dict[str, list[tuple[str, int]]] = {}
    (options.report_dir / LOGS_DIR).mkdir(parents=True, exist_ok=True)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("matrix", total=len(selection.selected))
        engine = docker.engine_platform()
        for cell in selection.selected:
            progress.update(task, description=f"{cell.id}: starting")
            report = _build_cell(
                docker, options, selection, cell, engine, stamp, created, statuses[cell.id], bases, (extra_tags or {}).get(cell.id, ()), progress, task, console
            )
            report.platform = cell.platform
            if report.status == "built" and report.previous_image_id and docker.image_id(report.previous_image_id):
                previous_layers[cell.id] = [(layer.diff_id, layer.size) for layer in docker.layers(report.previous_image_id)]
            results.append(report)
            progress.advance(task)
        progress.update(task, description="matrix done")

    layers.annotate_sharing(selection.all_cells, results, _known_layers(docker, selection, results), previous_layers)
    report = BuildReport(revision=stamp.revision, created=created, filter_cells=[c.id for c in selection.selected], cells=results)
    write_build_report(report, options.report_dir)
    return report


def _build_cell(docker, options, selection, cell, engine, stamp, created, status, bases, extra_tags, progress, task, console) -> CellReport:
    """One cell, built for its platform: natively on an engine of that platform, else under QEMU emulation (checked
    first); its lock current, its base (that platform's) at hand. A failure is reported, never raised."""
    if cell.platform != engine:
        why = emulation.problem(cell.platform)
        if why:
            console.print(f"[red]✗ {cell.id}[/]: this {engine} engine cannot build {cell.platform} images: {escape(why)}")
            return CellReport.failed(cell.id, f"this {engine} engine cannot build {cell.platform} images under emulation: {why}; {emulation.FIX}")
    if status.state != "ok":
        console.print(f"[red]✗ {cell.id}[/]: lock {status.state}: {escape(status.detail)}")
        return CellReport.failed(cell.id, f"lock {status.state}: {status.detail}; run `nox -s lock -- id={cell.id}`")
    base_key = f"{cell.python} {cell.platform}"
    try:
        if base_key not in bases:
            progress.update(task, description=f"{cell.id}: base image")
            python = selection.config.python[cell.python]
            bases[base_key] = base_images.resolve(docker, python, offline=options.offline_base, mirror=options.debian_mirror, platform=cell.platform)
    except Exception as exc:  # a base that cannot be had fails this cell, not the run
        console.print(f"[red]✗ {cell.id}[/]: base image: {escape(str(exc))}")
        return CellReport.failed(cell.id, f"base image: {exc}")
    base = bases[base_key]
    build_base = base
    if cell.platform != engine:  # the venv and the lock groups are installed natively, on the engine's platform's base
        build_key = f"{cell.python} {engine}"
        try:
            if build_key not in bases:
                python = selection.config.python[cell.python]
                bases[build_key] = base_images.resolve(docker, python, offline=options.offline_base, mirror=options.debian_mirror, platform=engine)
        except Exception as exc:  # noqa: BLE001 (a base that cannot be had fails this cell, not the run)
            console.print(f"[red]✗ {cell.id}[/]: the build platform's base image: {escape(str(exc))}")
            return CellReport.failed(cell.id, f"the build platform's ({engine}) base image: {exc}")
        build_base = bases[build_key]
    base_record = base_images.record(docker, base)
    plan = plan_cell(selection.config, selection.all_cells, cell, stamp, base.ref, created, base_images.labels(base, base_record), build_base.ref)
    previous_id = docker.image_id(plan.cell_ref)
    # The naive baseline is measured on the engine's own platform only: under emulation it would double the slowest build.
    naive = _start_naive(docker, options, plan, base.ref) if options.naive and cell.platform == engine else None
    try:
        report = _build_cell_image(docker, options, plan, base, base_record, previous_id, stamp, created, extra_tags, progress, task, console)
    finally:
        if naive is not None:
            progress.update(task, description=f"{cell.id}: naive baseline")
            measured = naive.result()  # waited for even when the cell failed: its image is removed in there
    if naive is not None and report.status == "built":
        report.naive_size, report.naive_seconds, report.naive_error = measured.size, measured.seconds, measured.error
    if report.status == "built":
        console.print(f"[green]✓ {cell.id}[/] {report.size / 1e9:.2f} GB in {report.seconds:.0f} s ({report.cached_steps}/{report.total_steps} steps cached)")
    return report


def _build_cell_image(docker: Docker, options: Options, plan: BuildPlan, base, base_record, previous_id: str | None, stamp: BuildStamp, created,
                      extra_tags: Sequence[str], progress: Progress, task, console: Console) -> CellReport:  # fmt: skip
    cell = plan.cell
    outcome = build_plan(
        docker, options, plan, tags=[*plan.local_refs, *extra_tags], on_step=lambda step: progress.update(task, description=escape(f"{cell.id}: {step}"))
    )
    log_file = write_atomic(options.report_dir / LOGS_DIR / f"{cell.id}.log", "\n".join(outcome.log) + "\n")
    if not outcome.ok:
        console.print(f"[red]✗ {cell.id}[/] failed after {outcome.seconds:.0f} s: {escape(outcome.error)}")
        console.print("\n".join(outcome.log[-40:]), markup=False, highlight=False)
        return CellReport.failed(cell.id, outcome.error, seconds=outcome.seconds, log_file=str(log_file))
    report = _built(docker, plan, outcome, base, base_record, previous_id, str(log_file))
    try:
        _write_manifest(docker, options, plan, base.ref, stamp, created, report)
    except (DockerException, ValueError, KeyError) as exc:  # an image without its manifest is not shippable
        console.print(f"[red]✗ {cell.id}[/]: manifest: {escape(str(exc))}")
        return CellReport.failed(cell.id, f"manifest: cannot read {contract.MANIFEST_PATH} from the image: {exc}", outcome.seconds, str(log_file))
    return report


def _known_layers(docker: Docker, selection: Selection, results: Sequence[CellReport]) -> dict[str, list[tuple[str, int]]]:
    """Layers of this run's images and of the other cells' local images: what sharing is measured against."""
    known = {r.cell: list(r.layers) for r in results if r.status == "built"}
    for cell in selection.all_cells:
        ref = local_ref(selection.config.image, cell)
        if cell.id not in known and docker.image_id(ref):
            known[cell.id] = [(layer.diff_id, layer.size) for layer in docker.layers(ref)]
    return known


def _built(docker: Docker, plan: BuildPlan, outcome: BuildOutcome, base: base_images.BaseImage, base_record: base_images.BaseRecord, previous_id: str | None,
           log_file: str) -> CellReport:  # fmt: skip
    return CellReport(
        cell=plan.id,
        status="built",
        tags=[plan.immutable_ref, plan.cell_ref],
        moving_tags=list(plan.tags.moving),
        image_id=outcome.image_id,
        size=docker.size(plan.immutable_ref),
        bytecode_bytes=bytecode_size(docker, plan.immutable_ref, plan.cell.platform),
        seconds=round(outcome.seconds, 1),
        cached_steps=outcome.cached_steps,
        total_steps=outcome.total_steps,
        base_image=base.ref,
        base_source=base.source,
        base_image_id=base_record.image_id,
        base_suite=base_record.suite,
        base_mirror=base_record.mirror,
        base_created=base_record.created,
        log_file=log_file,
        previous_image_id=previous_id if previous_id and previous_id != outcome.image_id else None,
        layers=[(layer.diff_id, layer.size) for layer in docker.layers(plan.immutable_ref)],
    )


def bytecode_size(docker: Docker, ref: str, platform: str) -> int:
    """Bytes of the .pyc files the image ships in its venv (what compiling at build time adds to its size)."""
    command = [contract.VENV, "-name", "*.pyc", "-printf", "%s\\n"]
    listing = docker.run(ref, command, entrypoint="find", user=contract.USER, networks=["none"], platform=platform)
    return sum(int(line) for line in listing.split() if line.isdigit())


def _write_manifest(docker: Docker, options: Options, plan: BuildPlan, base_ref: str, stamp: BuildStamp, created: str, report: CellReport) -> None:
    """reports/manifests/<cell>.{json,md,cdx.json}: the image's own manifest plus its id, tags and sizes."""
    base_layers = len(docker.layers(base_ref))
    report.os_layer_size = report.layers[base_layers][1] if len(report.layers) > base_layers else None
    own = [size for _, size in report.layers[base_layers:] if size > 0]  # WORKDIR leaves an empty layer on BuildKit 0.8
    names = contract.image_layers(plan.cell.variant)
    report.named_layers = list(zip(names, own, strict=True)) if len(own) == len(names) else []
    in_image = json.loads(docker.read_file(plan.immutable_ref, contract.MANIFEST_PATH, platform=plan.cell.platform))
    full = manifest.with_image(
        in_image, image_id=report.image_id, tags=report.tags, size=report.size, os_layer_size=report.os_layer_size, revision=stamp.revision, created=created
    )
    directory = options.report_dir / MANIFESTS_DIR
    report.manifest_files = [str(write_atomic(directory / name, text)) for name, text in manifest.rendered(full).items()]


@dataclass(frozen=True)
class NaiveMeasure:
    size: int | None = None
    seconds: float | None = None
    error: str = ""


def _start_naive(docker: Docker, options: Options, plan: BuildPlan, base_ref: str) -> Future[NaiveMeasure]:
    """The naive baseline, built alongside the cell: it shares nothing with the cell's build but the base,
    and much of it waits on downloads, so the two overlap instead of queueing. Collect with `.result()`."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"naive-{plan.id}")
    future = pool.submit(_measure_naive_or_say_why, docker, options, plan, base_ref)
    pool.shutdown(wait=False)
    return future


def _measure_naive_or_say_why(docker: Docker, options: Options, plan: BuildPlan, base_ref: str) -> NaiveMeasure:
    """A measurement, not a guard: whatever stops it is reported in the cell's naive_error."""
    try:
        return _measure_naive(docker, options, plan, base_ref)
    except Exception as exc:  # noqa: BLE001 (reported, never raised from the thread)
        return NaiveMeasure(error=f"naive baseline: {type(exc).__name__}: {str(exc).strip()[-300:]}")


def _measure_naive(docker: Docker, options: Options, plan: BuildPlan, base_ref: str) -> NaiveMeasure:
    """Build the same pins the naive way (one `pip install` in one RUN), measure it, remove it."""
    cell: Cell = plan.cell
    pins = lock_plan.locked_versions(options.root, cell)
    tag = f"kerastack-naive/{cell.id}:measure"
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp)
        (context / "requirements.txt").write_text("".join(f"{name}=={version}\n" for name, version in sorted(pins.items())))
        dockerfile = context / "Dockerfile"
        dockerfile.write_text(options.layout.naive_dockerfile.read_text())
        outcome = docker.build(
            tag, context_path=context, file=dockerfile, tags=[tag], build_args={"BASE_IMAGE": base_ref}, secrets=ca.secret_spec(options.ca_bundle)
        )
    try:
        if outcome.ok:
            return NaiveMeasure(docker.size(tag), round(outcome.seconds, 1))
        return NaiveMeasure(error=outcome.error)
    except DockerException as exc:
        return NaiveMeasure(error=f"measuring the naive image: {str(exc).strip()[-300:]}")
    finally:
        docker.remove_images([tag])
