"""`python -m kerastack COMMAND [FILTER ...]`: what the nox sessions and make targets call.

The CLI only parses: it resolves the arguments and the environment once into `Options`
(kerastack.options), and each command hands them to its stage. stdout carries a command's result only;
progress and diagnostics go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import contract, engine, layout, lock_plan, matrix, oci_index, tags
from . import manifest as manifest_module
from . import options as options_module
from .build_report import load_build_report
from .docker_client import Docker, DockerException, docker_error
from .errors import PipelineError
from .git import current_stamp
from .options import Options, Selection, select
from .plan import plan_cell

out = Console()
err = Console(stderr=True, soft_wrap=True)  # log lines stay whole for CI logs and greps


def _engine(options: Options) -> Docker:
    docker = Docker()
    engine.ensure(docker, install=options.install_engine, install_script=options.layout.install_docker_script)
    return docker


def cmd_matrix(options: Options) -> int:
    s = select(options)
    stamp, created = current_stamp(options.root, day=options.build_day)
    plans = [plan_cell(s.config, s.all_cells, cell, stamp, s.config.python[cell.python].base_image, created) for cell in s.selected]
    if options.get("json"):
        compact = options.get("compact")
        print(json.dumps({"include": [p.as_json() for p in plans]}, separators=(",", ":") if compact else None, indent=None if compact else 2))
        return 0
    table = Table(title=f"{len(s.selected)} of {len(s.all_cells)} cells ({matrix.Filter.parse(options.filter)})")
    for column in ("cell", "TensorFlow", "Keras", "Python", "variant", "CUDA", "platform", "cell tag", "moving tags"):
        table.add_column(column)
    for p in plans:
        release = s.config.tensorflow[p.cell.tensorflow]
        table.add_row(
            p.id, str(p.cell.tensorflow), str(release.keras), str(p.cell.python), p.cell.variant, str(p.cell.cuda or "–"), p.cell.platform, p.tags.cell,
            ", ".join(p.tags.moving) or "–",
        )  # fmt: skip
    out.print(table)
    return 0


def cmd_tags(options: Options) -> int:
    s = select(options)
    stamp, _ = current_stamp(options.root, day=options.build_day)
    table = Table(title=f"Tags of {s.config.image} for revision {stamp.revision}")
    for column in ("tag", "kind", "cell", "moves?"):
        table.add_column(column)
    for cell in s.selected:
        for tag, kind in tags.tags_for(s.config, s.all_cells, cell, stamp).kinds():
            table.add_row(tag, kind, cell.id, tags.KIND_HELP[kind])
    out.print(table)
    return 0


def cmd_lock(options: Options) -> int:
    s = select(options)
    if options.get("check"):
        statuses = lock_plan.status(options.root, s.config, s.selected, known=s.all_cells)
        for st in statuses:
            (err if st.state != "ok" else out).print(f"{'✓' if st.state == 'ok' else '✗'} {st.cell_id}: {st.state} {st.detail}", markup=False)
        bad = [st for st in statuses if st.state != "ok"]
        if bad:
            raise PipelineError(f"{len(bad)} lock(s) do not match versions.toml or their recorded content: run `nox -s lock` and commit locks/")
        return 0
    from . import lock

    for cell in lock_plan.lock_order(s.selected):  # the default platform first: the others prefer and share its files
        groups = lock.lock_cell(options.root, s.config, cell, log=lambda message: err.print(message, markup=False))
        shared = lock_plan.read_meta(lock_plan.lock_dir(options.root, cell)).get(lock_plan.SHARED, {})
        note = f" ({len(shared)} of {len(groups)} shared with {next(iter(shared.values()))})" if shared else ""
        out.print(f"✓ {cell.id}: " + ", ".join(f"{g} {len(p)}" for g, p in groups.items()) + note, markup=False)
    # A relocked default cell can leave the other platforms' links pointing at new content: say which to relock.
    others = [c for c in s.all_cells if c not in s.selected and lock_plan.sibling_of(s.config, c) in s.selected]
    for st in lock_plan.status(options.root, s.config, others, known=s.all_cells)[: len(others)]:
        if st.state not in ("ok", "missing"):
            err.print(f"note: {st.cell_id} shares lock files with a cell just relocked and is now {st.state}: relock it (`nox -s lock -- id={st.cell_id}`)")
    return 0


def cmd_changes(options: Options) -> int:
    from . import changes

    s = select(options)
    platform = options.get("against_platform")
    if platform is not None and platform not in contract.PLATFORMS:  # before reading any lock: one clear error
        changes.comparisons([], s.all_cells, dict, against_platform=platform)

    def baseline(c: matrix.Cell) -> matrix.Cell | None:
        return matrix.on_platform(c, s.all_cells, platform) if platform else matrix.previous_release(c, s.all_cells)

    needed = set(s.selected) | {b for c in s.selected if (b := baseline(c))}
    missing = [c.id for c in sorted(needed) if not (lock_plan.lock_dir(options.root, c) / "lock.json").exists()]
    if missing:
        raise PipelineError(f"no lock files for {', '.join(missing)}: run `nox -s lock` first")
    manifest_file = options.get("manifest")
    manifest = (manifest_file, *changes.read_manifest(Path(manifest_file))) if manifest_file else None
    result = changes.comparisons(
        s.selected, s.all_cells, lambda cell: lock_plan.locked_versions(options.root, cell), manifest,
        against_platform=platform, shared_with=lambda a, b: lock_plan.shared_between(options.root, a, b),
    )  # fmt: skip
    if options.get("markdown"):
        print(changes.to_markdown(result), end="")
        return 0
    for comparison in result:
        print(changes.summary_line(comparison))
        rows = changes.to_text_rows(comparison)
        if rows:
            table = Table()
            for column in ("change", "package", "from", "to"):
                table.add_column(column)
            for row in rows:
                table.add_row(*row)
            out.print(table)
    return 0


def cmd_readme(options: Options) -> int:
    """README.md's package list, rendered from the default CPU cell's lock (the same content as its manifest)."""
    s = select(options)
    cell = matrix.default_cell(s.config, "cpu", s.all_cells)
    block = manifest_module.packages_markdown(cell.id, lock_plan.read_meta(lock_plan.lock_dir(options.root, cell)))
    readme = options.root / "README.md"
    text = readme.read_text(encoding="utf-8")
    new = manifest_module.with_readme_block(text, block)
    if options.get("check"):
        if new != text:
            raise PipelineError("README.md's package list differs from the default CPU cell's lock: run `python -m kerastack readme`")
        err.print("README.md's package list matches the lock")
        return 0
    if new != text:
        readme.write_text(new, encoding="utf-8")
    err.print(f"README.md: package list of {cell.id}")
    return 0


def cmd_engine(options: Options) -> int:
    docker = Docker()
    status = engine.ensure(docker, install=options.install_engine and not options.get("check"), install_script=options.layout.install_docker_script)
    out.print(f"✓ Docker engine {status.server_version} with buildx")
    return 0


def cmd_base_images(options: Options) -> int:
    from . import base_images

    s = select(options)
    docker = _engine(options)
    for version, platform in sorted({(c.python, c.platform) for c in s.selected}):
        python = s.config.python[version]
        base = base_images.resolve(docker, python, offline=options.offline_base, mirror=options.debian_mirror, platform=platform)
        out.print(
            f"✓ Python {version} {platform}: {base.ref} ({base.source}{', reused' if base.reused else ''}{f', {base.seconds:.0f} s' if base.seconds else ''})",
            soft_wrap=True,  # one line per base, however narrow the terminal
        )
    return 0


def _build(options: Options, s: Selection, docker: Docker) -> int:
    from .build import build_matrix

    stamp, created = current_stamp(options.root, day=options.build_day)
    report = build_matrix(docker, options, s, stamp, created, err)
    failed = [c.cell for c in report.cells if c.status != "built"]
    err.print(f"report: {options.report_dir / layout.BUILD_REPORT_MD}")
    if failed:
        err.print(f"[red]{len(failed)} of {len(report.cells)} cells failed:[/] {', '.join(failed)}")
        return 1
    return 0


def cmd_build(options: Options) -> int:
    s = select(options)
    return _build(options, s, _engine(options))


def cmd_image(options: Options) -> int:
    """Print a local reference of the default image of a variant for a platform (--platform, else the engine's
    own): present, pulled (that platform's image of the published index, by digest), or built when no
    registry has it. Another platform's local image carries its platform in the tag (tags.local_tag)."""
    s = select(options)
    docker = _engine(options)
    platform = options.platform or docker.engine_platform()
    cell = matrix.default_cell(s.config, options.get("variant"), s.all_cells, platform)
    ref = tags.local_ref(s.config.image, cell)
    if not docker.exists(ref):
        published = f"{s.config.image}:{tags.cell_tag(cell)}"
        try:
            err.print(f"pulling {published} for {platform} ...")
            _pull_platform(docker, published, platform, ref)
        except DockerException as exc:  # not published anywhere reachable: build it here, saying why
            why = docker_error(exc)
            if re.search(r"toomanyrequests|rate limit|incorrect username or password|unauthorized: authentication required", why, re.I):
                raise PipelineError(f"pulling {published} failed: {why}; wait out the rate limit or fix `docker login` (nothing was built)") from None
            err.print(f"{published} could not be pulled ({why}): building it locally (one-time; about 1-3 minutes)", markup=False)
            if _build(options, select(options, [f"id={cell.id}"]), docker) != 0:
                raise PipelineError(f"could not build {cell.id}; see the log above") from None
    print(ref)
    return 0


def _pull_platform(docker: Docker, published: str, platform: str, local: str) -> None:
    """Pull `platform`'s image of a published tag by its manifest digest and tag it `local`: pulling the tag
    itself would take the engine's platform, and would move a local tag another platform's image holds."""
    raw = docker.imagetools_inspect(published, "--raw")
    try:
        document = json.loads(raw)
    except ValueError:
        raise PipelineError(f"the registry's manifest of {published} is not JSON ({raw[:80]!r}): not pulling an image it cannot identify") from None
    if not oci_index.is_index(document):
        raise PipelineError(f"{published} is one image, not a multi-platform index: it cannot say which image is the {platform} one")
    by_digest = f"{published.rsplit(':', 1)[0]}@{oci_index.platform_manifest(document, platform, published)}"
    docker.pull(by_digest)
    docker.tag(by_digest, local)


def cmd_reproduce(options: Options) -> int:
    """Build each selected cell twice from scratch and compare the images layer by layer."""
    from . import git
    from .reproduce import reproduce

    s = select(options)
    if matrix.Filter.parse(options.filter).names_only_platforms:  # no cell named: the default CPU cell of each platform
        s = Selection(s.config, s.all_cells, tuple(matrix.default_cpu_cells(s.config, s.selected, s.all_cells)))
    git.head(options.root)  # fails closed before any build: the check builds a commit
    report = reproduce(_engine(options), options, s, err)
    for c in report.cells:
        verdict = "error: " + c.error if c.error else ("identical" if c.ok else "DIFFERS")
        if c.error:
            image = ""
        elif c.same_image_id:
            image = "; image ID identical"
        else:
            image = "; image ID differs" + (" (only the config's creation times, which this builder cannot set)" if c.ok else "")
        print(f"{c.cell}: {verdict} ({c.identical_layers}/{len(c.layers_above_base)} layers above the base identical{image})")
    err.print(f"report: {options.report_dir / layout.REPRODUCE_REPORT_MD}")
    return 0 if report.ok else 1


def cmd_bench(options: Options) -> int:
    from .bench import BenchOptions, run

    s = select(options)
    image = options.get("image") or f"{s.config.image}:{tags.cell_tag(matrix.default_cell(s.config, 'cpu', s.all_cells))}"
    layout_ = options.layout
    hub_paths = {} if options.get("no_hub") else {"install_hub_script": layout_.install_hub_script, "hub_example_config": layout_.hub_example_config}
    bench = BenchOptions(image=image, launcher=options.layout.launcher, runs=options.get("runs"), report_dir=options.report_dir, **hub_paths)
    report = run(_engine(options), bench, lambda m: err.print(m, markup=False, highlight=False))
    print(report.to_markdown(), end="")
    err.print(f"report: {options.report_dir / layout.BENCH_REPORT_MD}")
    return 0 if report.ok else 1


def _report_cells(options: Options, s: Selection) -> list[matrix.Cell]:
    """Without a filter, smoke and publish take the cells of this run's build report."""
    if options.filter or not (options.report_dir / layout.BUILD_REPORT).exists():
        return list(s.selected)
    built = set(load_build_report(options.report_dir).filter_cells)
    return [c for c in s.all_cells if c.id in built] or list(s.selected)


def cmd_smoke(options: Options) -> int:
    from . import smoke

    s = select(options)
    _engine(options)
    cells = _report_cells(options, s)
    err.print(f"smoke-testing {len(cells)} cell(s): {', '.join(c.id for c in cells)}")
    return smoke.run(options, cells)


def cmd_publish(options: Options) -> int:
    from . import publish_plan, smoke_report

    s = select(options)
    stage = options.get("stage")
    if stage == "moving":
        names = (layout.PUBLISH_REPORT, layout.INDEX_REPORT)
        reports = [report for _, report in publish_plan.load_publish_reports(options.report_dir, names)]
        plan = publish_plan.plan_moving_from_reports(s.config, s.all_cells, s.selected, reports)
    else:
        if not (options.report_dir / layout.BUILD_REPORT).exists():
            raise PipelineError(f"no build report in {options.report_dir}: run `nox -s build-matrix` (and smoke) before publishing")
        build = load_build_report(options.report_dir)
        cells = _report_cells(options, s)
        smoke = smoke_report.load(options.report_dir, [c.id for c in cells])
        gates = publish_plan.Gates(
            allow_dirty=bool(options.get("allow_dirty")),
            allow_untested_gpu=bool(options.get("allow_untested_gpu")),
            allow_bootstrapped_base=bool(options.get("allow_bootstrapped_base")),
        )
        plan = publish_plan.plan_publish(
            s.config, s.all_cells, cells, build, smoke, gates=gates, move_tags=stage == "all", staging_only=stage == "staging"
        )  # fmt: skip
    return _carry_out(options, s, plan, options.report_dir / (layout.MOVING_REPORT if stage == "moving" else layout.PUBLISH_REPORT))


def cmd_publish_index(options: Options) -> int:
    """The join of a release: one multi-platform index per selected stem from the platform jobs' publish reports."""
    from . import publish_plan

    s = select(options)
    reports = [report for _, report in publish_plan.load_publish_reports(options.report_dir)]
    plan = publish_plan.plan_index_from_reports(s.config, s.all_cells, s.selected, reports)
    if not plan.steps and not plan.held_back:
        err.print("no multi-platform stem selected: nothing to join")
    return _carry_out(options, s, plan, options.report_dir / layout.INDEX_REPORT)


def _carry_out(options: Options, s: Selection, plan, report: Path) -> int:
    from . import publish

    dry_run = bool(options.get("dry_run"))
    if not dry_run:
        _engine(options)
    with publish.registry_client(s.config.registry, options.registry_credentials) as client:
        # execute() stops a failing cell and goes on; its report, pushed and not pushed, is always written.
        result = publish.execute(
            plan, client, dry_run=dry_run, attempts=options.get("retries") + 1, backoff=options.get("backoff"),
            log=lambda m: err.print(m, highlight=False, markup=False), report=None if dry_run else report,
        )  # fmt: skip
    if not dry_run:
        err.print(f"report: {report}")
    return 0 if result.ok else 1


def cmd_check_release_tag(options: Options) -> int:
    from .versions import parse_semver_tag

    tag = options.get("tag")
    if not tag.startswith("v"):
        raise PipelineError(f"release tag {tag!r} must look like v1.2.3")
    try:
        parse_semver_tag(tag)
    except ValueError as exc:
        raise PipelineError(f"release tag {tag!r} is not semver ({exc}); use vMAJOR.MINOR.PATCH") from None
    out.print(f"✓ {tag}")
    return 0


def _reports(options: Options):
    from .publish_plan import load_publish_reports

    return load_publish_reports(options.report_dir, (layout.PUBLISH_REPORT, layout.INDEX_REPORT))


def _pushed(options: Options) -> list[tuple[Path, str, dict]]:
    """(publish report file, cell, entry) of every pushed cell (a platform of a multi-platform stem: under its
    staging tag) in the publish reports under --report-dir."""
    return [(path, cell, entry) for path, report in _reports(options) for cell, entry in report.pushed()]


def _pushed_stems(options: Options) -> list[tuple[str, dict]]:
    """(stem, entry) of every multi-platform index in the publish and index reports under --report-dir."""
    return [(stem, entry) for _, report in _reports(options) for stem, entry in report.pushed_stems()]


def _digest_ref(entry: dict) -> str:
    return f"{entry['tags'][0].rsplit(':', 1)[0]}@{entry['digest']}"


def cmd_summary(options: Options) -> int:
    from .build_report import human

    ran = {True: "yes", False: "**no** (published with --allow-untested-gpu)", None: "– (CPU)"}
    print("| cell | tags | digest | size | GPU op ran on a GPU |\n|---|---|---|---|---|")
    for _, cell, entry in _pushed(options):
        tags_text = "<br>".join(f"`{t}`" for t in entry["tags"])
        print(f"| {cell} | {tags_text} | `{entry['digest']}` | {human(entry.get('size'))} | {ran.get(entry.get('gpu_op_on_gpu'), '–')} |")
    for stem, entry in _pushed_stems(options):
        tags_text = "<br>".join(f"`{t}`" for t in entry["tags"])
        listed = "<br>".join(f"{p}: {image['cell']} `{image['digest']}`" for p, image in sorted(entry["platforms"].items()))
        print(f"| {stem} (index) | {tags_text} | `{entry['digest']}`<br>{listed} | – | – |")
    return 0


def cmd_digests(options: Options) -> int:
    """Every pushed image's digest, and every multi-platform index's: each is signed."""
    for _, _, entry in _pushed(options):
        print(_digest_ref(entry))
    for _, entry in _pushed_stems(options):
        print(_digest_ref(entry))
    return 0


def cmd_sboms(options: Options) -> int:
    """IMAGE@DIGEST and its CycloneDX SBOM (the build stage's, next to the publish report), one pair a line."""
    pairs = []
    for file, cell, entry in _pushed(options):
        sbom = file.parent / layout.MANIFESTS_DIR / f"{cell}.cdx.json"
        if not sbom.is_file():
            raise PipelineError(f"{cell} was pushed but {sbom} does not exist: upload reports/manifests/ with the publish report")
        pairs.append(f"{_digest_ref(entry)} {sbom}")
    print("\n".join(pairs))
    return 0


def cmd_contract(options: Options) -> int:
    """The image contract (kerastack.contract), for workflows and scripts: one value, or all as JSON."""
    values = {**contract.build_args(), "REPOSITORY_NAME": select(options).config.repository.rsplit("/", 1)[-1]}
    key = options.get("key")
    if key is None:
        print(json.dumps(values, indent=2, sort_keys=True))
        return 0
    if key not in values:
        raise PipelineError(f"no contract value {key!r}; known: {', '.join(sorted(values))}")
    print(values[key])
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


CA_HELP = "PEM bundle for a TLS-intercepting proxy (default: SSL_CERT_FILE, REQUESTS_CA_BUNDLE, PIP_CERT)"
REPORT_HELP = "the report folder, relative to --project-dir (default: reports/)"


def _report_dir(sp: argparse.ArgumentParser, help: str = REPORT_HELP) -> None:
    sp.add_argument("--report-dir", help=help)
    sp.add_argument("--reports", dest="report_dir", help=argparse.SUPPRESS)  # the old name of --report-dir


def _build_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--ca-bundle", help=CA_HELP)
    sp.add_argument("--builder", help="an existing buildx builder, e.g. a remote BuildKit (default: BUILDX_BUILDER)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kerastack", description="Build, test and publish pinned Keras/TensorFlow + Jupyter images.")
    p.add_argument("--project-dir", type=Path, default=Path.cwd(), help="the project: versions.toml, locks/, images/ (default: the current folder)")
    p.add_argument("--config", help="the versions file (default: PROJECT_DIR/versions.toml)")
    p.add_argument("--registry", help="override [registry].host (or KERASTACK_REGISTRY)")
    p.add_argument("--repository", help="override [registry].repository (or KERASTACK_REPOSITORY)")
    sub = p.add_subparsers(dest="command", required=True)
    filter_help = f"select cells: KEY=VALUE[,VALUE] with keys {', '.join(matrix.FILTER_KEYS)} (e.g. tf=2.21 variant=cpu)"

    def command(name: str, func, help: str, filtered: bool = True) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        if filtered:
            sp.add_argument("filter", nargs="*", help=filter_help)
        sp.set_defaults(func=func)
        return sp

    sp = command("matrix", cmd_matrix, "show the cells of the matrix (a table, or JSON for GitHub Actions)")
    sp.add_argument("--json", action="store_true", help='print {"include": [...]} for strategy.matrix via fromJSON')
    sp.add_argument("--compact", action="store_true", help="one-line JSON (for $GITHUB_OUTPUT)")
    command("tags", cmd_tags, "show each cell's tags and which of them move")
    sp = command("lock", cmd_lock, "resolve hash-pinned lock files per cell into locks/ (needs PyPI)")
    sp.add_argument("--check", action="store_true", help="fail when versions.toml changed since the locks were made")
    sp = command("changes", cmd_changes, "per cell, the packages changed since the previous TensorFlow release (or another platform: --against-platform)")
    sp.add_argument("--manifest", help="also compare with a published manifest (reports/manifests/<cell>.json or the image's)")
    sp.add_argument("--markdown", action="store_true", help="Markdown for a release summary instead of tables")
    sp.add_argument(
        "--against-platform", metavar="PLATFORM",
        help="compare each cell with the cell of the same tag on PLATFORM (e.g. id=tf2.21.0-py3.11-cpu-arm64 --against-platform linux/amd64) "
        "instead of the previous TensorFlow release",
    )  # fmt: skip
    sp = command("engine", cmd_engine, "make sure a Docker engine with buildx runs (installs it as root)")
    sp.add_argument("--check", action="store_true", help="only check; never install")
    command("base-images", cmd_base_images, "pull or bootstrap the base image of each selected Python")
    for name, func, help in (
        ("build", cmd_build, "build the selected cells with buildx and write the build report"),
        ("image", cmd_image, "print the default image of a variant, pulling or building it"),
    ):
        sp = command(name, func, help)
        _build_options(sp)
        sp.add_argument("--cache-from", help="buildx --cache-from, e.g. type=gha")
        sp.add_argument("--cache-to", help="buildx --cache-to, e.g. type=gha,mode=max")
        sp.add_argument("--no-cache", action="store_true", help="build without the layer cache")
        sp.add_argument("--naive", action="store_true", help="also build a naive single-stage image per cell and report its size")
        _report_dir(sp, "where the build report goes, relative to --project-dir (default: reports/)")
        if name == "image":
            sp.add_argument("--variant", choices=contract.VARIANTS, default="cpu")
            sp.add_argument("--platform", help=f"the platform's image, e.g. linux/arm64 (default: {options_module.PLATFORM_ENV}, else the engine's own)")
    sp = command("reproduce", cmd_reproduce, "build each selected cell twice from scratch and compare the layers; writes reports/reproduce.{json,md}")
    _build_options(sp)
    _report_dir(sp, "where reproduce.{json,md} go, relative to --project-dir (default: reports/)")
    sp.add_argument("--work-dir", help="where the two exports (and archives, with --keep-archives) go (default: the system's temp dir)")
    sp.add_argument("--keep-archives", action="store_true", help="write and keep the two docker save archives in --work-dir, else the report folder")
    sp.add_argument("--keep-images", action="store_true", help="leave the two images tagged <image>:reproduce-<cell>-1 and -2 (remove them yourself)")
    sp = command("bench", cmd_bench, "time the launcher, the first TF import and a JupyterHub spawn against their floors; writes reports/bench.{json,md}")
    sp.add_argument("--image", help="the image to measure (default: the default CPU cell's local image)")
    sp.add_argument("--runs", type=int, default=5, help="runs of each side; the report shows medians (at least 5)")
    sp.add_argument("--no-hub", action="store_true", help="skip the JupyterHub spawn (it installs a pinned hub with scripts/install-hub.sh)")
    _report_dir(sp, "where bench.json and bench.md go, relative to --project-dir (default: reports/)")
    sp = command("smoke", cmd_smoke, "smoke-test built images in real containers; writes reports/smoke/<cell>.json")
    _report_dir(sp, "where the build report is and the smoke reports go (default: reports/)")
    sp.add_argument("--build", action="store_true", help="(re)build the cells first instead of testing the existing images")
    sp.add_argument("--pytest-args", nargs=argparse.REMAINDER, default=[], help="passed on to pytest")
    sp = command("publish", cmd_publish, "push the cells that passed smoke tests in this run; move moving tags last")
    _report_dir(sp, "build/smoke reports (stage all, cells) or publish reports (stage moving); default reports/")
    sp.add_argument(
        "--stage",
        choices=("all", "cells", "staging", "moving"),
        default="all",
        help="all: push and move; cells: push only; staging: push only, a multi-platform stem's platforms under their staging tags "
        "(a release's per-platform job; publish-index joins them); moving: move from publish (and index) reports",
    )
    sp.add_argument("--dry-run", action="store_true", help="show what would be pushed and moved")
    sp.add_argument("--allow-dirty", action="store_true", help="publish images built from uncommitted changes")
    sp.add_argument("--allow-untested-gpu", action="store_true", help="publish GPU cells whose GPU op did not run on a GPU (recorded in the report)")
    sp.add_argument(
        "--allow-bootstrapped-base", action="store_true", help="publish images built on the offline (debootstrapped) base, not the official one (recorded)"
    )
    sp.add_argument("--retries", type=_count, default=3, help="retries of a failed push, 0 or more (default 3); there is always one attempt")
    sp.add_argument("--backoff", type=_seconds, default=2.0, help="first retry delay in seconds, doubling (default 2)")
    sp = command("publish-index", cmd_publish_index, "join the platform jobs' staged images: one multi-platform index per stem, immutable then cell tag")
    _report_dir(sp, "folder searched for the platform jobs' publish-report.json files; index-report.json is written there (default: reports/)")
    sp.add_argument("--dry-run", action="store_true", help="show which indexes would be made")
    sp.add_argument("--retries", type=_count, default=3, help="retries of a failed registry write, 0 or more (default 3)")
    sp.add_argument("--backoff", type=_seconds, default=2.0, help="first retry delay in seconds, doubling (default 2)")
    sp = command("check-release-tag", cmd_check_release_tag, "fail unless TAG is vMAJOR.MINOR.PATCH (semver)", filtered=False)
    sp.add_argument("tag")
    for name, func, help in (
        ("summary", cmd_summary, "Markdown table of pushed cells"),
        ("digests", cmd_digests, "IMAGE@DIGEST of each pushed cell"),
        ("sboms", cmd_sboms, "IMAGE@DIGEST and the path of its CycloneDX SBOM, per pushed cell"),
    ):
        sp = command(name, func, help, filtered=False)
        _report_dir(sp, "folder searched for publish-report.json files (default: reports/)")
    sp = command("readme", cmd_readme, "write README.md's package list from the default CPU cell's lock", filtered=False)
    sp.add_argument("--check", action="store_true", help="only check that README.md's list matches the lock")
    sp = command("contract", cmd_contract, "print the image contract (UID, mount point, port, lock groups, ...) as JSON, or one value", filtered=False)
    sp.add_argument("key", nargs="?", help="one key, e.g. KERAS_UID or REPOSITORY_NAME")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        options = options_module.resolve(args, dict(os.environ), is_root=os.geteuid() == 0)
        return args.func(options)
    except PipelineError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return exc.exit_code
    except DockerException as exc:
        err.print(f"[bold red]error:[/] docker failed: {escape(docker_error(exc))}", highlight=False)
        return 1
    except OSError as exc:  # a file or folder the command needs cannot be read or written
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return 1
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
