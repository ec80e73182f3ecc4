"""The launcher against the real image: every way out removes the container and says what happened."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from python_on_whales import docker

from tests.conftest import ROOT
from tests.containers import container_gone
from tests.terminal import Terminal

pytestmark = [pytest.mark.docker]
DEFAULT_CPU_CELL = "tf2.21.0-py3.11-cpu"
READY = re.compile(r"Jupyter is ready: http://localhost:\d+/lab\?token=\w+")


def launched(image: str, folder, name: str) -> Terminal:
    """The launcher in the foreground, as a terminal runs it, once it printed the URL."""
    terminal = Terminal([sys.executable, str(ROOT / "scripts" / "launch"), "--image", image, "--pull", "never", "--dir", str(folder), "--name", name])
    terminal.wait_for(READY, 180)
    return terminal


@pytest.fixture
def name():
    container = f"kerastack-exits-{os.getpid()}-{time.monotonic_ns() % 100000}"
    yield container
    subprocess.run(["docker", "rm", "-f", container], capture_output=True)


@pytest.mark.parametrize("cell_id", [DEFAULT_CPU_CELL], scope="session")
def test_sighup_stops_and_removes_the_container(cell_image, tmp_path, name):
    terminal = launched(cell_image, tmp_path, name)
    terminal.signal_group(signal.SIGHUP)  # the terminal was closed
    code, output = terminal.finish()
    assert code == 0, output
    assert f"Stopped; the container {name} is removed." in output
    assert container_gone(name), "SIGHUP left the container running"


@pytest.mark.parametrize("cell_id", [DEFAULT_CPU_CELL], scope="session")
def test_a_container_that_vanishes_is_an_error_that_says_so(cell_image, tmp_path, name):
    terminal = launched(cell_image, tmp_path, name)
    docker.container.remove(name, force=True)  # someone else removes it while Jupyter runs
    code, output = terminal.finish()
    assert code == 1, output
    assert "Jupyter stopped." not in output
    assert re.search(r"vanished|lost track|exit status 137", output), output
