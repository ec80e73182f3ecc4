"""images/bin/start-jupyter picks the server: the hub's single-user server when a hub's spawner started the
container, plain JupyterLab otherwise. Stub `jupyter` and `jupyterhub-singleuser` on PATH print what they
were asked (the real servers run in tests/integration/test_jupyterhub.py)."""

from __future__ import annotations

import os
import pathlib
import stat
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
START = ROOT / "images" / "bin" / "start-jupyter"
HUB_ENV = {"JUPYTERHUB_API_TOKEN": "t0ken", "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/"}


@pytest.fixture
def stub_path(tmp_path) -> str:
    for name in ("jupyter", "jupyterhub-singleuser"):
        path = tmp_path / name
        path.write_text(f'#!/bin/sh\necho "{name} $*"\n')
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return f"{tmp_path}:{os.environ.get('PATH', '/usr/bin:/bin')}"


def start(stub_path: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "JUPYTERHUB"))}
    return subprocess.run(["bash", str(START), *args], capture_output=True, text=True, env=clean | env | {"PATH": stub_path}, timeout=30)


def test_without_a_hub_it_runs_jupyterlab_on_src(stub_path):
    result = start(stub_path, {})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("jupyter lab ") and "--ServerApp.root_dir=/src" in result.stdout


def test_a_hubs_environment_runs_the_single_user_server_with_the_spawners_arguments(stub_path):
    result = start(stub_path, HUB_ENV, "--debug")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "jupyterhub-singleuser --debug"


@pytest.mark.parametrize("only", sorted(HUB_ENV))
def test_half_a_hubs_environment_is_refused(stub_path, only):
    result = start(stub_path, {only: HUB_ENV[only]})
    assert result.returncode == 64 and result.stdout == ""
    assert "JUPYTERHUB_API_TOKEN and JUPYTERHUB_SERVICE_PREFIX" in result.stderr
