"""Fixtures of the pure unit tests: their own test data under tests/unit/data, never the live matrix.

- `sample_*`: tests/unit/data/versions.toml, a frozen copy of the project's versions.toml (9 cells), as text,
  parsed, and as its matrix. Edits of the real versions.toml do not reach these tests.
- `locked_project`: a copy of tests/unit/data/locked (a four-cell versions.toml with valid locks/) in a
  temporary folder, for tests that need lock files.

Only tests/unit/test_real_versions_file.py reads the real versions.toml and locks/. Names are prefixed
`sample_` / `locked_` so that they never shadow the session fixtures of tests/conftest.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
SAMPLE = DATA / "versions.toml"
LOCKED = DATA / "locked"


@pytest.fixture(scope="session")
def sample_text() -> str:
    return SAMPLE.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def sample_config(sample_text):
    from kerastack import config

    return config.parse(sample_text, "versions.toml")


@pytest.fixture(scope="session")
def sample_cells(sample_config):
    from kerastack import matrix

    return matrix.cells(sample_config)


@pytest.fixture(scope="session")
def sample_cells_by_id(sample_cells):
    return {cell.id: cell for cell in sample_cells}


@pytest.fixture
def locked_project(tmp_path) -> Path:
    """A writable copy of tests/unit/data/locked: versions.toml (tf2.20.0-py3.11-cpu, tf2.21.0-py3.11-cpu, -cpu-arm64, -gpu-cuda12.5)
    and locks/ (the arm64 cell's shared groups are relative links, copied as links)."""
    project = tmp_path / "locked"
    shutil.copytree(LOCKED, project, symlinks=True)  # shared lock groups are relative links
    return project


def uv_output(cell_id: str) -> str:
    """A locked cell of tests/unit/data/locked as `uv pip compile` writes it, with `# via` notes that give the same
    split into groups: what a stand-in resolver replays, so that a relock writes the same files."""
    import json

    from kerastack import lock_plan

    meta = json.loads((LOCKED / "locks" / cell_id / "lock.json").read_text())
    roots = {*meta["inputs"]["group_roots"]}
    parent = {"tensorflow": meta["inputs"]["group_roots"][0], "science": "pandas"}
    text = ""
    for group in lock_plan.GROUPS:
        for pin in lock_plan.parse_compiled((LOCKED / "locks" / cell_id / f"{group}.txt").read_text()):
            is_root = pin.name in roots or pin.name == parent.get(group) or group not in parent
            text += pin.render() + f"\n    # via {'-r requirements.in' if is_root else parent[group]}\n"
    return text


# ---------------------------------------------------------------- the launcher (scripts/launch)
# Shared by test_launch.py and test_launch_hosts.py; stdlib and pytest only, so they also run on the
# macOS and Windows runners, which install nothing else.
LAUNCHER_TOKEN = "tok-" + "ab12" * 10


@pytest.fixture(scope="module")
def launch():
    """scripts/launch loaded as a module (one copy per test module: tests monkeypatch it)."""
    from tests.conftest import load_launcher

    return load_launcher()


@pytest.fixture
def opts(launch, tmp_path):
    """Options as the default command line gives them, for a temporary folder and a fixed token."""
    return launch.parse_args(["--dir", str(tmp_path)], environ={}, token_factory=lambda: LAUNCHER_TOKEN)
