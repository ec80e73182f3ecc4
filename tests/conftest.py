"""Shared fixtures. Docker tests use the real engine; images are built through the pipeline itself."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What `make test` smoke-tests: the default CPU cell, the second Python, and both CUDA versions.
DEFAULT_SMOKE_CELLS = (
    "tf2.21.0-py3.11-cpu",
    "tf2.21.0-py3.13-cpu",
    "tf2.21.0-py3.11-gpu-cuda12.5",
    "tf2.21.0-py3.11-gpu-cuda12.9",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kerastack")
    group.addoption("--cells", default=os.environ.get("KERASTACK_SMOKE_CELLS", ""), help="comma-separated cell ids to smoke-test")
    group.addoption("--no-build", action="store_true", help="smoke-test existing local images; do not build missing ones")
    group.addoption("--smoke-report", default="", help="write per-cell smoke results (JSON) here")


def smoke_cells(config: pytest.Config) -> list[str]:
    chosen = config.getoption("--cells")
    return [c for c in chosen.split(",") if c] if chosen else list(DEFAULT_SMOKE_CELLS)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    chosen_by_test = any("cell_id" in str(m.args[0]) for m in metafunc.definition.iter_markers("parametrize"))
    if "cell_id" in metafunc.fixturenames and not chosen_by_test:
        cells = smoke_cells(metafunc.config)
        if metafunc.definition.get_closest_marker("gpu_image"):
            cells = [c for c in cells if "-gpu-" in c]
        metafunc.parametrize("cell_id", cells, scope="session")


@pytest.fixture(scope="session")
def project_config():
    from kerastack import config

    return config.with_environment(config.load(ROOT / "versions.toml"), dict(os.environ))


@pytest.fixture(scope="session")
def all_cells(project_config):
    from kerastack import matrix

    return matrix.cells(project_config)


@pytest.fixture(scope="session")
def docker_engine():
    """The real engine; installed and started as root when missing (like `make test`)."""
    from kerastack import engine

    return engine.ensure()


_built: dict[str, str] = {}
_build_results: dict = {}  # cell id -> CellReport of the build this session made
_tested_ids: dict[str, str] = {}  # cell id -> the image id the smoke tests ran against
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
    from python_on_whales import DockerException, docker

    from kerastack.docker_client import remove_images

    remove_images(sorted(tags))
    for image_id in sorted(replaced_ids):
        try:
            if not docker.image.inspect(image_id).repo_tags:
                docker.image.remove(image_id, force=False)
        except DockerException:
            pass  # gone already, or a container still uses it: not ours to force


@pytest.fixture(scope="session")
def cell_image(request: pytest.FixtureRequest, cell_id: str, docker_engine, project_config, all_cells, tmp_path_factory) -> str:
    """A local image of the cell, built through the pipeline (cached layers make rebuilds quick)."""
    from python_on_whales import docker

    from kerastack import matrix, tags
    from kerastack.build import BuildOptions, build_matrix, current_stamp
    from kerastack.ca import find_bundle

    if cell_id in _built:
        return _built[cell_id]
    (cell,) = matrix.Filter.parse([f"id={cell_id}"]).select(all_cells)
    ref = f"{project_config.image}:{tags.cell_tag(cell)}"
    if request.config.getoption("--no-build"):
        if not docker.image.exists(ref):
            pytest.fail(f"{ref} is not built: run `nox -s build-matrix -- id={cell_id}` first")
    else:
        stamp, created = current_stamp(ROOT)
        report = build_matrix(
            BuildOptions(
                root=ROOT,
                config=project_config,
                all_cells=tuple(all_cells),
                selected=(cell,),
                stamp=stamp,
                created=created,
                ca_bundle=find_bundle(),
                report_dir=tmp_path_factory.mktemp(f"build-{cell_id}"),
            )
        )
        track_build(report.cells)
        assert report.ok, f"building {cell_id} failed: {report.cells[0].error}"
        _build_results[cell_id] = report.cells[0]
    _built[cell_id] = ref
    _tested_ids[cell_id] = docker.image.inspect(ref).id
    return ref


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
def host_gpu(docker_engine) -> HostGpu:
    from python_on_whales import docker
    from python_on_whales.utils import run

    launch = load_launcher()
    info = json.loads(run(docker.docker_cmd + ["info", "--format", "{{json .}}"]))
    method = launch.detect_gpu(info, launch.find_local_cdi_specs(info))
    reason = "" if method else "Docker has no NVIDIA runtime and no CDI GPU device (no GPU, or no NVIDIA Container Toolkit)"
    return HostGpu(method is not None, method, reason)


@pytest.fixture(scope="session")
def cell(cell_id, all_cells):
    from kerastack import matrix

    (found,) = matrix.Filter.parse([f"id={cell_id}"]).select(all_cells)
    return found


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Unit tests first, then the smoke suite, then integration tests (publishing needs this run's smoke results)."""
    rank = {"unit": 0, "smoke": 1, "integration": 2}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).parent.name, 1))


def session_reports(directory: Path, cell_ids: list[str]) -> Path:
    """This session's build and smoke reports for `cell_ids`, written where `publish --reports` reads them."""
    from kerastack.report import BuildReport, write_build_report

    missing = [c for c in cell_ids if c not in _build_results or c not in _results]
    if missing:
        pytest.fail(f"publishing needs this run's build and smoke results for {missing}: run the smoke suite in the same session (make test does)")
    write_build_report(BuildReport("session", "session", cell_ids, [_build_results[c] for c in cell_ids]), directory)
    _write_smoke_report_to(directory / "smoke-report.json")
    return directory


# ---------------------------------------------------------------- per-cell smoke results for publish
_results: dict[str, dict] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    callspec = getattr(report, "cell_id", None)
    if callspec is None:
        return
    entry = _results.setdefault(callspec, {"passed": 0, "failed": [], "skipped": 0, "checks": []})
    outcome = ""
    if report.failed:
        entry["failed"].append(report.nodeid)
        outcome = "failed"
    elif report.when == "call" and report.passed:
        entry["passed"] += 1
        outcome = "passed"
    elif report.skipped:
        entry["skipped"] += 1
        outcome = "skipped"
    if outcome:  # every check with its outcome and, for a skip, why: publish decides from these
        reason = report.longrepr[2] if outcome == "skipped" and isinstance(report.longrepr, tuple) else ""
        entry["checks"].append({"test": report.nodeid, "outcome": outcome, "reason": reason.removeprefix("Skipped: "), "gpu": report.gpu_check})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    callspec = getattr(item, "callspec", None)
    if callspec is not None and isinstance(callspec.params.get("cell_id"), str):
        report.cell_id = callspec.params["cell_id"]
        report.gpu_check = item.get_closest_marker("gpu") is not None  # needs a GPU to mean anything


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _write_smoke_report(session)
    # Keep the cell tags (the cache the next run starts from); drop the immutable tags this session's
    # builds made and the images they replaced, by exact tag and id: a user's own builds of the same
    # commit and day, and their untagged images, are not ours to remove.
    if _made_tags or _replaced_ids:
        remove_made_images(_made_tags, _replaced_ids)
    if _built or _made_tags:
        # GPU builds leave gigabytes of stage snapshots and pip caches; the disk is shared with later runs.
        from kerastack.docker_client import prune_build_cache

        prune_build_cache(os.environ.get("KERASTACK_TEST_BUILD_CACHE", "16GB"))


def _write_smoke_report(session: pytest.Session) -> None:
    path = session.config.getoption("--smoke-report")
    if path:
        _write_smoke_report_to(Path(path))


def _write_smoke_report_to(path: Path) -> None:
    cells = {}
    for cell_id, entry in _results.items():
        ref = _built.get(cell_id)
        image_id = _tested_ids.get(cell_id, "")
        cells[cell_id] = {**entry, "image": ref or "", "image_id": image_id, "ok": not entry["failed"] and entry["passed"] > 0}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"cells": cells}, indent=2) + "\n")
