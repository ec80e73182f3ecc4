"""The toolkit every image promises: the scientific Python stack, the OS tools, and its own manifest and locks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from python_on_whales import docker

from kerastack.contract import LOCK_GROUPS as GROUPS
from kerastack.contract import LOCKS_PATH as IN_IMAGE_LOCKS
from kerastack.contract import MANIFEST_PATH as IN_IMAGE_PATH

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
SCIENCE_IMPORTS = ("numpy", "pandas", "scipy", "sklearn", "matplotlib", "seaborn", "PIL", "h5py", "tqdm", "ipywidgets")
OS_TOOLS = ("git --version", "curl --version", "wget --version", "less --version", "nano --version", "ps --version", "top -b -n 1")


def run(image: str, command: list[str]) -> str:
    return docker.run(image, command, remove=True, entrypoint="")


def test_the_science_stack_imports(cell_id, cell_image):
    code = f"import {', '.join(SCIENCE_IMPORTS)}; print('ok', pandas.__version__, sklearn.__version__)"
    out = run(cell_image, ["python", "-c", code])
    assert out.strip().startswith("ok "), f"{cell_id}: {out}"


def test_the_os_tools_run_as_keras(cell_id, cell_image):
    out = run(cell_image, ["bash", "-c", " && ".join(f"{tool} >/dev/null" for tool in OS_TOOLS) + " && echo all-there"])
    assert out.strip().endswith("all-there"), f"{cell_id}: {out}"


def test_the_image_carries_its_manifest_matching_versions_toml(cell_id, cell, cell_image, project_config):
    manifest = json.loads(run(cell_image, ["cat", IN_IMAGE_PATH]))
    release = project_config.tensorflow[cell.tensorflow]
    assert (manifest["cell"], manifest["variant"]) == (cell_id, cell.variant)
    versions = manifest["versions"]
    assert (versions["tensorflow"], versions["keras"]) == (str(release.version), str(release.keras)), cell_id
    assert versions["python"].startswith(f"{cell.python}."), cell_id
    if cell.cuda:
        assert versions["cuda_runtime"] == project_config.cuda[cell.cuda].runtime_version, cell_id
    assert {"git", "wget", "curl", "less", "nano", "procps"} <= {p["name"] for p in manifest["debian_packages"]}, cell_id
    assert manifest["base_image"] == docker.image.inspect(cell_image).config.labels["org.opencontainers.image.base.name"]


def test_the_manifest_lists_exactly_the_locked_packages(cell_id, cell_image):
    manifest = json.loads(run(cell_image, ["cat", IN_IMAGE_PATH]))
    locked = json.loads((ROOT / "locks" / cell_id / "lock.json").read_text())["groups"]
    installed = {g: {p["name"]: p["version"] for p in manifest["python_packages"] if p["group"] == g} for g in GROUPS}
    assert installed == locked, cell_id


def test_the_image_carries_its_lock_files(cell_id, cell_image):
    for name in (*(f"{g}.txt" for g in GROUPS), "lock.json"):
        inside = run(cell_image, ["cat", f"{IN_IMAGE_LOCKS}/{name}"])
        assert inside.strip() == (ROOT / "locks" / cell_id / name).read_text().strip(), f"{cell_id}: {name} differs from locks/"
