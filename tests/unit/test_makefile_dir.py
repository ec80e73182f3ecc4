"""`make run DIR=...` (and PLATFORM=...) hands the folder to the launcher through the environment, unexpanded: a `$`, a `"`
or spaces in a folder name cannot change what is mounted. The real Makefile runs in a copy of the
project skeleton whose venv python and scripts/launch are stand-ins that print what they were given."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path) -> Path:
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "requirements").mkdir()
    for name in ("pyproject.toml", "requirements/pipeline.txt"):
        (tmp_path / name).write_text("")
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").write_text('#!/bin/sh\necho "example/image:1"\n')  # `python -m kerastack image`: the image reference
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "launch").write_text('#!/bin/sh\nfor a in "$@"; do printf "<%s>\\n" "$a"; done\nprintf "[%s]\\n" "$KERASTACK_PLATFORM"\n')
    for tool in (venv_bin / "python", tmp_path / "scripts" / "launch"):
        tool.chmod(0o755)
    ready = tmp_path / ".venv" / ".ready"
    ready.write_text("")
    os.utime(ready, (2_000_000_000, 2_000_000_000))  # newer than its prerequisites: the venv is not rebuilt
    return tmp_path


@pytest.mark.parametrize("target", ["run", "run-gpu"])
@pytest.mark.parametrize("folder", ['my $HOME "notes"', "a$(touch pwned)b", "it's; rm -rf x", "plain"])
def test_dir_reaches_the_launcher_unchanged(project, target, folder):
    done = subprocess.run(["make", "-s", target, f"DIR={folder}"], cwd=project, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    args = [line[1:-1] for line in done.stdout.splitlines() if line.startswith("<")]
    assert args[args.index("--dir") + 1] == folder
    assert not (project / "pwned").exists()


def test_without_dir_the_launcher_gets_the_project_folder(project):
    done = subprocess.run(["make", "-s", "run"], cwd=project, capture_output=True, text=True, timeout=60)
    args = [line[1:-1] for line in done.stdout.splitlines() if line.startswith("<")]
    assert Path(project, args[args.index("--dir") + 1]).resolve() == project.resolve()


@pytest.mark.parametrize("target", ["run", "run-gpu", "check", "check-gpu"])
@pytest.mark.parametrize("platform", ["linux/arm64", "linux/amd64", "$(touch pwned)", ""])
def test_platform_reaches_the_launcher_unchanged_through_its_environment(project, target, platform):
    """PLATFORM=... becomes KERASTACK_PLATFORM, unexpanded; unset, it is empty, which the launcher reads as not set."""
    words = ["make", "-s", target] + ([f"PLATFORM={platform}"] if platform else [])
    done = subprocess.run(words, cwd=project, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"[{platform}]"
    assert not (project / "pwned").exists()


def test_make_help_lists_platform(project):
    done = subprocess.run(["make", "-s", "help"], cwd=project, capture_output=True, text=True, timeout=60)
    assert "PLATFORM=linux/amd64 or linux/arm64" in done.stdout
