"""Publishing to a real registry (Debian's docker-registry on 127.0.0.1), and the launcher pulling from it.

The module builds its own gate input: it builds its two cells through the pipeline (cached layers make
that quick), writes their build report, and a smoke report per cell that names the built image as
tested. The smoke suite's own results are not involved, so a failure elsewhere cannot fail these tests
or publish under them (the gate itself is unit-tested, and walked end to end in test_smoke_gate.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from python_on_whales import docker

from tests.conftest import ROOT, build_with_gate_input
from tests.containers import container_gone, free_port, host_user_dir
from tests.jupyter import JupyterServer
from tests.registry import LocalRegistry
from tests.unit.conftest import SAMPLE

pytestmark = [pytest.mark.docker, pytest.mark.registry]
# Publish reads the matrix from a copy where the CPU variant is amd64 only (tests/unit/data/versions.toml): these
# cells are then single-platform stems, pushed directly. The multi-platform index is
# test_publish_multiplatform.py's (tiny images) and test_arm64.py's (the default cell, both platforms).
AMD64_ONLY = SAMPLE
CELLS = ["tf2.21.0-py3.11-cpu", "tf2.21.0-py3.13-cpu"]
REPOSITORY = os.environ.get("KERASTACK_REPOSITORY", "kerastack/keras-jupyter")  # where publish sends them (the options' KERASTACK_REPOSITORY)


def publish(registry: LocalRegistry, reports: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "kerastack",
        "--config",
        str(AMD64_ONLY),
        "--registry",
        registry.host,
        "publish",
        "--reports",
        str(reports),
        "--allow-dirty",
        "--allow-bootstrapped-base",
        *args,
    ]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})


def run_to_end(process: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


@pytest.fixture(scope="module")
def reports(tmp_path_factory, docker) -> Path:
    """A build report of CELLS, built now, and a smoke report per cell naming the built image as tested."""
    return build_with_gate_input(docker, CELLS, tmp_path_factory.mktemp("reports"), "tests/integration/test_publish_and_launch.py")


@pytest.fixture(scope="module")
def published(tmp_path_factory, reports):
    """Publish two cells, stopping the registry in the middle; then restart it and publish again."""
    store = tmp_path_factory.mktemp("registry")
    registry = LocalRegistry(store, port=free_port()).start()
    try:  # a setup that fails half-way must not leave the registry running
        process = publish(registry, reports, "--retries", "1", "--backoff", "0.2")
        first_lines = []
        for line in process.stdout:
            first_lines.append(line)
            if line.startswith("pushed ") and "(immutable)" in line:
                registry.stop()  # the registry goes away while the second cell is being pushed
                break
        rest, _ = process.communicate(timeout=600)
        interrupted = (process.returncode, "".join(first_lines) + rest)
        registry.start()  # same store, same port
        tags_after_failure = registry.tags(REPOSITORY)
        code, rerun_output = run_to_end(publish(registry, reports))
        yield {"registry": registry, "interrupted": interrupted, "tags_after_failure": tags_after_failure, "rerun": (code, rerun_output), "reports": reports}
    finally:
        registry.stop()
        registry.remove_local_tags()


def test_a_publish_cut_short_moves_no_tag(published):
    code, output = published["interrupted"]
    assert code != 0, output
    assert "pushed " in output and "failed after" in output, output
    tags = published["tags_after_failure"]
    assert not tags & {"latest", "2.21-cpu"}, f"moving tags moved on a partial publish: {tags}"
    assert any(t.startswith("2.21.0-py3.11-cpu-") for t in tags) or any(t.startswith("2.21.0-py3.13-cpu-") for t in tags)


def test_the_rerun_completes_the_publish(published):
    code, output = published["rerun"]
    assert code == 0, output
    assert "is already in the registry with this content" in output and "not pushing it again" in output
    tags = published["registry"].tags(REPOSITORY)
    built = json.loads((published["reports"] / "build-report.json").read_text())["cells"]
    expected = {t.rsplit(":", 1)[1] for c in built for t in c["tags"]} | {"latest", "2.21-cpu"}
    assert expected <= tags, expected - tags


def test_immutable_tags_go_first_and_moving_tags_last(published):
    _, output = published["rerun"]
    kinds = re.findall(r"^(?:pushed|moved) \S+ ?\(?(immutable|cell)?", output, flags=re.M)
    order = [k or "moving" for k in kinds]
    assert order == sorted(order, key=["immutable", "cell", "moving"].index), order
    assert order.count("moving") == 2


def test_moving_tags_point_at_the_newest_default_cell_and_digests_are_recorded(published):
    registry = published["registry"]
    report = json.loads((published["reports"] / "publish-report.json").read_text())
    default = report["cells"]["tf2.21.0-py3.11-cpu"]
    assert default["pushed"] and default["digest"].startswith("sha256:")
    assert registry.digest(REPOSITORY, "latest") == default["digest"]
    assert registry.digest(REPOSITORY, "2.21-cpu") == default["digest"]
    assert registry.digest(REPOSITORY, "2.21.0-py3.11-cpu") == default["digest"]
    assert report["moved"][f"{registry.host}/{REPOSITORY}:latest"] == default["digest"]


def test_an_existing_immutable_tag_is_never_overwritten(published, tmp_path):
    registry = published["registry"]
    reports = tmp_path / "reports"  # a copy: this run's publish report must not replace the shared one
    shutil.copytree(published["reports"], reports)
    built = json.loads((reports / "build-report.json").read_text())
    immutable = built["cells"][1]["tags"][0].rsplit(":", 1)[1]
    # Point the second cell's immutable tag at another image in the registry, then publish again.
    target = f"{registry.host}/{REPOSITORY}:{immutable}"
    docker.image.tag(built["cells"][0]["image_id"], target)
    try:
        docker.image.push(target, quiet=True)
        before = registry.digest(REPOSITORY, "latest")
        code, output = run_to_end(publish(registry, reports))
        assert code != 0 and "immutable tags never move" in output, output
        assert registry.digest(REPOSITORY, "latest") == before
        refused = json.loads((reports / "publish-report.json").read_text())["cells"][built["cells"][1]["cell"]]
        assert refused["pushed"] is False and "immutable tags never move" in refused["error"]
    finally:
        docker.image.tag(built["cells"][1]["image_id"], target)  # the local tag back on its own image


def test_pull_back_by_tag_and_by_digest(published):
    """Remove the local image (by this session's tags, never forced), then pull it back from the registry."""
    registry = published["registry"]
    cell = json.loads((published["reports"] / "publish-report.json").read_text())["cells"]["tf2.21.0-py3.13-cpu"]
    built = {c["cell"]: c for c in json.loads((published["reports"] / "build-report.json").read_text())["cells"]}
    image_id = built["tf2.21.0-py3.13-cpu"]["image_id"]
    local_tags = docker.image.inspect(image_id).repo_tags
    ours = [t for t in local_tags if t.startswith((f"{REPOSITORY}:", f"{registry.host}/", f"ghcr.io/{REPOSITORY}:"))]
    docker.image.remove(ours)
    if docker.image.exists(image_id):
        for tag in ours:
            docker.image.tag(image_id, tag)
        pytest.skip(f"{image_id[:19]} has tags or containers that are not this session's ({sorted(set(local_tags) - set(ours))}): they are left alone")
    try:
        by_tag = docker.image.pull(cell["tags"][1], quiet=True)
        assert by_tag.id == image_id
        docker.image.remove(cell["tags"][1])
        by_digest = docker.image.pull(f"{registry.host}/{REPOSITORY}@{cell['digest']}", quiet=True)
        assert by_digest.id == image_id
    finally:
        for tag in local_tags:  # restore the local cache the next run builds from
            docker.image.tag(image_id, tag)


# ---------------------------------------------------------------- the launcher pulls and runs

LAUNCH = [sys.executable, str(ROOT / "scripts" / "launch")]
READY = re.compile(r"Jupyter is ready: (http://localhost:(\d+)/lab\?token=(\w+))")


def test_launcher_pulls_the_latest_tag_into_an_engine_without_it_and_serves_the_folder(published, tmp_path):
    registry = published["registry"]
    image = f"{registry.host}/{REPOSITORY}"
    image_id = docker.image.inspect(f"{image}:latest").id
    local_tags = docker.image.inspect(image_id).repo_tags
    docker.image.remove(image_id, force=True)
    folder = tmp_path / "notebooks"
    folder.mkdir()
    (folder / "existing.txt").write_text("from the host")
    name = f"kerastack-e2e-{os.getpid()}"
    try:
        result = subprocess.run([*LAUNCH, "--repo", image, "--dir", str(folder), "--name", name, "--detach"], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        ready = READY.search(result.stdout + result.stderr)
        assert ready, result.stdout + result.stderr
        url, port, token = ready.groups()
        assert docker.image.inspect(f"{image}:latest").id == image_id, "the launcher did not pull the published image"
        assert "0.0.0.0" not in result.stdout
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
        jupyter = JupyterServer(f"http://127.0.0.1:{port}", token)
        status, contents = jupyter.request("GET", "/api/contents")
        assert status == 200 and "existing.txt" in {item["name"] for item in contents["content"]}
        assert jupyter.request("GET", "/api/contents", token=None)[0] == 403
        ports = docker.container.inspect(name).host_config.port_bindings
        assert all(binding.host_ip == "127.0.0.1" for bindings in ports.values() for binding in bindings)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        for tag in local_tags:
            if docker.image.exists(image_id):
                docker.image.tag(image_id, tag)


def test_launcher_stops_and_removes_the_container_on_ctrl_c(published, tmp_path):
    image = f"{published['registry'].host}/{REPOSITORY}:latest"
    name = f"kerastack-ctrlc-{os.getpid()}"
    process = subprocess.Popen(
        [*LAUNCH, "--image", image, "--pull", "missing", "--dir", str(tmp_path), "--name", name], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 180
        seen = []
        for line in process.stdout:
            seen.append(line)
            if READY.search(line) or time.monotonic() > deadline:
                break
        assert READY.search("".join(seen)), "".join(seen)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        assert not docker.container.exists(name)
    finally:
        process.kill()
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def test_make_run_serves_this_folder_and_stops_on_ctrl_c(tmp_path, docker_engine):
    """The README's main command, as a user runs it (as root, in a folder a normal user owns)."""
    folder, _ = host_user_dir(tmp_path)
    (folder / "mine.ipynb").write_text("{}")
    process = subprocess.Popen(
        ["make", "-s", "run", f"DIR={folder}"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        seen = []
        for line in process.stdout:
            seen.append(line)
            if READY.search(line):
                break
        ready = READY.search("".join(seen))
        assert ready, "".join(seen)
        _, port, token = ready.groups()
        status, contents = JupyterServer(f"http://127.0.0.1:{port}", token).request("GET", "/api/contents")
        assert status == 200 and "mine.ipynb" in {item["name"] for item in contents["content"]}
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in the terminal reaches make and the launcher
        process.wait(timeout=60)  # make itself reports the interrupt; the launcher stops the container
        assert container_gone(f"kerastack-{port}"), "Ctrl-C left the container running"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
