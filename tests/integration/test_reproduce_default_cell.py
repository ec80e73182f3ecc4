"""Bit-identical rebuilds, for real, and the proxy's CA never landing in an image: `python -m kerastack
reproduce` builds the default CPU cell twice from scratch (clean `git archive` exports, no layer cache, so
every RUN really runs, with a CA bundle that carries a unique marker certificate mounted as the BuildKit
secret), and every layer above the base must match, while the marker must appear nowhere in the two saved
images (layers, config, history) or their build logs. Costs two CPU builds; --keep-images keeps the two
images for that search, and the test removes them."""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from python_on_whales import docker

from kerastack import ca
from kerastack.docker_client import Docker
from tests.conftest import BUILD_CACHE_ENV, ROOT

pytestmark = [pytest.mark.docker, pytest.mark.after_background_build]  # it prunes the build cache, and needs the disk
DEFAULT_CPU = "tf2.21.0-py3.11-cpu"


@pytest.fixture
def marker_bundle(tmp_path: Path) -> tuple[Path, list[bytes]]:
    """The host's bundle plus a freshly made, unique certificate whose text we can search for."""
    name = f"kerastack-ca-marker-{secrets.token_hex(8)}"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "k.pem"), "-subj", f"/CN={name}", "-days", "1",
         "-out", str(tmp_path / "m.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    marker_pem = (tmp_path / "m.pem").read_text()
    host = ca.find_bundle(None, os.environ)
    bundle = tmp_path / "bundle.pem"
    bundle.write_text((host.read_text() if host else "") + marker_pem)
    body_lines = [line for line in marker_pem.splitlines() if line and not line.startswith("-----")]
    return bundle, [name.encode(), body_lines[len(body_lines) // 2].encode()]


def find_in_stream(stream, needles: list[bytes], chunk: int = 16 << 20) -> list[bytes]:
    found, tail = set(), b""
    keep = max(len(n) for n in needles)
    while block := stream.read(chunk):
        window = tail + block
        found.update(n for n in needles if n in window)
        tail = window[-keep:]
    return sorted(found)


def leaks_in(ref: str, markers: list[bytes]) -> dict[str, list[bytes]]:
    """Every file of the image's `docker save` archive (layer tars, the config with its history) that holds
    a marker; the archive is read as a stream, never written to disk (the images are gigabytes)."""
    leaks, names = {}, []
    with Docker().save_stream(ref) as stream, tarfile.open(fileobj=stream, mode="r|") as outer:
        for member in outer:
            if member.isfile():
                names.append(member.name)
                if hits := find_in_stream(outer.extractfile(member), markers):
                    leaks[member.name] = hits
    assert "manifest.json" in names and any(n.endswith((".tar", ".json")) or "blobs/" in n for n in names), f"{ref} gave no docker save archive"
    return leaks


@pytest.fixture
def room_for_two_builds(docker_engine):
    """On CI's fresh machine (KERASTACK_TEST_BUILD_CACHE set, as at the session's end) the cache is shrunk
    first: this is the last Docker test before the emulated ones (whose image the background build has
    finished by then), and its two clean builds need room the earlier builds' cache holds. Never on a
    user's machine: a global prune touches other builds' cache too."""
    if limit := os.environ.get(BUILD_CACHE_ENV):
        Docker().prune_build_cache(limit)


@pytest.fixture
def throwaway(project_config, docker_engine):
    """The two images reproduce --keep-images leaves: removed by exact tag afterwards."""
    refs = [f"{project_config.image}:reproduce-{DEFAULT_CPU}-{n}" for n in (1, 2)]
    yield refs
    Docker().remove_images(refs)


def test_two_clean_builds_have_identical_layers_and_no_trace_of_the_ca(tmp_path, room_for_two_builds, throwaway, marker_bundle):
    bundle, markers = marker_bundle
    work = tmp_path / "work"
    result = subprocess.run(
        [sys.executable, "-m", "kerastack", "reproduce", "--report-dir", str(tmp_path), "--work-dir", str(work), "--keep-images",
         "--ca-bundle", str(bundle), f"id={DEFAULT_CPU}"],
        capture_output=True, text=True, cwd=ROOT, env=dict(os.environ),
    )  # fmt: skip
    report = json.loads((tmp_path / "reproduce.json").read_text())
    (cell,) = report["cells"]
    differing = [(layer["index"], layer["created_by"], layer["fields"], layer["differences"][:5]) for layer in cell["layers"] if not layer["identical"]]
    assert result.returncode == 0, f"layers differ: {differing}\n{result.stderr[-3000:]}"
    assert report["ok"] is True and cell["ok"] is True and cell["error"] == ""
    # Every layer the Dockerfile makes (OS packages, venv, TensorFlow, Jupyter, images/bin) is compared.
    assert cell["layers_above_base"] >= 5 and cell["identical_layers"] == cell["layers_above_base"]
    # On BuildKit < 0.11 only the config's times may differ; on newer builders nothing may.
    for difference in cell["config_differences"]:
        assert difference["path"] == "created" or difference["path"].endswith("].created"), difference
    # stdout is the result alone: one line for the cell; progress went to stderr.
    assert result.stdout.splitlines() == [line for line in result.stdout.splitlines() if line.startswith(f"{DEFAULT_CPU}: identical")]
    assert len(result.stdout.splitlines()) == 1
    assert "two builds from scratch" in result.stderr
    assert (tmp_path / "reproduce.md").read_text().count(f"| {DEFAULT_CPU} | identical |") == 1
    assert all(docker.image.exists(ref) for ref in throwaway), "--keep-images did not keep the two images"
    # Each build's new cache records went as soon as it was done, counted by the command from a second listing.
    removed = {int(n): int(count) for n, count in re.findall(r"build (\d): removed (\d+) build cache records it added", result.stderr)}
    assert set(removed) == {1, 2} and all(count > 0 for count in removed.values()), result.stderr[-2000:]

    # The CA: pip ran in both builds with the marked bundle mounted, and it is nowhere in what they made.
    assert "--mount=type=secret,id=ca" in (ROOT / "images/Dockerfile").read_text()
    for n in (1, 2):
        log = (tmp_path / "logs" / f"reproduce-{DEFAULT_CPU}-{n}.log").read_text()
        assert log.count("Successfully installed") >= 2, f"pip did not run in build {n}, so the bundle was never mounted"
        assert not [m for m in markers if m.decode() in log], f"the CA appears in the log of build {n}"
        assert "BEGIN CERTIFICATE" not in log
    # Build 1 is searched whole (every layer tar, the config with its history). Build 2's layers have the
    # same diff IDs (asserted above), so the same bytes: only its own config and history are searched.
    assert leaks_in(throwaway[0], markers) == {}, "the CA bundle leaked into build 1"
    second = docker.image.inspect(throwaway[1])
    assert second.root_fs.layers == docker.image.inspect(throwaway[0]).root_fs.layers
    own = subprocess.run(["docker", "image", "inspect", throwaway[1]], capture_output=True, check=True).stdout
    own += subprocess.run(["docker", "image", "history", "--no-trunc", throwaway[1]], capture_output=True, check=True).stdout
    assert find_in_stream(io.BytesIO(own), markers) == [], "the CA bundle leaked into build 2's config or history"
    assert not list(work.glob("*")), "the exports and archives were not cleaned up"
