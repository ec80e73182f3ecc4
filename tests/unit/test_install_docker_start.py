"""scripts/install-docker.sh starting dockerd where there is no init system, with stub commands on PATH
(docker, dockerd, pgrep, id) so nothing on this machine is touched.

dockerd gives the containerd it starts 15 s, then exits with "timeout waiting for containerd to
start"; CI's fresh machine once missed that on the first start. The script tries again, a bounded number
of times, and stops at once on any other failure."""

from __future__ import annotations

import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "install-docker.sh"

# The stub dockerd fails (as dockerd does when containerd is slow) until the given attempt, then "runs":
# it leaves a marker that the stub docker and pgrep read, and exits, so no process outlives the test.
STUBS = {
    "dockerd": """#!/bin/bash
n=$(( $(cat "$STATE/attempts" 2>/dev/null || echo 0) + 1 )); echo "$n" > "$STATE/attempts"
if (( n < ${SUCCEED_ON:-1} )); then echo "failed to start containerd: ${FAILURE:-timeout waiting for containerd to start}"; exit 1; fi
touch "$STATE/up"
""",
    "docker": """#!/bin/bash
case "$1" in
  info) [[ -e "$STATE/up" ]] ;;
  buildx) echo "github.com/docker/buildx 0.13.1" ;;
  version) echo "engine 20.10.24, client 20.10.24" ;;
  *) exit 0 ;;
esac
""",
    "pgrep": """#!/bin/bash
[[ "$*" == "-x dockerd" && -e "$STATE/up" ]]
""",
    "id": """#!/bin/bash
echo 0
""",
    "apt-get": "#!/bin/bash\nexit 0\n",
}


@pytest.fixture
def run_script(tmp_path):
    if pathlib.Path("/run/systemd/system").is_dir():
        pytest.skip("this host runs systemd, where the script starts docker with systemctl, not by itself")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in STUBS.items():
        stub = bin_dir / name
        stub.write_text(text)
        stub.chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    log = tmp_path / "dockerd.log"

    def run(**env: str) -> tuple[subprocess.CompletedProcess[str], int, str]:
        result = subprocess.run(
            ["bash", str(SCRIPT)],
            env={"PATH": f"{bin_dir}:/usr/bin:/bin", "STATE": str(state), "DOCKERD_LOG": str(log), **env},
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        attempts = int((state / "attempts").read_text()) if (state / "attempts").exists() else 0
        return result, attempts, log.read_text() if log.exists() else ""

    return run


def test_a_dockerd_that_starts_at_once_is_started_once(run_script):
    result, attempts, _ = run_script(SUCCEED_ON="1")
    assert result.returncode == 0, result.stderr
    assert attempts == 1
    assert result.stdout == ""
    assert "ok: engine 20.10.24" in result.stderr


def test_containerd_missing_dockerds_start_window_is_tried_again(run_script):
    result, attempts, log = run_script(SUCCEED_ON="2")
    assert result.returncode == 0, result.stderr
    assert attempts == 2
    assert "dockerd gave up waiting for its containerd (attempt 1 of 3)" in result.stderr
    assert "starting dockerd again (attempt 2 of 3)" in result.stderr
    assert log.count("timeout waiting for containerd to start") == 1


def test_containerd_that_never_comes_up_is_an_error_after_three_tries(run_script):
    result, attempts, _ = run_script(SUCCEED_ON="99")
    assert result.returncode != 0
    assert attempts == 3
    assert "dockerd could not start containerd in 3 attempts" in result.stderr


def test_any_other_dockerd_failure_is_an_error_at_once(run_script):
    result, attempts, _ = run_script(SUCCEED_ON="99", FAILURE="permission denied")
    assert result.returncode != 0
    assert attempts == 1
    assert "dockerd exited while starting" in result.stderr
    assert "permission denied" in result.stderr  # the log's tail says why
