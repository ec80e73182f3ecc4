"""The toolkit every image promises: the scientific Python stack, the OS tools, and its own manifest and locks.

Every check reads one JSON report that a single container per cell prints (`toolkit`): starting a
container costs more than all the checks together, and none of them changes the image.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from python_on_whales import docker

from kerastack.contract import LOCKS_PATH, MANIFEST_PATH, USER
from kerastack.lock_plan import GROUPS

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
SCIENCE_IMPORTS = ("numpy", "pandas", "scipy", "sklearn", "matplotlib", "seaborn", "PIL", "h5py", "tqdm", "ipywidgets")
OS_TOOLS = ("git --version", "curl --version", "wget --version", "less --version", "nano --version", "ps --version", "top -b -n 1")
LOCK_FILES = (*(f"{g}.txt" for g in GROUPS), "lock.json")

# Runs in the image as its default user. Each check runs in its own process (a fresh interpreter for the
# imports, bash for the tools, as a user's shell would), so one failing check still leaves a report for
# the others; files are passed on as text, so a broken manifest fails only the tests that parse it.
REPORT = r"""
import json, pathlib, pwd, os, subprocess, sys

def read(path):
    try:
        return pathlib.Path(path).read_text()
    except OSError:
        return None

def run(command):
    done = subprocess.run(command, capture_output=True, text=True)
    return {"code": done.returncode, "output": done.stdout + done.stderr}

science, os_tools, manifest_path, locks_path, lock_files = json.loads(sys.argv[1])
print(json.dumps({
    "user": pwd.getpwuid(os.getuid()).pw_name,
    "science": run([sys.executable, "-c", science]),
    "os_tools": run(["bash", "-c", os_tools]),
    "manifest": read(manifest_path),
    "locks": {name: read(f"{locks_path}/{name}") for name in lock_files},
}))
"""
SCIENCE_CHECK = f"import {', '.join(SCIENCE_IMPORTS)}; print('ok', pandas.__version__, sklearn.__version__)"
OS_TOOLS_CHECK = " && ".join(f"{tool} >/dev/null" for tool in OS_TOOLS) + " && echo all-there"


@pytest.fixture(scope="module")
def toolkit(cell_image) -> dict:
    """What the cell's image holds and runs, from one container (the module is re-set-up per cell)."""
    arguments = json.dumps([SCIENCE_CHECK, OS_TOOLS_CHECK, MANIFEST_PATH, LOCKS_PATH, LOCK_FILES])
    out = docker.run(cell_image, ["python", "-c", REPORT, arguments], remove=True, entrypoint="")
    return json.loads(out.strip().splitlines()[-1])


def manifest_of(toolkit: dict, cell_id: str) -> dict:
    assert toolkit["manifest"] is not None, f"{cell_id}: the image has no {MANIFEST_PATH}"
    return json.loads(toolkit["manifest"])


def test_the_science_stack_imports(cell_id, toolkit):
    out = toolkit["science"]["output"]
    assert toolkit["science"]["code"] == 0, f"{cell_id}: {out}"
    assert out.strip().startswith("ok "), f"{cell_id}: {out}"


def test_the_os_tools_run_as_keras(cell_id, toolkit):
    assert toolkit["user"] == USER, cell_id
    out = toolkit["os_tools"]["output"]
    assert out.strip().endswith("all-there"), f"{cell_id}: {out}"


def test_the_image_carries_its_manifest_matching_versions_toml(cell_id, cell, cell_image, project_config, toolkit):
    manifest = manifest_of(toolkit, cell_id)
    release = project_config.tensorflow[cell.tensorflow]
    assert (manifest["cell"], manifest["variant"]) == (cell_id, cell.variant)
    versions = manifest["versions"]
    assert (versions["tensorflow"], versions["keras"]) == (str(release.version), str(release.keras)), cell_id
    assert versions["python"].startswith(f"{cell.python}."), cell_id
    if cell.cuda:
        assert versions["cuda_runtime"] == project_config.cuda[cell.cuda].runtime_version, cell_id
    assert {"git", "wget", "curl", "less", "nano", "procps"} <= {p["name"] for p in manifest["debian_packages"]}, cell_id
    assert manifest["base_image"] == docker.image.inspect(cell_image).config.labels["org.opencontainers.image.base.name"]


def test_the_manifest_lists_exactly_the_locked_packages(cell_id, toolkit):
    manifest = manifest_of(toolkit, cell_id)
    locked = json.loads((ROOT / "locks" / cell_id / "lock.json").read_text())["groups"]
    installed = {g: {p["name"]: p["version"] for p in manifest["python_packages"] if p["group"] == g} for g in GROUPS}
    assert installed == locked, cell_id


def test_the_image_carries_its_lock_files(cell_id, toolkit):
    for name in LOCK_FILES:
        inside = toolkit["locks"][name]
        assert inside is not None, f"{cell_id}: the image has no {LOCKS_PATH}/{name}"
        assert inside.strip() == (ROOT / "locks" / cell_id / name).read_text().strip(), f"{cell_id}: {name} differs from locks/"
