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


def test_a_users_container_image_and_tags_with_the_projects_names_survive_the_session_cleanup(tmp_path, docker_engine, monkeypatch):
    """A user's own `make build` (the project's repository, today's immutable tag) and a container of theirs,
    started before the tests: the session's cleanup, which removes the same tag under the test repository,
    leaves both as they were. An existing tag of that name is the user's: it is checked, never replaced."""
    import tests.conftest as session
    from kerastack.config import load

    project_image = load(ROOT / "versions.toml").image  # what `make build` tags when KERASTACK_REPOSITORY is unset
    assert session.TEST_REPOSITORY not in project_image, "tests must not build under the project's own repository name"
    suffix = current_stamp(ROOT)[0].suffix
    users_tag = f"{project_image}:2.21.0-py3.11-cpu-{suffix}"
    created_users_tag = not docker.image.exists(users_tag)
    if created_users_tag:
        imported(tmp_path, users_tag)
    users_id = docker.image.inspect(users_tag).id
    session_tag = f"ghcr.io/{session.TEST_REPOSITORY}:2.21.0-py3.11-cpu-{suffix}"
    session_made_it = not docker.image.exists(session_tag)
    if session_made_it:
        imported(tmp_path, session_tag)
    from kerastack.base_images import bootstrap_tag

    base = bootstrap_tag("bookworm")  # the default platform's bootstrapped base, which earlier tests made
    if not docker.image.exists(base):
        pytest.skip(f"{base} (an image with `sleep`) is not here: build once first")
    users_container = docker.run(base, ["sleep", "infinity"], detach=True, name=f"kerastack-users-own-{os.urandom(4).hex()}",
                                 labels={"io.kerastack.cell": "tf2.21.0-py3.11-cpu"})  # fmt: skip
    try:
        monkeypatch.setattr(session, "_made_tags", {session_tag} if session_made_it else set())
        monkeypatch.setattr(session, "_replaced_ids", set())
        session.session_cleanup(environ={})
        assert docker.image.inspect(users_tag).id == users_id, "the user's tag with the project's name and today's tag was touched"
        assert docker.container.inspect(users_container.id).state.running, "the user's container was stopped"
        assert not session_made_it or not docker.image.exists(session_tag), "the session's own tag was not removed"
    finally:
        docker.container.remove(users_container, force=True)  # the container this test started
        if created_users_tag:
            docker.image.remove(users_tag)
        if session_made_it and docker.image.exists(session_tag):
            docker.image.remove(session_tag)
