"""The image contract (kerastack/contract.py) and the places that must agree with it."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re

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
    ("LAYER_EPOCH", contract.LAYER_EPOCH),
    ("LOCKS_PATH", contract.LOCKS_PATH),
    ("EXTRAS_MANIFEST_PATH", contract.EXTRAS_MANIFEST_PATH),
    ("EXTENDS_LABEL", contract.EXTENDS_LABEL),
    ("EXTENDS_REF_LABEL", contract.EXTENDS_REF_LABEL),
    ("EXTENDS_DIGEST_LABEL", contract.EXTENDS_DIGEST_LABEL),
    ("EXTRAS_LOCK_LABEL", contract.EXTRAS_LOCK_LABEL),
    ("EXTRAS_LABEL", contract.EXTRAS_LABEL),
]


@pytest.fixture(scope="module")
def launcher():
    return load_launcher()


@pytest.mark.parametrize(("name", "expected"), LAUNCHER_COPIES, ids=[name for name, _ in LAUNCHER_COPIES])
def test_the_launcher_carries_the_contract(launcher, name, expected):
    assert getattr(launcher, name) == expected, f"scripts/launch {name} differs from kerastack/contract.py"


# ---------------------------------------------------------------- the Dockerfile and the build-time scripts

ROOT = load_launcher.__globals__["ROOT"]
DOCKERFILE = (ROOT / "images" / "Dockerfile").read_text()
BUILDER = ROOT / "images" / "builder"


def test_the_dockerfile_takes_every_contract_value_as_a_build_argument_without_a_default():
    for name in contract.build_args():
        declared = re.findall(rf"^ARG {name}(=.*)?$", DOCKERFILE, flags=re.M)
        assert declared, f"images/Dockerfile never declares ARG {name}"
        assert all(default == "" for default in declared), f"ARG {name} has a default in images/Dockerfile: the contract gives it"


@pytest.mark.parametrize("literal", [str(contract.LAYER_EPOCH), f"--uid {contract.UID}", f"EXPOSE {contract.PORT}", f"WORKDIR {contract.MOUNT_POINT}"])
def test_the_dockerfile_has_no_copy_of_a_contract_value(literal):
    assert literal not in DOCKERFILE, f"images/Dockerfile writes {literal!r} itself instead of taking it from kerastack/contract.py"


def test_the_dockerfile_has_one_stage_per_lock_group_and_adds_them_in_the_contract_order():
    stages = re.findall(r"^FROM \S+ AS (\S+)-libs$", DOCKERFILE, flags=re.M)
    assert [s for s in stages if s in contract.LOCK_GROUPS] == list(contract.LOCK_GROUPS)
    added = re.findall(r"--mount=type=bind,from=(\w+)-libs,source=/opt/layer,target=/mnt", DOCKERFILE)
    assert added == list(contract.LOCK_GROUPS), f"layers are added in the order {added}, the contract says {contract.LOCK_GROUPS}"
    in_manifest = re.findall(r"from=(\w+)-libs,source=/opt/layer,target=/opt/groups/(\w+)", DOCKERFILE)
    assert [g for g, _ in in_manifest] == [t for _, t in in_manifest] == list(contract.LOCK_GROUPS)


def test_the_manifest_stage_copies_every_lock_file_by_name():
    """By name, so a group shared with another platform's cell (a link to its file) arrives as the file."""
    copies = re.findall(r"^COPY (\$\{LOCK_DIR\}/.*?) /tmp/lock/$", DOCKERFILE.replace("\\\n", " "), flags=re.M)
    (copy,) = [c for c in copies if "lock.json" in c]
    names = [word.removeprefix("${LOCK_DIR}/") for word in copy.split()]
    assert names == ["lock.json", f"{contract.VENV_GROUP}.txt", *(f"{group}.txt" for group in contract.LOCK_GROUPS)]


def test_the_venv_stage_path_is_the_contract_venv():
    assert f"from=venv,source={contract.VENV},target=/mnt" in DOCKERFILE


def test_the_build_time_scripts_take_the_groups_and_the_layer_time_from_the_build():
    assert 'os.environ.get("LOCK_GROUPS"' in (BUILDER / "write-manifest").read_text()
    for script in ("clamp-mtimes", "install-lock-group"):
        text = (BUILDER / script).read_text()
        assert "LAYER_EPOCH:?" in text and str(contract.LAYER_EPOCH) not in text, f"images/builder/{script} keeps its own layer time"


def test_write_manifest_normalises_names_like_packaging():
    from packaging.utils import canonicalize_name

    loader = importlib.machinery.SourceFileLoader("write_manifest", str(BUILDER / "write-manifest"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    for name in ("Jupyter_Server", "ruamel.yaml", "zope..interface", "A-_.B", "nvidia-cuda-runtime-cu12"):
        assert module.normalise(name) == canonicalize_name(name)


def test_the_release_workflow_takes_the_repository_name_from_the_contract():
    release = (ROOT / ".github" / "workflows" / "release.yml").read_text()
    assert "python -m kerastack contract REPOSITORY_NAME" in release
    assert "/keras-jupyter" not in release
