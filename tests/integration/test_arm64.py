"""The default CPU cell on both platforms, end to end on this amd64 machine (the arm64 image under QEMU):
published to a real registry (Debian's docker-registry on 127.0.0.1) as one index of linux/amd64 and
linux/arm64 under every tag, pulled back per platform, and served by the launcher with --platform linux/arm64.

Like test_publish_and_launch.py, the module writes its own gate input: both cells are built through the
pipeline (the smoke suite built them already in a full run: cached), and a smoke report per cell names
the built image as tested. The smoke suite's arm64 checks are tests/smoke/test_image.py's.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request

import pytest
from python_on_whales import docker

from tests.conftest import ROOT, build_with_gate_input, skip_unless_it_runs_here
from tests.containers import container_gone, free_port, host_user_dir
from tests.jupyter import JupyterServer
from tests.registry import LocalRegistry
from tests.terminal import Terminal

pytestmark = [pytest.mark.docker, pytest.mark.registry, pytest.mark.emulated]
CELLS = {"tf2.21.0-py3.11-cpu": "linux/amd64", "tf2.21.0-py3.11-cpu-arm64": "linux/arm64"}
STEM = "2.21.0-py3.11-cpu"
REPOSITORY = os.environ.get("KERASTACK_REPOSITORY", "kerastack/keras-jupyter")
LAUNCH = [sys.executable, str(ROOT / "scripts" / "launch")]
READY = re.compile(r"Jupyter is ready: (http://localhost:(\d+)/lab\?token=(\w+))")


@pytest.fixture(scope="module")
def reports(tmp_path_factory, docker):
    skip_unless_it_runs_here(docker, "linux/arm64")
    return build_with_gate_input(docker, CELLS, tmp_path_factory.mktemp("reports"), "tests/integration/test_arm64.py")


@pytest.fixture(scope="module")
def published(tmp_path_factory, reports):
    registry = LocalRegistry(tmp_path_factory.mktemp("registry"), port=free_port()).start()
    try:
        command = [sys.executable, "-m", "kerastack", "--registry", registry.host, "publish", "--report-dir", str(reports)]
        done = subprocess.run([*command, "--allow-dirty", "--allow-bootstrapped-base"], cwd=ROOT, capture_output=True, text=True, timeout=900)
        yield {"registry": registry, "code": done.returncode, "output": done.stdout + done.stderr, "reports": reports}
    finally:
        registry.stop()
        registry.remove_local_tags()


def raw(ref: str) -> dict:
    return json.loads(subprocess.run(["docker", "buildx", "imagetools", "inspect", "--raw", ref], capture_output=True, text=True, check=True).stdout)


def test_every_tag_of_the_default_cell_is_one_index_of_both_smoke_tested_platforms(published):
    assert published["code"] == 0, published["output"]
    registry = published["registry"]
    built = {c["cell"]: c for c in json.loads((published["reports"] / "build-report.json").read_text())["cells"]}
    immutable = built["tf2.21.0-py3.11-cpu"]["tags"][0].rsplit(":", 1)[1]
    index_digest = registry.digest(REPOSITORY, immutable)
    for tag in (immutable, STEM, "latest", "2.21-cpu"):
        ref = f"{registry.host}/{REPOSITORY}:{tag}"
        assert registry.digest(REPOSITORY, tag) == index_digest, f"{tag} is not the stem's index"
        listed = {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"] for m in raw(ref)["manifests"]}
        assert set(listed) == set(CELLS.values()), f"{tag}: {listed}"
        for cell, platform in CELLS.items():
            manifest = raw(f"{registry.host}/{REPOSITORY}@{listed[platform]}")
            assert manifest["config"]["digest"] == built[cell]["image_id"], f"{tag} {platform} is not the smoke-tested {cell}"


def test_pulling_the_arm64_image_gives_an_aarch64_container(published):
    ref = f"{published['registry'].host}/{REPOSITORY}:latest"
    pulled = docker.image.pull(ref, platform="linux/arm64", quiet=True)
    assert (pulled.os, pulled.architecture) == ("linux", "arm64")
    assert docker.run(ref, ["uname", "-m"], entrypoint="", platform="linux/arm64", remove=True).strip() == "aarch64"


def test_the_launcher_serves_jupyterlab_from_the_arm64_image_and_stops_on_ctrl_c(published, tmp_path):
    ref = f"{published['registry'].host}/{REPOSITORY}:{STEM}"
    name = f"kerastack-arm64-{os.getpid()}"
    folder, _ = host_user_dir(tmp_path)  # a non-root user's folder (pytest's own tmp folders are 0700)
    (folder / "mine.txt").write_text("from the host")
    terminal = Terminal([*LAUNCH, "--platform", "linux/arm64", "--image", ref, "--pull", "always", "--dir", str(folder), "--name", name])
    try:
        url, port, token = terminal.wait_for(READY, timeout=600).groups()
        assert docker.image.inspect(ref).architecture == "arm64", "the launcher pulled another platform's image"
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200 and "JupyterLab" in response.read().decode()
        jupyter = JupyterServer(f"http://127.0.0.1:{port}", token)
        status, contents = jupyter.request("GET", "/api/contents")
        assert status == 200 and "mine.txt" in {item["name"] for item in contents["content"]}
        result = jupyter.execute("import platform, keras; print(platform.machine(), keras.__version__)", timeout=300)
        assert result.status == "ok" and result.stdout.split()[0] == "aarch64", result.error or result.stdout
        terminal.signal_group(signal.SIGINT)
        code, output = terminal.finish(timeout=120)
        assert code == 0, output
        assert "emulation" in output, "the launcher says the image runs under emulation"
        assert container_gone(name), "Ctrl-C left the container running"
    finally:
        terminal.kill()
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def test_make_check_with_platform_arm64_pulls_that_platforms_image_of_the_published_index(published):
    """An arm64 user's Makefile path (`make run` and `make check` share it): `kerastack image`, with PLATFORM,
    pulls the linux/arm64 image of the published index by its digest and tags it as the arm64 local image
    (`-arm64`: an engine holds one image per tag), and the launcher's check runs it and says where it runs."""
    registry = published["registry"]
    local = f"{registry.host}/{REPOSITORY}:{STEM}-arm64"
    env = {**os.environ, "KERASTACK_REGISTRY": registry.host, "KERASTACK_REPOSITORY": REPOSITORY}
    command = ["make", "--no-print-directory", "check", "PLATFORM=linux/arm64"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"pulling {registry.host}/{REPOSITORY}:{STEM} for linux/arm64" in done.stderr
    pulled = docker.image.inspect(local)
    assert (pulled.os, pulled.architecture) == ("linux", "arm64")
    lines = done.stdout.splitlines()
    assert "TensorFlow:         2.21.0" in lines and "devices:            /physical_device:CPU:0" in lines
    assert "image platform:     linux/arm64 (aarch64 in the container)" in lines
    assert "host platform:      linux/amd64 (the Docker engine's)" in lines
    (emulation,) = [line for line in lines if line.startswith("emulation:")]
    assert "linux/arm64 image on a linux/amd64 host runs under QEMU emulation" in emulation and "slower" in emulation
    assert lines[-1].startswith("verdict: ✓")
