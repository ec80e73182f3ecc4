"""The newcomer's path: a fresh copy of the project on a machine where no Docker engine runs.

`make run` has to install/start the engine, find the image, print a URL that works and refuse without
its token; Ctrl-C (SIGINT to the terminal's foreground process group) and a closed terminal (SIGHUP)
must remove the container and leave the engine running. The tests stop the engine the suite uses and
always start it again. Run them alone on a shared machine: `flock -x /tmp/kerastack-engine.lock pytest ...`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.containers import container_gone, host_user_dir
from tests.engine_control import dockerd_pids, engine_answers, start_engine, stop_engine
from tests.jupyter import JupyterServer
from tests.terminal import Terminal

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


def make_run(project: Path, folder: Path) -> Terminal:
    env = {k: v for k, v in os.environ.items() if k not in ("KERASTACK_NO_INSTALL", "VIRTUAL_ENV")}  # keeps KERASTACK_REPOSITORY
    return Terminal(["make", "run", f"DIR={folder}"], cwd=project, env=env)


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
        terminal = make_run(project, folder)
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
        assert container_gone(name), f"{sig.name} left {name} running"
        assert engine_answers(), f"{sig.name} in the terminal stopped the Docker engine"
    finally:
        if terminal is not None:
            terminal.kill()
        start_engine()
