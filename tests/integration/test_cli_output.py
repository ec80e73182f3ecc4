"""stdout carries only a command's result: `$(python -m kerastack image)` in the Makefile depends on it.

Each command that can install or start the engine, bootstrap a base or build runs against the real
engine here, and its stdout is parsed as the result it promises. (The install path itself is walked
cold by test_newcomer.py, where `make run` uses `image`'s stdout as the image reference.)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from python_on_whales import docker

from tests.conftest import ROOT

pytestmark = [pytest.mark.docker]
DEFAULT_CPU_CELL = "tf2.21.0-py3.11-cpu"


def kerastack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kerastack", *args], cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=dict(os.environ), timeout=1800
    )


def test_engine_prints_one_status_line(docker_engine):
    result = kerastack("engine")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"✓ Docker engine \S+ with buildx\n", result.stdout), result.stdout


@pytest.mark.parametrize("cell_id", [DEFAULT_CPU_CELL], scope="session")
def test_image_prints_exactly_one_reference(cell_image):
    result = kerastack("image", "--variant", "cpu")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == [cell_image], result.stdout
    assert docker.image.exists(lines[0])


def test_base_images_prints_one_line_per_python_and_platform(docker_engine):
    result = kerastack("base-images", f"id={DEFAULT_CPU_CELL}")
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    ref = re.fullmatch(r"✓ Python 3\.11 linux/amd64: (\S+) \((local|pulled|bootstrapped)[^)]*\)", line)
    assert ref, line
    assert docker.image.exists(ref.group(1))


@pytest.mark.parametrize("cell_id", [DEFAULT_CPU_CELL], scope="session")
def test_build_keeps_stdout_empty_and_writes_its_report(cell_image, tmp_path):
    result = kerastack("build", f"id={DEFAULT_CPU_CELL}", "--report-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    report = json.loads((tmp_path / "build-report.json").read_text())
    assert [c["cell"] for c in report["cells"]] == [DEFAULT_CPU_CELL]
    assert report["cells"][0]["bytecode_bytes"] > 50_000_000  # TensorFlow and Jupyter ship compiled
