"""Shared fixtures. Docker tests use the real engine; images are built through the pipeline itself."""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Tests build and tag under a repository name of their own, never the project's (kerastack/keras-jupyter),
# so a user's `make build` of the same commit and day is never touched by a test's cleanup. An explicit
# KERASTACK_REPOSITORY (parallel checkouts keep apart that way) is kept.
TEST_REPOSITORY = "kerastack-test/keras-jupyter"
os.environ.setdefault("KERASTACK_REPOSITORY", TEST_REPOSITORY)
# Set (e.g. "16GB", by .ci/run on its fresh machine): shrink the BuildKit cache at the end. A global prune
# touches other builds' cache too, so it never runs on a user's machine unless asked.
BUILD_CACHE_ENV = "KERASTACK_TEST_BUILD_CACHE"


def pipeline_options(*words: str, environ: dict[str, str] | None = None):
    """The pipeline's Options for this checkout, resolved from CLI words and the environment like the CLI does."""
    from kerastack import cli, options

    args = cli.parser().parse_args(["--project-dir", str(ROOT), *words])
    return options.resolve(args, dict(os.environ) if environ is None else environ, is_root=os.geteuid() == 0)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kerastack")
    group.addoption("--cells", default=os.environ.get("KERASTACK_SMOKE_CELLS", ""), help="comma-separated cell ids to smoke-test")
    group.addoption("--no-build", action="store_true", help="smoke-test existing local images; do not build missing ones")
    group.addoption("--smoke-report-dir", default="", help="write one smoke report per cell (smoke/<cell>.json) under this folder")


@functools.cache
def project_selection():
    """versions.toml with the registry overrides, and its matrix, read the way the CLI reads them."""
    from kerastack.options import select

    return select(pipeline_options("matrix"))


def smoke_cells(config: pytest.Config, every_platform: bool = False) -> list[str]:
    """--cells, else the matrix's default cells (what `make run`, `make run-gpu` and `latest` serve); with
    `every_platform` (tests marked so), also those cells' siblings on the other platforms, which run under
    emulation here: the default CPU cell's arm64 image gets the image checks, not the whole suite."""
    chosen = config.getoption("--cells")
    if chosen:
        return [c for c in chosen.split(",") if c]
    from kerastack import matrix

    selection = project_selection()
    defaults = matrix.default_cells(selection.config, selection.all_cells)
    if every_platform:
        stems = {cell.stem for cell in defaults}
        defaults += [cell for cell in selection.all_cells if cell.stem in stems and not cell.is_default_platform]
    return [cell.id for cell in defaults]


def runs_under_emulation(item: pytest.Item) -> bool:
    """Marked `emulated`, or run against a cell of another platform than the default (its id's suffix)."""
    cell = _cell_param(item)
    return item.get_closest_marker("emulated") is not None or (isinstance(cell, str) and not _is_default_platform(cell))


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests of another platform's images go last, in their order: they run under QEMU, and the image
    they use is built in the background meanwhile (see BackgroundBuild). Among them: the base first, then
    the smoke checks of the image, then what uses the checked image (--check, the launcher, publish).
    Just before them come the tests marked `after_background_build`, which wait for that build to end:
    the one that stops the engine, and the reproducibility test, which shrinks the build cache on CI's
    machine (KERASTACK_TEST_BUILD_CACHE) and needs the disk for two clean builds."""
    emulated = [i for i in items if runs_under_emulation(i)]
    step = {"test_base_check.py": 0, "smoke": 1}
    emulated.sort(key=lambda i: step.get(i.path.name, step.get(i.path.parent.name, 2)))
    waiting = [i for i in items if i.get_closest_marker("after_background_build") is not None and i not in emulated]
    items[:] = [i for i in items if not runs_under_emulation(i) and i not in waiting] + waiting + emulated


def pytest_collection_finish(session: pytest.Session) -> None:
    """The other platforms' cells the selected tests run against (after -k/-m deselection): what the
    background build makes."""
    cells = (_cell_param(i) for i in session.items)
    _other_platform_cells[:] = list(dict.fromkeys(cell for cell in cells if isinstance(cell, str) and not _is_default_platform(cell)))


def _cell_param(item: pytest.Item) -> object:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("cell_id") if callspec is not None else None


def _is_default_platform(cell_id: str) -> bool:
    from kerastack import contract

    return not cell_id.endswith(tuple(contract.platform_suffix(p) for p in contract.PLATFORMS if p != contract.DEFAULT_PLATFORM))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    chosen_by_test = any("cell_id" in str(m.args[0]) for m in metafunc.definition.iter_markers("parametrize"))
    if "cell_id" in metafunc.fixturenames and not chosen_by_test:
        cells = smoke_cells(metafunc.config, metafunc.definition.get_closest_marker("every_platform") is not None)
        if metafunc.definition.get_closest_marker("gpu_image"):
            cells = [c for c in cells if "-gpu-" in c]
        metafunc.parametrize("cell_id", cells, scope="session")


@pytest.fixture(scope="session")
def project_config():
    return project_selection().config


@pytest.fixture(scope="session")
def all_cells(project_config):
    return list(project_selection().all_cells)


@pytest.fixture(scope="session")
def docker_engine():
    """The real engine; installed and started as root when missing (like `make test`)."""
    from kerastack import engine
    from kerastack.docker_client import Docker

    options = pipeline_options("engine")
    return engine.ensure(Docker(), install=options.install_engine, install_script=options.layout.install_docker_script)


@pytest.fixture(scope="session")
def docker(docker_engine):
    """The pipeline's own Docker adapter: tests build, run and push through it too."""
    from kerastack.docker_client import Docker

    return Docker()


@dataclass
class BuiltCell:
    """A cell image this session has at hand: its reference, and the build report entry when it built it."""

    ref: str
    image_id: str
    report: object | None = None  # kerastack.build_report.CellReport


_built: dict[str, BuiltCell] = {}
# What this session's builds made, and nothing else: removed at the end by exact tag or id.
_made_tags: set[str] = set()  # immutable tags (the cell tags stay: they are the next run's cache)
_replaced_ids: set[str] = set()  # images a cell tag pointed at before this session rebuilt the cell


def track_build(cells) -> None:
    """Record what a build made, from its report's cells (CellReport objects or their JSON)."""
    for cell in cells:
        fields = cell if isinstance(cell, dict) else vars(cell)
        if fields.get("status") == "built" and fields.get("tags"):
            _made_tags.add(fields["tags"][0])
        if fields.get("previous_image_id"):
            _replaced_ids.add(fields["previous_image_id"])


def remove_made_images(tags: set[str], replaced_ids: set[str]) -> None:
    """Untag exactly `tags`; then remove each of `replaced_ids` only if nothing tags it any more."""
    from kerastack.docker_client import Docker, DockerException

    docker = Docker()
    docker.remove_images(sorted(tags))
    for image_id in sorted(replaced_ids):
        try:
            if not docker.inspect(image_id).repo_tags:
                docker.remove_images([image_id])
        except DockerException:
            pass  # gone already, or a container still uses it: not ours to force


# ---------------------------------------------------------------- other platforms' images, built alongside
# The arm64 image builds under QEMU for some ten minutes, mostly one core running dpkg, and its tests
# come last. Once the session's first cell of the engine's own platform is built (so that platform's
# base, which a cross build's Python stage starts from, is there and no two builds bootstrap it at once),
# `kerastack build` builds the other platforms' cells the selected tests need, in a subprocess, while
# the other tests go on on the other core. Every emulated test, every test marked
# `after_background_build`, and a gate-input build of those cells wait for it first; the cell's fixture
# fails with the build's log when it failed. It is the CLI a maintainer runs, in its own process group,
# so the session's end (a failure with -x, a Ctrl-C) stops the whole build with it.
_other_platform_cells: list[str] = []  # ids the collected emulated tests run against, in order
BACKGROUND_BUILD_TIMEOUT = 60 * 60


@dataclass
class BackgroundBuild:
    cell_ids: tuple[str, ...]
    process: subprocess.Popen
    report_dir: Path
    log: Path
    started: float
    cells: dict[str, dict] | None = None  # the build report's cells once it has ended

    @classmethod
    def start(cls, cell_ids: tuple[str, ...], folder: Path) -> BackgroundBuild:
        log = folder / "build.log"
        command = [sys.executable, "-m", "kerastack", "--project-dir", str(ROOT), "build", "--report-dir", str(folder), "id=" + ",".join(cell_ids)]
        with log.open("w") as out:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, process_group=0)
        return cls(cell_ids, process, folder, log, time.monotonic())

    def finish(self) -> dict[str, dict]:
        """Wait for the build and return its report's cells by id (each with its status and error)."""
        if self.cells is None:
            try:
                self.process.wait(timeout=max(1.0, BACKGROUND_BUILD_TIMEOUT - (time.monotonic() - self.started)))
            except subprocess.TimeoutExpired:
                self.stop()
            report = self.report_dir / "build-report.json"
            cells = json.loads(report.read_text())["cells"] if report.is_file() else []
            track_build(cells)
            self.cells = {cell["cell"]: cell for cell in cells}
        return self.cells

    def outcome(self, cell_id: str) -> None:
        """Fail, with the build's own words, unless `cell_id` was built."""
        cell = self.finish().get(cell_id)
        if cell is None or cell.get("status") != "built":
            tail = self.log.read_text(errors="replace")[-4000:]
            said = cell.get("error") if cell else f"exit {self.process.returncode}, no report for the cell"
            pytest.fail(f"the background build of {cell_id} failed: {said}\n{tail}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


_background: list[BackgroundBuild] = []


def start_background_build(config: pytest.Config, docker, all_cells, tmp_path_factory) -> None:
    """Start building the other platforms' cells (once a session); those this kernel cannot run are left
    to their tests, which skip saying why."""
    from kerastack import emulation

    if _background or not _other_platform_cells or config.getoption("--no-build"):
        return
    engine = docker.engine_platform()
    platform_of = {cell.id: cell.platform for cell in all_cells}
    wanted = [
        cell_id
        for cell_id in _other_platform_cells
        if cell_id not in _built and cell_id in platform_of and (platform_of[cell_id] == engine or not emulation.problem(platform_of[cell_id]))
    ]
    if wanted:
        build = BackgroundBuild.start(tuple(wanted), tmp_path_factory.mktemp("background-build"))
        _background.append(build)
        # Past pytest's capture (fd-level while a fixture runs), so it shows whatever the test under way does.
        reporter, capture = config.pluginmanager.get_plugin("terminalreporter"), config.pluginmanager.get_plugin("capturemanager")
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(f"building {', '.join(wanted)} in the background (log: {build.log})")


def wait_for_background_build(cell_ids: Iterable[str] | None = None) -> None:
    """Wait for the background build (only if it builds one of `cell_ids`, when given)."""
    for build in _background:
        if cell_ids is None or set(cell_ids) & set(build.cell_ids):
            build.finish()


@pytest.fixture(autouse=True)
def _background_build_done(request: pytest.FixtureRequest) -> None:
    """Emulated tests use (or make) what the background build makes; a test marked `after_background_build`
    (it stops the engine, or prunes the build cache) would break it: both wait for it to end."""
    if _background and (runs_under_emulation(request.node) or request.node.get_closest_marker("after_background_build") is not None):
        wait_for_background_build()


def skip_unless_it_runs_here(docker, platform: str) -> None:
    """Another platform's image is built and run under QEMU: skip, saying why, where this kernel cannot."""
    from kerastack import emulation

    engine = docker.engine_platform()
    if platform != engine and (why := emulation.problem(platform)):
        pytest.skip(f"{platform} images cannot run on this {engine} machine: {why} ({emulation.FIX}, as root)")


@pytest.fixture(scope="session")
def built_cell(request: pytest.FixtureRequest, cell_id: str, docker, project_config, all_cells, tmp_path_factory) -> BuiltCell:
    """A local image of the cell, built through the pipeline (cached layers make rebuilds quick)."""
    from kerastack import matrix, tags
    from kerastack.build import build_matrix
    from kerastack.git import current_stamp
    from kerastack.options import Selection

    if cell_id in _built:
        return _built[cell_id]
    (cell,) = matrix.Filter.parse([f"id={cell_id}"]).select(all_cells)
    skip_unless_it_runs_here(docker, cell.platform)
    ref = tags.local_ref(project_config.image, cell)
    report = None
    background = next((b for b in _background if cell_id in b.cell_ids), None)
    if background is not None:
        background.outcome(cell_id)
    elif request.config.getoption("--no-build"):
        if not docker.exists(ref):
            pytest.fail(f"{ref} is not built: run `nox -s build-matrix -- id={cell_id}` first")
    else:
        options = pipeline_options("build", "--report-dir", str(tmp_path_factory.mktemp(f"build-{cell_id}")))
        stamp, created = current_stamp(ROOT, day=options.build_day)
        build = build_matrix(docker, options, Selection(project_config, tuple(all_cells), (cell,)), stamp, created)
        track_build(build.cells)
        assert build.ok, f"building {cell_id} failed: {build.cells[0].error}"
        report = build.cells[0]
        if cell.platform == docker.engine_platform():
            start_background_build(request.config, docker, all_cells, tmp_path_factory)
    _built[cell_id] = BuiltCell(ref, docker.inspect(ref).id, report)
    return _built[cell_id]


def build_with_gate_input(docker, cell_ids, folder: Path, who: str) -> Path:
    """Build `cell_ids` through the pipeline (cached layers make it quick), write their build report into
    `folder`, and a smoke report per cell that names the built image as tested by `who`: a publish test's own
    gate input, so a failure elsewhere in the session cannot fail it or publish under it."""
    from kerastack import smoke_report
    from kerastack.build import build_matrix
    from kerastack.build_report import write_build_report
    from kerastack.git import current_stamp
    from kerastack.options import select

    wait_for_background_build(cell_ids)  # never two builds of one cell (and its tags) at once
    options = pipeline_options("build", *(f"id={c}" for c in cell_ids), "--report-dir", str(folder))
    stamp, created = current_stamp(ROOT, day=options.build_day)
    build = build_matrix(docker, options, select(options), stamp, created)
    track_build(build.cells)
    assert build.ok, [c.error for c in build.cells]
    write_build_report(build, folder)
    for cell in build.cells:
        check = smoke_report.Check(f"gate input written by {who}", "passed")
        smoke_report.write(folder, smoke_report.SmokeReport(cell.cell, cell.tags[1], cell.image_id, (check,)))
    return folder


@pytest.fixture(scope="session")
def cell_image(built_cell: BuiltCell) -> str:
    return built_cell.ref


@dataclass(frozen=True)
class HostGpu:
    available: bool
    method: str | None
    reason: str


def load_launcher():
    """scripts/launch as a module: the tests use its GPU detection, the same code end users run."""
    loader = importlib.machinery.SourceFileLoader("kerastack_launch", str(ROOT / "scripts" / "launch"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module  # dataclasses look their module up there
    loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def host_gpu(docker) -> HostGpu:
    launch = load_launcher()
    info = docker.info()
    method = launch.detect_gpu(info, launch.find_local_cdi_specs(info))
    reason = "" if method else "Docker has no NVIDIA runtime and no CDI GPU device (no GPU, or no NVIDIA Container Toolkit)"
    return HostGpu(method is not None, method, reason)


@pytest.fixture(scope="session")
def cell(cell_id, all_cells):
    from kerastack import matrix

    (found,) = matrix.Filter.parse([f"id={cell_id}"]).select(all_cells)
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for build in _background:
        build.stop()  # still running only when the session ended early (a stopped build leaves no report)
        build.finish()  # what a finished build made is cleaned up with the rest
    session_cleanup()


def session_cleanup(environ: dict[str, str] | None = None) -> None:
    """Keep the cell tags (the cache the next run starts from); drop the immutable tags this session's
    builds made and the images they replaced, by exact tag and id: a user's own builds of the same
    commit and day, and their untagged images, are not ours to remove. Nothing is forced or pruned."""
    environ = os.environ if environ is None else environ
    if _made_tags or _replaced_ids:
        remove_made_images(_made_tags, _replaced_ids)
    if (_built or _made_tags) and environ.get(BUILD_CACHE_ENV):
        from kerastack.docker_client import Docker

        Docker().prune_build_cache(environ[BUILD_CACHE_ENV])
