"""Publish against a real registry (Debian's docker-registry) when something is wrong: it stops the cell it
cannot vouch for, pushes nothing over an unknown or different tag, and reports what it did and did not push.

The images are two tiny imported ones (no build, no smoke run needed); the reports that publish reads
name them as the built and smoke-tested images of two real cells. A registry read error is injected with a
`docker` on PATH that fails `buildx imagetools inspect` for one cell and hands everything else to the
real docker CLI, so every push goes to the real registry.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from python_on_whales import docker

from kerastack import smoke_report
from kerastack.build_report import BuildReport, CellReport, write_build_report
from tests.conftest import ROOT
from tests.containers import free_port
from tests.registry import LocalRegistry
from tests.unit.conftest import SAMPLE

pytestmark = [pytest.mark.docker, pytest.mark.registry]
# Publish reads the matrix from a copy where the CPU variant is amd64 only (tests/unit/data/versions.toml): these
# cells are then single-platform stems, pushed directly. The multi-platform index is
# test_publish_multiplatform.py's (tiny images) and test_arm64.py's (the default cell, both platforms).
AMD64_ONLY = SAMPLE
CELLS = {"tf2.21.0-py3.11-cpu": "2.21.0-py3.11-cpu", "tf2.21.0-py3.13-cpu": "2.21.0-py3.13-cpu"}
REPOSITORY = "kerastack/fail-closed-test"
SUFFIX = "20261125-abc1234"


@pytest.fixture(scope="module")
def tiny_images(tmp_path_factory, docker_engine) -> dict[str, str]:
    """cell id -> id of a one-file image imported for it; removed afterwards by id."""
    ids, own_tags = {}, []
    for cell in CELLS:
        archive = tmp_path_factory.mktemp("image") / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            data = f"{cell} {os.urandom(8).hex()}\n".encode()
            info = tarfile.TarInfo("cell.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        # A tag of its own keeps the image when the registry's tags are removed after each test.
        own_tag = f"kerastack-test/fail-closed:{cell}-{os.urandom(4).hex()}"
        ids[cell] = subprocess.run(["docker", "import", str(archive), own_tag], capture_output=True, text=True, check=True).stdout.strip()
        own_tags.append(own_tag)
    yield ids
    docker.image.remove(own_tags)  # by the tags this fixture made, never forced, never by id


PASSWORD = "s3cret-" + os.urandom(6).hex()


@pytest.fixture
def registry(tmp_path, request):
    """A registry of its own; `indirect` parametrization with (user, password) turns basic auth on."""
    user, password = getattr(request, "param", (None, None))
    (tmp_path / "store").mkdir()
    started = LocalRegistry(tmp_path / "store", port=free_port(), user=user, password=password).start()
    yield started
    started.stop()
    started.remove_local_tags()


@pytest.fixture
def reports(tmp_path, registry, tiny_images) -> Path:
    folder = tmp_path / "reports"
    image = f"{registry.host}/{REPOSITORY}"
    cells = [CellReport(cell, "built", tags=[f"{image}:{tag}-{SUFFIX}", f"{image}:{tag}"], image_id=tiny_images[cell]) for cell, tag in CELLS.items()]
    write_build_report(BuildReport("abc1234", "now", list(CELLS), cells), folder)
    for cell in CELLS:
        check = smoke_report.Check("gate input written by tests/integration/test_publish_fails_closed.py", "passed")
        smoke_report.write(folder, smoke_report.SmokeReport(cell, tiny_images[cell], tiny_images[cell], (check,)))
    return folder


REGISTRY_500 = 'echo "ERROR: failed to do request: Head \\"http://registry/v2/x/manifests/y\\": 500 Internal Server Error" >&2; exit 1'


def publish(
    registry: LocalRegistry, reports: Path, *args: str, fail_reads_of: str = "", when: str = "", then: str = "", env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Publish with the real docker CLI, except that a docker command matching the shell pattern `when`
    runs `then` first (`fail_reads_of`: a registry read of that tag answers 500)."""
    env = {**os.environ, "KERASTACK_REPOSITORY": REPOSITORY, **(env or {})}
    if fail_reads_of:
        when, then = f'*"imagetools inspect"*"{fail_reads_of}"*', REGISTRY_500
    if when:
        wrapper_dir = reports / "bin"
        wrapper_dir.mkdir(exist_ok=True)
        real = shutil.which("docker")
        (wrapper_dir / "docker").write_text(f'#!/bin/sh\ncase "$*" in {when})\n  {then};;\nesac\nexec {real} "$@"\n')
        (wrapper_dir / "docker").chmod(0o755)
        env["PATH"] = f"{wrapper_dir}{os.pathsep}{env['PATH']}"
    command = [
        sys.executable,
        "-m",
        "kerastack",
        "--config",
        str(AMD64_ONLY),
        "--registry",
        registry.host,
        "publish",
        "--reports",
        str(reports),
        "--allow-dirty",
        "--allow-bootstrapped-base",
        "--retries",
        "0",
        *args,
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout + done.stderr


def test_a_registry_read_error_stops_that_cell_pushes_nothing_over_it_and_the_report_lists_both(registry, reports):
    code, output = publish(registry, reports, fail_reads_of=f"2.21.0-py3.13-cpu-{SUFFIX}")
    assert code == 1, output
    assert "cannot read" in output and "500 Internal Server Error" in output
    tags = registry.tags(REPOSITORY)
    assert {f"2.21.0-py3.11-cpu-{SUFFIX}", "2.21.0-py3.11-cpu"} <= tags
    assert not {t for t in tags if t.startswith("2.21.0-py3.13-cpu")}, f"pushed over an unreadable tag: {tags}"
    assert not tags & {"latest", "2.21-cpu"}, "moving tags must not move when a cell failed"
    report = json.loads((reports / "publish-report.json").read_text())
    assert report["ok"] is False
    assert report["cells"]["tf2.21.0-py3.11-cpu"]["pushed"] is True
    failed = report["cells"]["tf2.21.0-py3.13-cpu"]
    assert failed["pushed"] is False and "cannot read" in failed["error"]
    assert set(failed["not_pushed"]) == {f"{registry.host}/{REPOSITORY}:2.21.0-py3.13-cpu-{SUFFIX}", f"{registry.host}/{REPOSITORY}:2.21.0-py3.13-cpu"}
    assert report["not_moved"], "the report says which moving tags stayed and why"


def _seed(registry: LocalRegistry, image_id: str, tag: str) -> str:
    """Put `image_id` in the registry under REPOSITORY:tag the way another runner would: pushed from
    elsewhere (another repository) and copied registry-side, so this engine has no RepoDigest for it."""
    elsewhere = f"{registry.host}/elsewhere/seed:{tag}"
    docker.image.tag(image_id, elsewhere)
    docker.image.push(elsewhere, quiet=True)
    digest = registry.digest("elsewhere/seed", tag)
    docker.buildx.imagetools.create(sources=[f"{registry.host}/elsewhere/seed@{digest}"], tags=[f"{registry.host}/{REPOSITORY}:{tag}"])
    return registry.digest(REPOSITORY, tag)


def test_an_existing_immutable_tag_with_the_same_content_is_success_without_a_push(registry, reports, tiny_images):
    immutable = f"2.21.0-py3.11-cpu-{SUFFIX}"
    before = _seed(registry, tiny_images["tf2.21.0-py3.11-cpu"], immutable)
    code, output = publish(registry, reports, "id=tf2.21.0-py3.11-cpu", "--stage", "cells")
    assert code == 0, output
    assert "is already in the registry with this content" in output and f"pushed {registry.host}/{REPOSITORY}:{immutable}" not in output
    assert registry.digest(REPOSITORY, immutable) == before
    report = json.loads((reports / "publish-report.json").read_text())
    assert report["cells"]["tf2.21.0-py3.11-cpu"]["pushed"] is True


def test_an_existing_immutable_tag_with_other_content_is_refused(registry, reports, tiny_images):
    immutable = f"2.21.0-py3.11-cpu-{SUFFIX}"
    before = _seed(registry, tiny_images["tf2.21.0-py3.13-cpu"], immutable)  # another image under this cell's tag
    code, output = publish(registry, reports, "id=tf2.21.0-py3.11-cpu", "--stage", "cells")
    assert code == 1, output
    assert "already exists in the registry with other content" in output
    assert registry.digest(REPOSITORY, immutable) == before
    assert "2.21.0-py3.11-cpu" not in registry.tags(REPOSITORY), "the cell tag follows its immutable tag: not pushed either"


@pytest.mark.parametrize("registry", [("ci", PASSWORD)], indirect=True)
def test_publish_with_basic_auth_keeps_the_password_out_of_logs_and_reports(registry, reports):
    code, output = publish(registry, reports, "id=tf2.21.0-py3.11-cpu", "--stage", "cells", env={"REGISTRY_USER": "ci", "REGISTRY_PASSWORD": "wrong"})
    assert code != 0 and "login to" in output and "wrong" not in output
    assert registry.tags(REPOSITORY) == set()

    code, output = publish(registry, reports, "id=tf2.21.0-py3.11-cpu", "--stage", "cells", env={"REGISTRY_USER": "ci", "REGISTRY_PASSWORD": PASSWORD})
    assert code == 0, output
    assert "2.21.0-py3.11-cpu" in registry.tags(REPOSITORY)
    assert not registry.tags(REPOSITORY) & {"latest", "2.21-cpu"}, "--stage cells must not move tags"
    texts = [output, (reports / "publish-report.json").read_text()]
    docker_config = Path.home() / ".docker" / "config.json"
    if docker_config.exists():
        texts.append(docker_config.read_text())
    assert not [t for t in texts if PASSWORD in t]
    assert registry.host not in (docker_config.read_text() if docker_config.exists() else "")


def test_a_failing_docker_step_outside_the_push_is_an_error_that_lists_what_was_pushed(registry, reports):
    """`docker image tag` fails for the second cell: one error line, the report written, naming the first cell's tags."""
    code, output = publish(registry, reports, when=f'*"image tag"*"2.21.0-py3.13-cpu-{SUFFIX}"*', then='echo "Error: tag failed on purpose" >&2; exit 1')
    assert code == 1, output
    assert "docker failed: Error: tag failed on purpose" in output and "already pushed:" in output
    report = json.loads((reports / "publish-report.json").read_text())
    failed = report["cells"]["tf2.21.0-py3.13-cpu"]
    assert failed["pushed"] is False and f"{REPOSITORY}:2.21.0-py3.11-cpu-{SUFFIX}" in failed["error"], "the error lists what was already pushed"
    assert report["cells"]["tf2.21.0-py3.11-cpu"]["pushed"] is True
    assert not registry.tags(REPOSITORY) & {"latest", "2.21-cpu"}


def test_a_tag_that_the_registry_holds_with_other_content_after_the_push_is_an_error_and_no_moving_tag_follows(registry, reports, tiny_images):
    """Someone retags the cell tag to another image while it is pushed: the digest check after the push catches it."""
    other = tiny_images["tf2.21.0-py3.13-cpu"]
    retag = f'for last; do :; done; {shutil.which("docker")} image tag {other} "$last"'
    code, output = publish(registry, reports, when='*"image push"*":2.21.0-py3.11-cpu"', then=retag)
    assert code == 1, output
    assert "not the smoke-tested" in output
    assert not registry.tags(REPOSITORY) & {"latest", "2.21-cpu"}, "a moving tag followed a push whose digest was not the tested image"
    report = json.loads((reports / "publish-report.json").read_text())
    assert report["cells"]["tf2.21.0-py3.11-cpu"]["pushed"] is False
