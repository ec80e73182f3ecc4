"""`scripts/launch --check` (make check, make check-gpu) against the real images on this host."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.docker]


def check(image: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(ROOT / "scripts" / "launch"), "--check", "--image", image, "--pull", "never", *args]
    return subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)


@pytest.mark.parametrize("cell_id", ["tf2.21.0-py3.11-cpu"], scope="session")
def test_check_of_the_cpu_image(cell_image, cell):
    result = check(cell_image)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert f"TensorFlow:         {cell.tensorflow}" in lines
    assert "Python:             3.11." in result.stdout
    assert "devices:            /physical_device:CPU:0" in lines
    # This machine is amd64: the image's platform (from `docker image inspect`, and Python inside the container) and the engine's.
    assert "image platform:     linux/amd64 (x86_64 in the container)" in lines
    assert "host platform:      linux/amd64 (the Docker engine's)" in lines
    assert not any(line.startswith("emulation:") for line in lines)
    assert lines[-1].startswith("verdict: ✓")
    assert "Checking" in result.stderr and "Checking" not in result.stdout  # progress on stderr

    # Another platform than the image's, asked for, with no pull allowed: refused before any container starts.
    other = check(cell_image, "--platform", "linux/arm64")
    assert other.returncode == 5 and other.stdout == "", other.stdout + other.stderr
    assert f"{cell_image} is for linux/amd64, not the linux/arm64 asked for with --platform" in other.stderr
    assert "Checking" not in other.stderr

    asked = check(cell_image, "--gpu")
    assert asked.returncode == 4, asked.stdout + asked.stderr
    assert asked.stdout.splitlines()[-1].startswith("verdict: ✗ no GPU visible: this is a CPU image")


@pytest.mark.parametrize("cell_id", ["tf2.21.0-py3.11-gpu-cuda12.5"], scope="session")
def test_check_of_the_gpu_image(cell_image, host_gpu):
    result = check(cell_image, "--gpu")
    text = result.stdout
    assert "CUDA:               TensorFlow built with 12.5" in text and "image has 12.5." in text, text + result.stderr
    assert "cuDNN:              TensorFlow built with 9" in text
    assert "(the image needs >= 555.42)" in text
    if host_gpu.available:
        assert result.returncode == 0 and "GPUs:" in text and text.splitlines()[-1].startswith("verdict: ✓ TensorFlow sees"), text
    else:  # this CPU-only host: the verdict says no GPU is visible, and why
        assert result.returncode == 4, text + result.stderr
        assert text.splitlines()[-1].startswith("verdict: ✗ no GPU visible: Docker here has no NVIDIA runtime and no NVIDIA CDI device"), text


@pytest.mark.parametrize("cell_id", ["tf2.21.0-py3.11-cpu-arm64"], scope="session")
def test_the_arm64_image_is_refused_unless_its_platform_is_asked_for(cell_image, cell):
    """On this amd64 machine the arm64 image runs under QEMU only when asked for: unasked, it is refused before
    any container starts. (Asked for, `--check` is walked the way a user runs it, `make check PLATFORM=linux/arm64`,
    in tests/integration/test_arm64.py.)"""
    quiet = check(cell_image)
    assert quiet.returncode == 5 and quiet.stdout == "", quiet.stdout + quiet.stderr
    assert "under emulation" in quiet.stderr and "--platform linux/arm64" in quiet.stderr
