"""Stop and restart the Docker engine the suite uses, for the tests that walk a cold machine's path.

Only these tests stop the engine, and only when STOP_ENGINE_GATE is set; they never stop it while a
container runs (stopping the engine would stop it too, and it is not theirs); whatever happens they
start it again (scripts/install-docker.sh, the same script a newcomer's `make run` uses). On a shared
machine run them under `flock -x` on the lock the other Docker users hold shared.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTALL_DOCKER = ROOT / "scripts" / "install-docker.sh"
# Set to 1 where stopping the engine harms no one (CI's own machine): the tests that do skip otherwise.
STOP_ENGINE_GATE = "KERASTACK_TEST_STOP_ENGINE"


def engine_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, stdin=subprocess.DEVNULL, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def dockerd_pids() -> list[int]:
    found = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def _under_systemd() -> bool:
    return Path("/run/systemd/system").is_dir() and subprocess.run(["systemctl", "is-active", "--quiet", "docker"]).returncode == 0


def running_containers() -> list[str]:
    """`id name (image)` of every running container (what `docker ps -q` lists); fails when the engine cannot say."""
    try:
        listed = subprocess.run(
            ["docker", "ps", "--format", "{{.ID}} {{.Names}} ({{.Image}})"], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30
        )
    except subprocess.TimeoutExpired:
        raise AssertionError("`docker ps` did not answer within 30 s: refusing to stop an engine whose containers are unknown") from None
    if listed.returncode != 0:
        raise AssertionError(f"`docker ps` failed, refusing to stop an engine whose containers are unknown: {listed.stderr.strip()}")
    return listed.stdout.splitlines()


def refuse_if_containers_run() -> None:
    """Fail, naming them, while any container runs: the caller started none, so they are someone else's."""
    if others := running_containers():
        raise AssertionError(
            "refusing to stop the Docker engine: it would stop these running containers, which this test did not start:\n  "
            + "\n  ".join(others)
            + "\nstop them first, or run this test where nothing else uses the engine"
        )


def stop_engine(timeout: float = 90) -> None:
    """Stop dockerd the way an operator would (systemd, or SIGTERM to the daemon) and wait until it is gone.

    Refuses while any container runs: callers start none before, so each one would be someone else's."""
    if not engine_answers() and not dockerd_pids():
        return  # nothing runs, so no container either: already the state the caller wants
    refuse_if_containers_run()
    if _under_systemd():
        subprocess.run(["systemctl", "stop", "docker.socket", "docker"], check=True)
    else:
        for pid in dockerd_pids():
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while engine_answers() or dockerd_pids():
        if time.monotonic() > deadline:
            raise AssertionError(f"dockerd did not stop within {timeout:.0f} s (pids {dockerd_pids()})")
        time.sleep(0.5)


def start_engine() -> None:
    """Start the engine again if it is not answering (a no-op when the test under way already did)."""
    if engine_answers():
        return
    subprocess.run(["bash", str(INSTALL_DOCKER)], stdin=subprocess.DEVNULL, check=True, timeout=300)
    assert engine_answers(), "scripts/install-docker.sh ran but the engine does not answer"
