"""scripts/launch --requirements with real containers and real PyPI packages, on the session's default CPU image.

The first run resolves a small pure-Python package and a compiled wheel against the image's own lock files,
writes the hash-pinned lock and builds the derived image (one layer); the second run starts Jupyter from it
with no resolve and no build. Conflicts and bad input are refused with nothing written. A second build of the
same lock, without the cache, gives the same layer.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from kerastack import contract
from tests.conftest import ROOT, load_launcher
from tests.containers import container_gone, docker, free_port
from tests.jupyter import JupyterServer

DEFAULT_CPU_CELL = "tf2.21.0-py3.11-cpu"
# Every test runs on the session's default CPU image (no GPU image is built for these).
pytestmark = [pytest.mark.docker, pytest.mark.parametrize("cell_id", [DEFAULT_CPU_CELL], scope="session")]

LAUNCH = [sys.executable, str(ROOT / "scripts" / "launch")]
READY = re.compile(r"Jupyter is ready: (http://localhost:(\d+)/lab\?token=(\w+))")
# Packages a scientific image is unlikely to hold; the first one the image lacks is used (the image may grow).
PURE_PYTHON = ("humanize", "tabulate", "sympy")  # small first: every minute of `make test` counts
COMPILED = ("pyarrow", "zstandard", "ujson")
VERSIONS = "from importlib import metadata as m; print(' '.join('%s=%s' % (d, m.version(d)) for d in ('tensorflow-cpu', 'numpy', 'keras')))"


def launch(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("JUPYTER_TOKEN", "KERASTACK_IMAGE", "KERASTACK_REQUIREMENTS")}
    return subprocess.run([*LAUNCH, *args], capture_output=True, text=True, timeout=timeout, env=env)


def manifest(image: str) -> dict:
    return json.loads(docker.run(image, [contract.MANIFEST_PATH], entrypoint="cat", remove=True))


def repo_tags(image: str) -> set[str]:
    """Every local tag of the image's repository: a refused run must not add one."""
    name = image.rsplit(":", 1)[0]
    return {tag for found in docker.image.list(name) for tag in found.repo_tags}


@dataclass
class Extended:
    parent: str
    parent_id: str
    requirements: Path
    packages: tuple[str, str]  # the pure-Python one, the compiled one
    first: subprocess.CompletedProcess
    first_seconds: float
    tag: str
    held: dict[str, str]  # the parent's Python packages


@pytest.fixture(scope="module")
def launcher():
    return load_launcher()


@pytest.fixture(scope="module")
def extended(cell_image, launcher, tmp_path_factory):
    held = {p["name"]: p["version"] for p in manifest(cell_image)["python_packages"]}
    packages = (next(p for p in PURE_PYTHON if p not in held), next(p for p in COMPILED if p not in held))
    folder = tmp_path_factory.mktemp("own-packages")
    requirements = folder / "requirements.txt"
    requirements.write_text(f"# my packages\n{packages[0]}\n{packages[1]}  # a compiled wheel\n")
    started = time.monotonic()
    first = launch("--check", "--image", cell_image, "--pull", "never", "--requirements", str(requirements))
    seconds = time.monotonic() - started
    lock = Path(str(requirements) + ".lock")
    tag = launcher.derived_tag(cell_image, launcher.sha256_hex(lock.read_bytes())) if lock.exists() else None
    try:
        yield Extended(cell_image, docker.image.inspect(cell_image).id, requirements, packages, first, seconds, tag or "", held)
    finally:
        if tag and docker.image.exists(tag):
            docker.image.remove(tag, force=True)


def test_the_first_run_resolves_a_hash_pinned_lock_and_builds_one_layer(extended, launcher):
    first = extended.first
    assert first.returncode == 0, first.stdout + first.stderr
    assert "resolving requirements.txt" in first.stderr and "building " in first.stderr
    lock = launcher.parse_lock((extended.requirements.parent / "requirements.txt.lock").read_text())
    names = [name for name, _ in lock.packages()]
    assert set(extended.packages) <= set(names), lock.text
    assert not set(names) & set(extended.held), "the lock re-pins packages the image already holds"
    assert lock.body.count("--hash=sha256:") == len(names)
    assert lock.header["image-id"] == extended.parent_id
    derived, parent = docker.image.inspect(extended.tag), docker.image.inspect(extended.parent)
    assert derived.root_fs.layers[:-1] == parent.root_fs.layers, "not one layer on top of the image"
    labels = derived.config.labels
    assert labels[contract.EXTENDS_LABEL] == extended.parent_id
    assert labels[contract.EXTRAS_LOCK_LABEL] == "sha256:" + lock.sha256
    assert derived.config.user == parent.config.user == contract.USER
    # --check lists the extra packages; the manifest next to the image's own lists them too
    extras = next(line for line in first.stdout.splitlines() if line.startswith("extra packages:"))
    assert all(name in extras for name in extended.packages), first.stdout
    extra_manifest = json.loads(docker.run(extended.tag, [contract.EXTRAS_MANIFEST_PATH], entrypoint="cat", remove=True))
    assert {p["name"] for p in extra_manifest["python_packages"]} == set(names)
    assert extra_manifest["parent"]["id"] == extended.parent_id and extra_manifest["lock_sha256"] == lock.sha256
    # TensorFlow, numpy and Keras keep their versions
    assert docker.run(extended.tag, ["-c", VERSIONS], entrypoint="python", remove=True) == docker.run(
        extended.parent, ["-c", VERSIONS], entrypoint="python", remove=True
    )


def test_the_second_run_neither_resolves_nor_builds_and_serves_jupyter_with_the_packages(extended, tmp_path):
    assert extended.first.returncode == 0, extended.first.stderr
    image_id = docker.image.inspect(extended.tag).id
    name = f"kerastack-reqs-{os.getpid()}"
    started = time.monotonic()
    try:
        second = launch(
            "--image", extended.parent, "--pull", "never", "--requirements", str(extended.requirements),
            "--dir", str(tmp_path), "--name", name, "--port", str(free_port()), "--detach",
        )  # fmt: skip
        seconds = time.monotonic() - started
        assert second.returncode == 0, second.stdout + second.stderr
        assert "no resolve, no build" in second.stderr, second.stderr
        assert "resolving" not in second.stderr and "building" not in second.stderr, second.stderr
        assert docker.image.inspect(extended.tag).id == image_id
        assert docker.container.inspect(name).config.image == extended.tag
        _, port, token = READY.search(second.stdout).groups()
        pure, compiled = extended.packages
        result = JupyterServer(f"http://127.0.0.1:{port}", token).execute(
            f"import {pure}, {compiled}, numpy, tensorflow\nprint({pure}.__name__, {compiled}.__version__, numpy.__version__, tensorflow.__version__)"
        )
        assert result.status == "ok", result.error
        assert result.stdout.split() == [pure, extended_version(extended, compiled), extended.held["numpy"], extended.held["tensorflow-cpu"]]
        print(f"\nfirst run (resolve + build): {extended.first_seconds:.1f} s; second run (ready URL): {seconds:.1f} s", file=sys.stderr)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        container_gone(name)


def extended_version(extended: Extended, name: str) -> str:
    lock = (extended.requirements.parent / "requirements.txt.lock").read_text()
    return re.search(rf"^{re.escape(name)}==(\S+)", lock, flags=re.M).group(1)


def test_two_builds_of_one_lock_give_the_same_layer(extended, launcher):
    assert extended.first.returncode == 0, extended.first.stderr
    lock = launcher.parse_lock((extended.requirements.parent / "requirements.txt.lock").read_text())
    again = extended.tag + "-again"
    parent = json.loads(subprocess.run(["docker", "image", "inspect", "--format", "{{json .}}", extended.parent], capture_output=True, text=True).stdout)
    try:
        launcher.build_derived(again, extended.parent, parent, lock, launcher.find_ca_bundle(os.environ), no_cache=True)
        assert docker.image.inspect(again).root_fs.layers == docker.image.inspect(extended.tag).root_fs.layers
    finally:
        if docker.image.exists(again):
            docker.image.remove(again, force=True)


# ----------------------------------------------------------------------------- refusals: one message, exit 2, nothing written


def refused(folder: Path, image: str, text: str, *extra: str) -> subprocess.CompletedProcess:
    requirements = folder / "requirements.txt"
    requirements.write_text(text)
    before = repo_tags(image)
    result = launch("--check", "--image", image, "--pull", "never", "--requirements", str(requirements), *extra, timeout=900)
    assert result.returncode == 2, result.stdout + result.stderr
    assert repo_tags(image) == before, "a refused run tagged an image"
    return result


def test_a_conflict_with_the_image_is_one_message_and_leaves_nothing(cell_image, tmp_path):
    numpy = {p["name"]: p["version"] for p in manifest(cell_image)["python_packages"]}["numpy"]
    result = refused(tmp_path, cell_image, "humanize\nnumpy<2\n")
    error = [line for line in result.stderr.splitlines() if "numpy" in line]
    assert error == [f"  requirements.txt line 2: numpy<2 asked, but the image holds numpy {numpy} (lock group tensorflow)"], result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["requirements.txt"]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("humanize\nthis-package-does-not-exist-kerastack\n", ["line 2", "no package this-package-does-not-exist-kerastack"]),
        ("humanize\nfoo; python_version >< '3'\n", ["line 2", "is not a valid requirement"]),  # caught by the image's own packaging
        ("humanize\n-e .\n", ["line 2", "-e is refused"]),
        ("--index-url https://example.org/simple\nhumanize\n", ["line 1", "--allow-index-options"]),
    ],
    ids=["no-such-package", "marker-syntax", "editable", "index-url"],
)
def test_bad_input_is_refused_with_its_line_and_nothing_written(cell_image, tmp_path, text, words):
    result = refused(tmp_path, cell_image, text)
    for word in words:
        assert word in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["requirements.txt"]


def test_an_edited_lock_is_refused_and_a_stale_one_resolved_again(extended, tmp_path):
    assert extended.first.returncode == 0, extended.first.stderr
    lock_text = (extended.requirements.parent / "requirements.txt.lock").read_text()
    edited = re.sub(r"(--hash=sha256:)([0-9a-f])", lambda m: m.group(1) + ("1" if m.group(2) == "0" else "0"), lock_text, count=1)
    assert edited != lock_text
    (tmp_path / "requirements.txt.lock").write_text(edited)
    result = refused(tmp_path, extended.parent, extended.requirements.read_text())
    assert "was edited" in result.stderr, result.stderr
    # Stale: FILE changed. A dry run says it would resolve again, and writes nothing.
    (tmp_path / "requirements.txt.lock").write_text(lock_text)
    (tmp_path / "requirements.txt").write_text(extended.requirements.read_text() + "tabulate\n")
    dry = launch("--dry-run", "--image", extended.parent, "--pull", "never", "--requirements", str(tmp_path / "requirements.txt"), "--dir", str(tmp_path))
    assert dry.returncode == 0, dry.stderr
    assert "requirements.txt changed since requirements.txt.lock was written" in dry.stderr and "would resolve" in dry.stderr
    assert (tmp_path / "requirements.txt.lock").read_text() == lock_text
