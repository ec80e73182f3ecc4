"""Sessions of the kerastack pipeline. Thin on purpose: each one calls `python -m kerastack` or pytest.

Default (`nox`): lint and unit tests, no Docker. The heavy sessions build, run and push real images.
Cells are selected with the same filter everywhere: `nox -s build-matrix -- tf=2.21 variant=cpu`.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "unit"]
nox.needs_version = ">=2024.3.2"

PYTHON = "3.11"


PIPELINE_LOCK = "requirements/pipeline.txt"  # pyproject's dependencies and extras, nox and uv, with hashes


def _install(session: nox.Session, *extras: str) -> None:
    """The pipeline's own dependencies from the hash lock (it holds every extra: `extras` only say what a
    session uses), so whatever PyPI serves at the moment never runs here; then the project, nothing more."""
    session.install("--require-hashes", "-r", PIPELINE_LOCK)
    session.install("--no-deps", "--no-build-isolation", "-e", ".")


def _kerastack(session: nox.Session, *args: str) -> None:
    session.run("python", "-m", "kerastack", *args, *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff, hadolint on images/, shellcheck on scripts/, and the offline workflow checks."""
    _install(session, "lint", "test")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("pytest", "-q", "-m", "lint", "tests/unit")


@nox.session(python=PYTHON)
def unit(session: nox.Session) -> None:
    """Unit tests of the pure logic (config, matrix, tags, plans, locks, launcher); no Docker."""
    _install(session, "test", "lint")
    session.run("pytest", "tests/unit", *session.posargs)


def _command(name: str, command: str, doc: str, *extras: str, default: bool = True):
    """A session that installs the pipeline (with `extras`) and runs `python -m kerastack COMMAND` with the session's arguments."""

    def session(session: nox.Session) -> None:
        _install(session, *extras)
        _kerastack(session, command)

    session.__doc__ = doc
    session.__name__ = name.replace("-", "_")
    return nox.session(name=name, python=PYTHON, default=default)(session)


matrix = _command("matrix", "matrix", "Print the matrix as a table, or `-- --json` for GitHub Actions. Accepts a cell filter.")
tags = _command("tags", "tags", "Show every selected cell's tags and which of them move.")
lock = _command("lock", "lock", "Resolve hash-pinned lock files per cell with uv (`-- --check` only verifies them).", "lock")
changes = _command("changes", "changes", "Per cell, the packages that changed since the previous TensorFlow release (`-- --manifest FILE` too).")
base_images = _command("base-images", "base-images", "Pull each Python's official base, or bootstrap it from Debian packages when offline.")
build_matrix = _command("build-matrix", "build", "Build the selected cells with buildx and write reports/build-report.{json,md}.")
reproduce = _command(
    "reproduce",
    "reproduce",
    "Build the selected cells (a filter of platforms only: each one's default CPU cell) twice from scratch and compare them layer by layer.",
)
smoke = _command("smoke", "smoke", "Smoke-test the built images of the selected cells in real containers; one reports/smoke/<cell>.json each.", "test")
publish = _command("publish", "publish", "Push the cells that passed smoke tests in this run; move the moving tags last (`-- --dry-run`).")
publish_index = _command(
    "publish-index",
    "publish-index",
    "Join the platform jobs' staged images into one multi-platform index per stem (a release's join job; `-- --report-dir DIR`).",
    default=False,
)
bench = _command(
    "bench",
    "bench",
    "Launcher start->URL, the first TF import and a JupyterHub spawn against their floors: reports/bench.{json,md} (not run by default).",
    default=False,
)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """What `make test` runs: lint, unit tests, lock check, then integration tests on the real engine."""
    _install(session, "test", "lint", "lock")
    session.run("ruff", "check", ".")
    session.run("python", "-m", "kerastack", "engine")
    session.run("python", "-m", "kerastack", "lock", "--check")
    session.run("pytest", *(session.posargs or ["tests", "--durations=15"]))
