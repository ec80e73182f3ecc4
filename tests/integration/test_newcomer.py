"""The newcomer's path: a fresh copy of the project on a machine where no Docker engine runs.

`make run` has to install/start the engine, find the image, print a URL that works and refuse without
its token; Ctrl-C (SIGINT to the terminal's foreground process group) and a closed terminal (SIGHUP)
must remove the container and leave the engine running. The cold path is walked once: the first
`make run` (no .venv, no engine) ends with Ctrl-C, a second one in the same copy (both now there) ends
with SIGHUP; the checks after each signal are the same.

It stops the engine everything else on the machine uses, so it runs only when asked to
(KERASTACK_TEST_STOP_ENGINE=1; .ci/run sets it), refuses while any container runs (it must never take
a user's container down with the engine), and always starts the engine again. On a shared machine run
it alone: `flock -x /tmp/kerastack-engine.lock pytest ...`.
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
from tests.engine_control import STOP_ENGINE_GATE, dockerd_pids, engine_answers, start_engine, stop_engine
from tests.jupyter import JupyterServer
from tests.terminal import Terminal

pytestmark = [
    pytest.mark.docker,
    pytest.mark.after_background_build,  # it stops the engine
    pytest.mark.skipif(
        os.environ.get(STOP_ENGINE_GATE) != "1",
        reason=f"stops and restarts the Docker engine, which every container on this machine needs; set {STOP_ENGINE_GATE}=1 to run it",
    ),
]
DEFAULT_CPU_CELL = "tf2.21.0-py3.11-cpu"
READY = re.compile(r"Jupyter is ready: (http://localhost:(\d+)/lab\?token=(\w+))")
COLD_START_TIMEOUT = 420  # a new .venv (~20 s), the engine (~5 s), Jupyter (~3 s); generous for a busy machine
WARM_START_TIMEOUT = 180  # .venv and engine already there: Jupyter's start alone


def fresh_copy(destination: Path) -> Path:
    """The project as a clone has it: the files git knows (with this checkout's edits), no .venv, no reports."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, check=True).stdout.split(
        b"\0"
    )
    for name in filter(None, (n.decode() for n in listed)):
        source, target = ROOT / name, destination / name
        if source.is_symlink():  # a shared lock group: a relative link, as git checks it out
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(os.readlink(source))
        elif source.is_file():
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


def run_until_signal(project: Path, folder: Path, sig: signal.Signals, start_timeout: float) -> None:
    """One `make run` as a terminal runs it: the URL, what it serves, then `sig` to the whole group."""
    terminal = make_run(project, folder)
    try:
        url, port, token = terminal.wait_for(READY, start_timeout).groups()
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
        terminal.kill()


@pytest.mark.parametrize("cell_id", [DEFAULT_CPU_CELL], scope="session")
def test_make_run_on_a_fresh_copy_with_no_engine_running_then_again_with_both_there(cell_image, tmp_path):
    assert os.geteuid() == 0, "the cold path installs and starts the engine as root"
    project = fresh_copy(tmp_path / "kerastack")
    folder, _ = host_user_dir(tmp_path)
    (folder / "mine.ipynb").write_text("{}")
    try:
        stop_engine()  # refuses, with the list, while any container runs: this test started none
        assert not engine_answers()
        # Cold: `make run` creates .venv and installs/starts the engine; Ctrl-C ends it.
        run_until_signal(project, folder, signal.SIGINT, COLD_START_TIMEOUT)
        assert (project / ".venv").is_dir(), "the cold `make run` made no .venv"
        # Warm, in the same copy: .venv and the engine the first run started are there; the terminal closes.
        run_until_signal(project, folder, signal.SIGHUP, WARM_START_TIMEOUT)
    finally:
        start_engine()
