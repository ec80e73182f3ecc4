"""The newcomer's path: a fresh copy of the project on a machine where no Docker engine runs.

`make run` has to install/start the engine, find the image, print a URL that works and refuse without
its token; Ctrl-C (SIGINT to the terminal's foreground process group) and a closed terminal (SIGHUP)
must remove the container and leave the engine running. The tests stop the engine the suite uses and
always start it again. Run them alone on a shared machine: `flock -x /tmp/kerastack-engine.lock pytest ...`.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from python_on_whales import docker

from tests.conftest import ROOT
from tests.containers import host_user_dir
from tests.engine_control import dockerd_pids, engine_answers, start_engine, stop_engine
from tests.jupyter import JupyterServer

pytestmark = [pytest.mark.docker]
DEFAULT_CPU_CELL = "tf2.21.0-py3.11-cpu"
READY = re.compile(r"Jupyter is ready: (http://localhost:(\d+)/lab\?token=(\w+))")
COLD_START_TIMEOUT = 420  # a new .venv (~20 s), the engine (~5 s), Jupyter (~3 s); generous for a busy machine


def fresh_copy(destination: Path) -> Path:
    """The project as a clone has it: the files git knows (with this checkout's edits), no .venv, no reports."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, check=True).stdout.split(
        b"\0"
    )
    for name in filter(None, (n.decode() for n in listed)):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


class Terminal:
    """`make run` as a terminal runs it: its own process group (the foreground job), no stdin."""

    def __init__(self, project: Path, folder: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("KERASTACK_NO_INSTALL", "VIRTUAL_ENV")}  # keeps KERASTACK_REPOSITORY
        self.process = subprocess.Popen(
            ["make", "run", f"DIR={folder}"],
            cwd=project,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern: re.Pattern, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            self.seen.append(line)
            if found := pattern.search(line):
                return found
        raise AssertionError("no URL from `make run`:\n" + "".join(self.seen))

    def signal_group(self, sig: signal.Signals) -> None:
        os.killpg(self.process.pid, sig)

    def finish(self, timeout: float = 90) -> tuple[int, str]:
        code = self.process.wait(timeout=timeout)
        while (line := self.lines.get(timeout=60)) is not None:
            self.seen.append(line)
        return code, "".join(self.seen)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)


def gone(name: str, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while docker.container.exists(name):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def status_without_redirects(url: str) -> int:
    try:
        with urllib.request.build_opener(NoRedirect).open(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize("cell_id", [DEFAULT_CPU_CELL], scope="session")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP], ids=["ctrl-c", "terminal-closed"])
def test_make_run_on_a_fresh_copy_with_no_engine_running(cell_image, sig, tmp_path):
    assert os.geteuid() == 0, "the cold path installs and starts the engine as root"
    project = fresh_copy(tmp_path / "kerastack")
    folder, _ = host_user_dir(tmp_path)
    (folder / "mine.ipynb").write_text("{}")
    terminal = None
    try:
        stop_engine()
        assert not engine_answers()
        terminal = Terminal(project, folder)
        url, port, token = terminal.wait_for(READY, COLD_START_TIMEOUT).groups()
        name = f"kerastack-{port}"

        # The engine `make run` started lives in its own session: the terminal's signals cannot reach it.
        (dockerd,) = dockerd_pids()
        assert os.getsid(dockerd) != os.getsid(terminal.process.pid)
        assert os.getpgid(dockerd) != terminal.process.pid

        # The printed URL works with its token and refuses without it.
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
        jupyter = JupyterServer(f"http://127.0.0.1:{port}", token)
        status, contents = jupyter.request("GET", "/api/contents")
        assert status == 200 and "mine.ipynb" in {item["name"] for item in contents["content"]}
        assert jupyter.request("GET", "/api/contents", token=None)[0] == 403
        assert status_without_redirects(url.split("?")[0]) in (302, 403), "/lab without the token must send to the login page"

        terminal.signal_group(sig)
        code, output = terminal.finish()
        # make dies of the signal it got (like every make; a shell shows 130 or 129) once the launcher
        # finished; the launcher itself must have stopped cleanly.
        assert code in (0, -sig), output
        assert f"Stopped; the container {name} is removed." in output, output
        assert "Traceback" not in output, output
        assert gone(name), f"{sig.name} left {name} running"
        assert engine_answers(), f"{sig.name} in the terminal stopped the Docker engine"
    finally:
        if terminal is not None:
            terminal.kill()
        start_engine()
