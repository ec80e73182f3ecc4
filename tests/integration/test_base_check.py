"""A reused bootstrapped base is checked against what it claims to be: its import comment (suite and
mirror) and its platform. The images are tiny imports under a test-only name, removed by their tags."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile

import pytest

from kerastack import base_images
from kerastack.docker_client import Docker
from kerastack.errors import PipelineError

pytestmark = pytest.mark.docker
MIRROR = "http://deb.debian.org/debian"


def imported(tmp_path, message: str) -> str:
    archive = tmp_path / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("etc-hosts")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"\n"))
    tag = f"kerastack-test/base-check:{os.urandom(4).hex()}"
    subprocess.run(["docker", "import", "--message", message, str(archive), tag], check=True, capture_output=True)
    return tag


@pytest.mark.parametrize(
    "message",
    ["", "debootstrap --variant=minbase trixie http://deb.debian.org/debian", "debootstrap --variant=minbase bookworm http://mirror.example/debian"],
)
def test_a_local_base_that_is_not_what_bootstrap_makes_is_refused(tmp_path, docker_engine, message):
    tag = imported(tmp_path, message)
    try:
        with pytest.raises(PipelineError, match="is not a bootstrapped Debian bookworm"):
            base_images.check_bootstrapped(Docker(), tag, "bookworm", MIRROR)
    finally:
        Docker().remove_images([tag])


def test_a_local_base_that_matches_is_reused(tmp_path, docker_engine):
    tag = imported(tmp_path, base_images.bootstrap_message("bookworm", MIRROR))
    try:
        base_images.check_bootstrapped(Docker(), tag, "bookworm", MIRROR)
    finally:
        Docker().remove_images([tag])
