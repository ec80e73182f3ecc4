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


def _install(session: nox.Session, *extras: str) -> None:
    session.install("-e", f".[{','.join(extras)}]" if extras else ".")


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


@nox.session(python=PYTHON)
def matrix(session: nox.Session) -> None:
    """Print the matrix as a table, or `-- --json` for GitHub Actions. Accepts a cell filter."""
    _install(session)
    _kerastack(session, "matrix")


@nox.session(python=PYTHON)
def tags(session: nox.Session) -> None:
    """Show every selected cell's tags and which of them move."""
    _install(session)
    _kerastack(session, "tags")


@nox.session(python=PYTHON)
def lock(session: nox.Session) -> None:
    """Resolve hash-pinned lock files per cell with uv (`-- --check` only verifies them)."""
    _install(session, "lock")
    _kerastack(session, "lock")


@nox.session(python=PYTHON)
def changes(session: nox.Session) -> None:
    """Per cell, the packages that changed since the previous TensorFlow release (`-- --manifest FILE` too)."""
    _install(session)
    _kerastack(session, "changes")


@nox.session(name="base-images", python=PYTHON)
def base_images(session: nox.Session) -> None:
    """Pull each Python's official base, or bootstrap it from Debian packages when offline."""
    _install(session)
    _kerastack(session, "base-images")


@nox.session(name="build-matrix", python=PYTHON)
def build_matrix(session: nox.Session) -> None:
    """Build the selected cells with buildx and write reports/build-report.{json,md}."""
    _install(session)
    _kerastack(session, "build")


@nox.session(python=PYTHON)
def reproduce(session: nox.Session) -> None:
    """Build the selected cells twice from scratch (clean `git archive` exports) and compare them layer by layer."""
    _install(session)
    _kerastack(session, "reproduce")


@nox.session(python=PYTHON)
def smoke(session: nox.Session) -> None:
    """Smoke-test the built images of the selected cells in real containers; one reports/smoke/<cell>.json each."""
    _install(session, "test")
    _kerastack(session, "smoke")


@nox.session(python=PYTHON)
def publish(session: nox.Session) -> None:
    """Push the cells that passed smoke tests in this run; move the moving tags last (`-- --dry-run`)."""
    _install(session)
    _kerastack(session, "publish")


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Launcher start->URL and the first TF import against Docker's floor: reports/bench.{json,md} (not run by default)."""
    _install(session)
    _kerastack(session, "bench")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """What `make test` runs: lint, unit tests, lock check, then integration tests on the real engine."""
    _install(session, "test", "lint", "lock")
    session.run("ruff", "check", ".")
    session.run("python", "-m", "kerastack", "engine")
    session.run("python", "-m", "kerastack", "lock", "--check")
    session.run("pytest", *(session.posargs or ["tests", "--durations=15"]))
