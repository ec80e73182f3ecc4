"""The launcher against the real image: every way out removes the container and says what happened."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from python_on_whales import docker

from tests.conftest import ROOT

pytestmark = [pytest.mark.docker]
DEFAULT_CPU_CELL = "tf2.21.0-py3.11-cpu"
READY = re.compile(r"Jupyter is ready: http://localhost:\d+/lab\?token=\w+")


class Launched:
    """The launcher in the foreground, as a terminal runs it (its own process group, no stdin)."""

    def __init__(self, image: str, folder, name: str) -> None:
        command = [sys.executable, str(ROOT / "scripts" / "launch"), "--image", image, "--pull", "never", "--dir", str(folder), "--name", name]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            self.seen.append(line)
            if READY.search(line):
                return
        raise AssertionError("no URL:\n" + "".join(self.seen))

    def finish(self, timeout: float = 90) -> tuple[int, str]:
        code = self.process.wait(timeout=timeout)
        while (line := self.lines.get(timeout=30)) is not None:
            self.seen.append(line)
        return code, "".join(self.seen)


@pytest.fixture
def name():
    container = f"kerastack-exits-{os.getpid()}-{time.monotonic_ns() % 100000}"
    yield container
    subprocess.run(["docker", "rm", "-f", container], capture_output=True)


def gone(container: str, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while docker.container.exists(container):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)
    return True


@pytest.mark.parametrize("cell_id", [DEFAULT_CPU_CELL], scope="session")
def test_sighup_stops_and_removes_the_container(cell_image, tmp_path, name):
    launched = Launched(cell_image, tmp_path, name)
    launched.wait_ready()
    os.killpg(launched.process.pid, signal.SIGHUP)  # the terminal was closed
    code, output = launched.finish()
    assert code == 0, output
    assert f"Stopped; the container {name} is removed." in output
    assert gone(name), "SIGHUP left the container running"


@pytest.mark.parametrize("cell_id", [DEFAULT_CPU_CELL], scope="session")
def test_a_container_that_vanishes_is_an_error_that_says_so(cell_image, tmp_path, name):
    launched = Launched(cell_image, tmp_path, name)
    launched.wait_ready()
    docker.container.remove(name, force=True)  # someone else removes it while Jupyter runs
    code, output = launched.finish()
    assert code == 1, output
    assert "Jupyter stopped." not in output
    assert re.search(r"vanished|lost track|exit status 137", output), output
