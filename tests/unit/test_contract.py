"""The image contract (kerastack/contract.py) and the places that must agree with it."""

from __future__ import annotations

import pytest

from kerastack import contract
from tests.conftest import load_launcher

# scripts/launch runs on its own (standard library only), so it carries copies of these values:
# (name in the launcher, the value the contract gives it).
LAUNCHER_COPIES = [
    ("CONTAINER_PORT", contract.PORT),
    ("DEFAULT_PORT", contract.PORT),
    ("MOUNT_POINT", contract.MOUNT_POINT),
    ("IMAGE_UID", contract.UID),
    ("VARIANT_LABEL", contract.VARIANT_LABEL),
    ("MIN_DRIVER_LABEL", contract.MIN_DRIVER_LABEL),
    ("CPU_TAG", contract.latest_tag("cpu")),
    ("GPU_TAG", contract.latest_tag("gpu")),
]


@pytest.fixture(scope="module")
def launcher():
    return load_launcher()


@pytest.mark.parametrize(("name", "expected"), LAUNCHER_COPIES, ids=[name for name, _ in LAUNCHER_COPIES])
def test_the_launcher_carries_the_contract(launcher, name, expected):
    assert getattr(launcher, name) == expected, f"scripts/launch {name} differs from kerastack/contract.py"
