"""The test session's cleanup removes exactly what its builds made: never a user's tag of the same commit
and day, never an untagged image with the project's label that it did not replace."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile

import pytest
from python_on_whales import docker

from kerastack.git import current_stamp
from tests.conftest import ROOT, remove_made_images

pytestmark = pytest.mark.docker


def imported(tmp_path, tag: str | None = None) -> str:
    """A one-file image with the project's cell label, tagged or left untagged (dangling)."""
    archive = tmp_path / f"{os.urandom(4).hex()}.tar"
    with tarfile.open(archive, "w") as tar:
        data = os.urandom(16)
        info = tarfile.TarInfo("f")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    command = ["docker", "import", "--change", "LABEL io.kerastack.cell=tf2.21.0-py3.11-cpu", str(archive), *([tag] if tag else [])]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def test_cleanup_removes_made_tags_and_replaced_images_and_nothing_else(tmp_path, docker_engine):
    suffix = current_stamp(ROOT)[0].suffix
    rand = os.urandom(4).hex()
    made = f"kerastack-test/cleanup-{rand}:2.21.0-py3.11-cpu-{suffix}"
    users = f"kerastack-test/users-own-{rand}:2.21.0-py3.11-cpu-{suffix}"  # a user's `make build` of the same commit and day
    ids = [imported(tmp_path, made), imported(tmp_path, users)]
    replaced_id, users_dangling_id = imported(tmp_path), imported(tmp_path)
    ids += [replaced_id, users_dangling_id]
    try:
        remove_made_images({made}, {replaced_id})
        assert not docker.image.exists(made)
        assert not docker.image.exists(replaced_id)
        assert docker.image.exists(users), "a user's tag with the session's suffix was removed"
        assert docker.image.exists(users_dangling_id), "an untagged labelled image the session did not replace was removed"
    finally:
        subprocess.run(["docker", "image", "rm", "-f", *ids], capture_output=True)
