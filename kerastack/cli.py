"""`python -m kerastack COMMAND [FILTER ...]`: what the nox sessions and make targets call."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from python_on_whales import DockerException
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import config as config_module
from . import engine, layers, lock, matrix, tags
from .build import current_stamp
from .errors import PipelineError
from .plan import plan_cell

ROOT = Path(__file__).resolve().parent.parent
out = Console()
err = Console(stderr=True, soft_wrap=True)  # log lines stay whole for CI logs and greps


def _load(args: argparse.Namespace) -> tuple[config_module.Config, list[matrix.Cell], list[matrix.Cell]]:
    config = config_module.with_environment(config_module.load(args.config), dict(os.environ), args.registry, args.repository)
    all_cells = matrix.cells(config)
    selected = matrix.Filter.parse(args.filter).select(all_cells, config.path)
    return config, all_cells, selected


def cmd_matrix(args: argparse.Namespace) -> int:
    config, all_cells, selected = _load(args)
    stamp, created = current_stamp(args.project_dir)
    plans = [plan_cell(config, all_cells, cell, stamp, config.python[cell.python].base_image, created) for cell in selected]
    if args.json:
        print(json.dumps({"include": [p.as_json() for p in plans]}, separators=(",", ":") if args.compact else None, indent=None if args.compact else 2))
        return 0
    table = Table(title=f"{len(selected)} of {len(all_cells)} cells ({matrix.Filter.parse(args.filter)})")
    for column in ("cell", "TensorFlow", "Keras", "Python", "variant", "CUDA", "cell tag", "moving tags"):
        table.add_column(column)
    for p in plans:
        release = config.tensorflow[p.cell.tensorflow]
        table.add_row(
            p.id,
            str(p.cell.tensorflow),
            str(release.keras),
            str(p.cell.python),
            p.cell.variant,
            str(p.cell.cuda or "–"),
            p.tags.cell,
            ", ".join(p.tags.moving) or "–",
        )
    out.print(table)
    return 0


def cmd_tags(args: argparse.Namespace) -> int:
    config, all_cells, selected = _load(args)
    stamp, _ = current_stamp(args.project_dir)
    table = Table(title=f"Tags of {config.image} for revision {stamp.revision}")
    for column in ("tag", "kind", "cell", "moves?"):
        table.add_column(column)
    for cell in selected:
        for tag, kind in tags.tags_for(config, all_cells, cell, stamp).kinds():
            table.add_row(tag, kind, cell.id, tags.KIND_HELP[kind])
    out.print(table)
    return 0


def cmd_lock(args: argparse.Namespace) -> int:
    config, all_cells, selected = _load(args)
    if args.check:
        statuses = lock.status(args.project_dir, config, selected, known=all_cells)
        bad = [s for s in statuses if s.state != "ok"]
        for s in statuses:
            (err if s.state != "ok" else out).print(f"{'✓' if s.state == 'ok' else '✗'} {s.cell_id}: {s.state} {s.detail}", markup=False)
        if bad:
            raise PipelineError(f"{len(bad)} lock(s) do not match versions.toml or their recorded content: run `nox -s lock` and commit locks/")
        return 0
    for cell in selected:
        groups = lock.lock_cell(args.project_dir, config, cell)
        out.print(f"✓ {cell.id}: " + ", ".join(f"{g} {len(p)}" for g, p in groups.items()))
    return 0


def cmd_changes(args: argparse.Namespace) -> int:
    from . import changes

    _, all_cells, selected = _load(args)
    cells_needed = {c for c in selected} | {p for c in selected if (p := layers.previous_release(c, all_cells))}
    missing = [c.id for c in sorted(cells_needed) if not (lock.lock_dir(args.project_dir, c) / "lock.json").exists()]
    if missing:
        raise PipelineError(f"no lock files for {', '.join(missing)}: run `nox -s lock` first")
    manifest = None
    if args.manifest:
        manifest = (args.manifest, *changes.read_manifest(Path(args.manifest)))
    result = changes.comparisons(selected, all_cells, lambda cell: lock.locked_versions(args.project_dir, cell), manifest)
    if args.markdown:
        print(changes.to_markdown(result), end="")
        return 0
    for comparison in result:
        rows = changes.to_text_rows(comparison)
        print(changes.summary_line(comparison))
        if not rows:
            continue
        table = Table()
        for column in ("change", "package", "from", "to"):
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        out.print(table)
    return 0


def cmd_engine(args: argparse.Namespace) -> int:
    status = engine.ensure(install=False if args.check else None)
    out.print(f"✓ Docker engine {status.server_version} with buildx")
    return 0


def cmd_base_images(args: argparse.Namespace) -> int:
    from . import base_images

    config, _, selected = _load(args)
    engine.ensure()
    for version in sorted({c.python for c in selected}):
        base = base_images.resolve(config.python[version])
        out.print(f"✓ Python {version}: {base.ref} ({base.source}{f', {base.seconds:.0f} s' if base.seconds else ''})")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from . import ca
    from .build import BuildOptions, build_matrix

    config, all_cells, selected = _load(args)
    engine.ensure()
    stamp, created = current_stamp(args.project_dir)
    report = build_matrix(
        BuildOptions(
            root=args.project_dir,
            config=config,
            all_cells=tuple(all_cells),
            selected=tuple(selected),
            stamp=stamp,
            created=created,
            ca_bundle=ca.find_bundle(args.ca_bundle),
            builder=args.builder,
            cache_from=args.cache_from,
            cache_to=args.cache_to,
            no_cache=args.no_cache,
            naive=args.naive,
            report_dir=Path(args.report_dir),
        ),
        err,
    )
    failed = [c.cell for c in report.cells if c.status != "built"]
    err.print(f"report: {Path(args.report_dir) / 'build-report.md'}")
    if failed:
        err.print(f"[red]{len(failed)} of {len(report.cells)} cells failed:[/] {', '.join(failed)}")
        return 1
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Build each selected cell twice from scratch and compare the images layer by layer."""
    from . import ca
    from .rebuild import ReproduceOptions, head_commit, reproduce

    config, all_cells, selected = _load(args)
    head_commit(args.project_dir)  # fails closed before any build: the check builds a commit
    engine.ensure()
    report = reproduce(
        ReproduceOptions(
            root=args.project_dir,
            config=config,
            all_cells=tuple(all_cells),
            selected=tuple(selected),
            ca_bundle=ca.find_bundle(args.ca_bundle),
            builder=args.builder,
            report_dir=Path(args.report_dir),
            work_dir=Path(args.work_dir) if args.work_dir else None,
        ),
        err,
    )
    for c in report.cells:
        verdict = "error: " + c.error if c.error else ("identical" if c.ok else "DIFFERS")
        if c.error:
            image = ""
        elif c.same_image_id:
            image = "; image ID identical"
        else:
            image = "; image ID differs" + (" (only the config's creation times, which this builder cannot set)" if c.ok else "")
        print(f"{c.cell}: {verdict} ({c.identical_layers}/{len(c.layers_above_base)} layers above the base identical{image})")
    err.print(f"report: {Path(args.report_dir) / 'reproduce.md'}")
    return 0 if report.ok else 1


def cmd_image(args: argparse.Namespace) -> int:
    """Print a local reference of the default image of a variant: pulled, or built when no registry has it."""
    from python_on_whales import DockerException, docker

    config, all_cells, _ = _load(args)
    engine.ensure()
    cell = matrix.default_cell(config, args.variant, all_cells)
    ref = f"{config.image}:{tags.cell_tag(cell)}"
    if not docker.image.exists(ref):
        try:
            err.print(f"pulling {ref} ...")
            docker.image.pull(ref, quiet=True)
        except DockerException:  # not published anywhere reachable: build it here
            err.print(f"{ref} is not in a reachable registry: building it locally (one-time; about 1-3 minutes)")
            args.filter = [f"id={cell.id}"]
            args.naive = False
            if cmd_build(args) != 0:
                raise PipelineError(f"could not build {cell.id}; see the log above") from None
    print(ref)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import BenchOptions, run

    config, all_cells, _ = _load(args)
    engine.ensure()
    image = args.image or f"{config.image}:{tags.cell_tag(matrix.default_cell(config, 'cpu', all_cells))}"
    report = run(BenchOptions(image=image, runs=args.runs, report_dir=Path(args.report_dir)), lambda m: err.print(m, markup=False, highlight=False))
    print(report.to_markdown(), end="")
    err.print(f"report: {Path(args.report_dir) / 'bench.md'}")
    return 0 if report.ok else 1


def _report_cells(args: argparse.Namespace, all_cells: list[matrix.Cell], selected: list[matrix.Cell]) -> list[matrix.Cell]:
    """Without a filter, smoke and publish take the cells of this run's build report."""
    from .report import JSON_NAME, load_build_report

    if args.filter or not (Path(args.reports) / JSON_NAME).exists():
        return selected
    built = set(load_build_report(Path(args.reports)).filter_cells)
    return [c for c in all_cells if c.id in built] or selected


def cmd_smoke(args: argparse.Namespace) -> int:
    import subprocess

    _, all_cells, selected = _load(args)
    engine.ensure()
    cells = _report_cells(args, all_cells, selected)
    report = Path(args.reports) / "smoke-report.json"
    command = [
        sys.executable, "-m", "pytest", str(ROOT / "tests" / "smoke"),
        f"--cells={','.join(c.id for c in cells)}", f"--smoke-report={report}", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
        *([] if args.build else ["--no-build"]), *args.pytest_args,
    ]  # fmt: skip
    err.print(f"smoke-testing {len(cells)} cell(s): {', '.join(c.id for c in cells)}")
    # pytest's progress goes to stderr like every other progress line; the result is the smoke report.
    return subprocess.run(command, cwd=ROOT, stdout=sys.stderr).returncode


def cmd_publish(args: argparse.Namespace) -> int:
    from . import publish
    from .report import JSON_NAME, load_build_report

    config, all_cells, selected = _load(args)
    reports = Path(args.reports)
    if args.stage == "moving":
        plan = publish.plan_moving_from_reports(config, all_cells, selected, publish.load_reports(reports))
    else:
        if not (reports / JSON_NAME).exists():
            raise PipelineError(f"no build report in {reports}: run `nox -s build-matrix` (and smoke) before publishing")
        smoke_file = reports / publish.SMOKE_REPORT
        smoke = json.loads(smoke_file.read_text()) if smoke_file.exists() else {}
        cells = _report_cells(args, all_cells, selected)
        plan = publish.plan_publish(
            config,
            all_cells,
            cells,
            load_build_report(reports),
            smoke,
            allow_dirty=args.allow_dirty,
            move_tags=args.stage == "all",
            allow_untested_gpu=args.allow_untested_gpu,
        )
    if not args.dry_run:
        engine.ensure()
    with publish.registry_client(config.registry) as client:
        # execute() stops a failing cell and goes on; its result, pushed and not pushed, is always written.
        result = publish.execute(
            plan, client, dry_run=args.dry_run, attempts=args.retries + 1, backoff=args.backoff, log=lambda m: err.print(m, highlight=False, markup=False)
        )
    if not args.dry_run:
        name = publish.PUBLISH_REPORT if args.stage != "moving" else "moving-report.json"
        (reports / name).write_text(result.to_json())
        err.print(f"report: {reports / name}")
    return 0 if result.ok else 1


def cmd_check_release_tag(args: argparse.Namespace) -> int:
    from .versions import parse_semver_tag

    if not args.tag.startswith("v"):
        raise PipelineError(f"release tag {args.tag!r} must look like v1.2.3")
    try:
        parse_semver_tag(args.tag)
    except ValueError as exc:
        raise PipelineError(f"release tag {args.tag!r} is not semver ({exc}); use vMAJOR.MINOR.PATCH") from None
    out.print(f"✓ {args.tag}")
    return 0


def _pushed(args: argparse.Namespace) -> list[tuple[Path, str, dict]]:
    """(publish report file, cell, entry) of every pushed cell in the publish reports under --reports."""
    from . import publish

    files = sorted(Path(args.reports).rglob(publish.PUBLISH_REPORT))
    if not files:
        raise PipelineError(f"no {publish.PUBLISH_REPORT} under {args.reports}: download the cell jobs' publish reports there")
    return [(file, cell, entry) for file in files for cell, entry in sorted(json.loads(file.read_text())["cells"].items()) if entry.get("pushed")]


def _digest_ref(entry: dict) -> str:
    return f"{entry['tags'][0].rsplit(':', 1)[0]}@{entry['digest']}"


def cmd_summary(args: argparse.Namespace) -> int:
    from .report import human

    ran = {True: "yes", False: "**no** (published with --allow-untested-gpu)", None: "– (CPU)"}
    print("| cell | tags | digest | size | GPU op ran on a GPU |\n|---|---|---|---|---|")
    for _, cell, entry in _pushed(args):
        tags_text = "<br>".join(f"`{t}`" for t in entry["tags"])
        print(f"| {cell} | {tags_text} | `{entry['digest']}` | {human(entry['size'])} | {ran[entry.get('gpu_op_on_gpu')]} |")
    return 0


def cmd_digests(args: argparse.Namespace) -> int:
    for _, _, entry in _pushed(args):
        print(_digest_ref(entry))
    return 0


def cmd_sboms(args: argparse.Namespace) -> int:
    """IMAGE@DIGEST and its CycloneDX SBOM (the build stage's, next to the publish report), one pair a line."""
    from .manifest import MANIFESTS_DIR

    pairs = []
    for file, cell, entry in _pushed(args):
        sbom = file.parent / MANIFESTS_DIR / f"{cell}.cdx.json"
        if not sbom.is_file():
            raise PipelineError(f"{cell} was pushed but {sbom} does not exist: upload reports/manifests/ with the publish report")
        pairs.append(f"{_digest_ref(entry)} {sbom}")
    print("\n".join(pairs))
    return 0


def _count(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 3:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 0 to 999")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 600:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to 600")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kerastack", description="Build, test and publish pinned Keras/TensorFlow + Jupyter images.")
    p.add_argument("--project-dir", type=Path, default=ROOT, help="the project: versions.toml, locks/, images/ (default: this checkout)")
    p.add_argument("--config", help="the versions file (default: PROJECT_DIR/versions.toml)")
    p.add_argument("--registry", help="override [registry].host (or KERASTACK_REGISTRY)")
    p.add_argument("--repository", help="override [registry].repository (or KERASTACK_REPOSITORY)")
    sub = p.add_subparsers(dest="command", required=True)
    filter_help = f"select cells: KEY=VALUE[,VALUE] with keys {', '.join(matrix.FILTER_KEYS)} (e.g. tf=2.21 variant=cpu)"

    def command(name: str, func, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.add_argument("filter", nargs="*", help=filter_help)
        sp.set_defaults(func=func)
        return sp

    sp = command("matrix", cmd_matrix, "show the cells of the matrix (a table, or JSON for GitHub Actions)")
    sp.add_argument("--json", action="store_true", help='print {"include": [...]} for strategy.matrix via fromJSON')
    sp.add_argument("--compact", action="store_true", help="one-line JSON (for $GITHUB_OUTPUT)")
    command("tags", cmd_tags, "show each cell's tags and which of them move")
    sp = command("lock", cmd_lock, "resolve hash-pinned lock files per cell into locks/ (needs PyPI)")
    sp.add_argument("--check", action="store_true", help="fail when versions.toml changed since the locks were made")
    sp = command("changes", cmd_changes, "per cell, the packages added/removed/upgraded/downgraded since the previous TensorFlow release")
    sp.add_argument("--manifest", help="also compare with a published manifest (reports/manifests/<cell>.json or the image's)")
    sp.add_argument("--markdown", action="store_true", help="Markdown for a release summary instead of tables")
    sp = command("engine", cmd_engine, "make sure a Docker engine with buildx runs (installs it as root)")
    sp.add_argument("--check", action="store_true", help="only check; never install")
    command("base-images", cmd_base_images, "pull or bootstrap the base image of each selected Python")
    for name, func, help in (
        ("build", cmd_build, "build the selected cells with buildx and write the build report"),
        ("image", cmd_image, "print the default image of a variant, pulling or building it"),
    ):
        sp = command(name, func, help)
        sp.add_argument("--ca-bundle", help="PEM bundle for a TLS-intercepting proxy (default: SSL_CERT_FILE, REQUESTS_CA_BUNDLE, PIP_CERT)")
        sp.add_argument("--builder", help="an existing buildx builder, e.g. a remote BuildKit (default: BUILDX_BUILDER)")
        sp.add_argument("--cache-from", help="buildx --cache-from, e.g. type=gha")
        sp.add_argument("--cache-to", help="buildx --cache-to, e.g. type=gha,mode=max")
        sp.add_argument("--no-cache", action="store_true", help="build without the layer cache")
        sp.add_argument("--naive", action="store_true", help="also build a naive single-stage image per cell and report its size")
        sp.add_argument("--report-dir", default=str(ROOT / "reports"), help="where the build report goes (default: reports/)")
        if name == "image":
            sp.add_argument("--variant", choices=("cpu", "gpu"), default="cpu")
    sp = command("reproduce", cmd_reproduce, "build each selected cell twice from scratch and compare the layers; writes reports/reproduce.{json,md}")
    sp.add_argument("--ca-bundle", help="PEM bundle for a TLS-intercepting proxy (default: SSL_CERT_FILE, REQUESTS_CA_BUNDLE, PIP_CERT)")
    sp.add_argument("--builder", help="an existing buildx builder (default: BUILDX_BUILDER)")
    sp.add_argument("--report-dir", default=str(ROOT / "reports"), help="where reproduce.{json,md} go (default: reports/)")
    sp.add_argument("--work-dir", help="where the two exports and saved images go (default: the system's temp dir)")
    sp = command("bench", cmd_bench, "time the launcher and the first TF import against Docker's floor; writes reports/bench.{json,md}")
    sp.add_argument("--image", help="the image to measure (default: the default CPU cell's local image)")
    sp.add_argument("--runs", type=int, default=5, help="runs of each side; the report shows medians (at least 5)")
    sp.add_argument("--report-dir", default=str(ROOT / "reports"), help="where bench.json and bench.md go (default: reports/)")
    sp = command("smoke", cmd_smoke, "smoke-test built images in real containers; writes reports/smoke-report.json")
    sp.add_argument("--reports", default=str(ROOT / "reports"), help="where the build report is and the smoke report goes")
    sp.add_argument("--build", action="store_true", help="(re)build the cells first instead of testing the existing images")
    sp.add_argument("--pytest-args", nargs=argparse.REMAINDER, default=[], help="passed on to pytest")
    sp = command("publish", cmd_publish, "push the cells that passed smoke tests in this run; move moving tags last")
    sp.add_argument("--reports", default=str(ROOT / "reports"), help="build/smoke reports (stage all, cells) or publish reports (stage moving)")
    sp.add_argument(
        "--stage", choices=("all", "cells", "moving"), default="all", help="all: push and move; cells: push only; moving: move from publish reports"
    )
    sp.add_argument("--dry-run", action="store_true", help="show what would be pushed and moved")
    sp.add_argument("--allow-dirty", action="store_true", help="publish images built from uncommitted changes")
    sp.add_argument("--allow-untested-gpu", action="store_true", help="publish GPU cells whose GPU op did not run on a GPU (recorded in the report)")
    sp.add_argument("--retries", type=_count, default=3, help="retries of a failed push, 0 or more (default 3); there is always one attempt")
    sp.add_argument("--backoff", type=_seconds, default=2.0, help="first retry delay in seconds, doubling (default 2)")
    sp = sub.add_parser("check-release-tag", help="fail unless TAG is vMAJOR.MINOR.PATCH (semver)")
    sp.add_argument("tag")
    sp.set_defaults(func=cmd_check_release_tag)
    for name, func, help in (
        ("summary", cmd_summary, "Markdown table of pushed cells"),
        ("digests", cmd_digests, "IMAGE@DIGEST of each pushed cell"),
        ("sboms", cmd_sboms, "IMAGE@DIGEST and the path of its CycloneDX SBOM, per pushed cell"),
    ):
        sp = sub.add_parser(name, help=help)
        sp.add_argument("--reports", default=str(ROOT / "reports"), help="folder searched for publish-report.json files")
        sp.set_defaults(func=func)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.project_dir = args.project_dir.resolve()
    args.config = args.config or str(args.project_dir / "versions.toml")
    try:
        if not args.project_dir.is_dir():
            what = "is not a folder" if args.project_dir.exists() else "does not exist"
            raise PipelineError(f"--project-dir {args.project_dir} {what}: give the project folder (the one with versions.toml, locks/ and images/)")
        return args.func(args)
    except PipelineError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return exc.exit_code
    except DockerException as exc:
        detail = (exc.stderr or str(exc)).strip().splitlines()[-1:] or ["unknown error"]
        err.print(f"[bold red]error:[/] docker failed: {escape(detail[0])}", highlight=False)
        return 1
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
