"""Fixtures of the pure unit tests: the real versions.toml (as text and parsed) and its matrix.

Names are prefixed `real_` so that they never shadow the session fixtures of tests/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def real_text() -> str:
    return (ROOT / "versions.toml").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def real_config(real_text):
    from kerastack import config

    return config.parse(real_text, "versions.toml")


@pytest.fixture(scope="session")
def real_cells(real_config):
    from kerastack import matrix

    return matrix.cells(real_config)


@pytest.fixture(scope="session")
def cells_by_id(real_cells):
    return {cell.id: cell for cell in real_cells}
