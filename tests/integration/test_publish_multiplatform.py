"""A multi-platform stem published to a real registry (Debian's docker-registry on 127.0.0.1): one index of
linux/amd64 and linux/arm64 under every tag of the stem, or nothing at all.

The two images are tiny `FROM scratch` ones, one per platform, built with `buildx build --platform ... --load`
(no emulation needed: nothing runs in them). The reports that publish reads name them as the built and
smoke-tested images of the two platforms of one cell of tests/unit/data/platforms/versions.toml (the CPU
variant on amd64 and arm64), so the real matrix and the real images are not involved.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from python_on_whales import docker

from kerastack import smoke_report
from kerastack.build_report import BuildReport, CellReport, write_build_report
from tests.conftest import ROOT
from tests.containers import free_port
from tests.registry import MANIFEST_TYPES, LocalRegistry
from tests.unit.conftest import DATA

pytestmark = [pytest.mark.docker, pytest.mark.registry]
VERSIONS = DATA / "platforms" / "versions.toml"
REPOSITORY = "kerastack/multiplatform-test"
CPU, CPU_ARM = "tf2.21.0-py3.11-cpu", "tf2.21.0-py3.11-cpu-arm64"
PLATFORM = {CPU: "linux/amd64", CPU_ARM: "linux/arm64"}
STEM = "2.21.0-py3.11-cpu"
SUFFIX = "20261202-abc1234"
IMMUTABLE = f"{STEM}-{SUFFIX}"
STEM_TAGS = {IMMUTABLE, STEM, "latest", "2.21-cpu", f"{IMMUTABLE}-amd64", f"{IMMUTABLE}-arm64"}


@pytest.fixture(scope="module")
def tiny_images(tmp_path_factory, docker_engine) -> dict[str, str]:
    """cell id -> id of a one-file image built for the cell's platform; its own tag removed afterwards (never forced)."""
    ids, own_tags = {}, []
    for cell, platform in PLATFORM.items():
        context = tmp_path_factory.mktemp("context")
        (context / "cell.txt").write_text(f"{cell} {os.urandom(8).hex()}\n")
        (context / "Dockerfile").write_text("FROM scratch\nCOPY cell.txt /\n")
        own_tag = f"kerastack-test/multiplatform:{cell}-{os.urandom(4).hex()}"
        subprocess.run(["docker", "buildx", "build", "--platform", platform, "--load", "--quiet", "-t", own_tag, str(context)], capture_output=True, check=True)
        inspected = docker.image.inspect(own_tag)
        assert inspected.architecture == platform.split("/")[1], f"{own_tag} is {inspected.architecture}, not {platform}"
        ids[cell] = inspected.id
        own_tags.append(own_tag)
    yield ids
    docker.image.remove(own_tags)


@pytest.fixture
def registry(tmp_path):
    (tmp_path / "store").mkdir()
    started = LocalRegistry(tmp_path / "store", port=free_port()).start()
    yield started
    started.stop()
    started.remove_local_tags()


def write_reports(folder: Path, registry: LocalRegistry, images: dict[str, str], cells: tuple[str, ...] = (CPU, CPU_ARM), failed: tuple[str, ...] = ()) -> Path:
    """A build report of `cells` (the local refs, a platform suffix off amd64, tag the images) and a smoke report each."""
    image = f"{registry.host}/{REPOSITORY}"
    reports = []
    for cell in cells:
        suffix = "-arm64" if cell == CPU_ARM else ""
        local = [f"{image}:{IMMUTABLE}{suffix}", f"{image}:{STEM}{suffix}"]
        for ref in local:
            docker.image.tag(images[cell], ref)  # removed with the registry's local tags
        reports.append(CellReport(cell, "built", platform=PLATFORM[cell], tags=local, image_id=images[cell]))
    write_build_report(BuildReport("abc1234", "now", list(cells), reports), folder)
    for cell in cells:
        check = smoke_report.Check("gate input written by tests/integration/test_publish_multiplatform.py", "failed" if cell in failed else "passed")
        smoke_report.write(folder, smoke_report.SmokeReport(cell, images[cell], images[cell], (check,)))
    return folder


def kerastack(registry: LocalRegistry, *args: str) -> tuple[int, str]:
    env = {**os.environ, "KERASTACK_REPOSITORY": REPOSITORY}
    command = [sys.executable, "-m", "kerastack", "--config", str(VERSIONS), "--registry", registry.host, *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout + done.stderr


def publish(registry: LocalRegistry, reports: Path, *args: str) -> tuple[int, str]:
    return kerastack(registry, "publish", "--report-dir", str(reports), "--allow-dirty", "--allow-bootstrapped-base", "--retries", "0", *args)


def raw_index(registry: LocalRegistry, tag: str) -> dict:
    ref = f"{registry.host}/{REPOSITORY}:{tag}"
    return json.loads(subprocess.run(["docker", "buildx", "imagetools", "inspect", "--raw", ref], capture_output=True, text=True, check=True).stdout)


def config_digest(registry: LocalRegistry, digest: str) -> str:
    return registry.get(f"/v2/{REPOSITORY}/manifests/{digest}", accept=MANIFEST_TYPES)[1]["config"]["digest"]


def assert_one_index_of_both_platforms(registry: LocalRegistry, images: dict[str, str]) -> dict[str, str]:
    """Every tag of the stem holds one index listing exactly linux/amd64 and linux/arm64, each the staged, tested image."""
    index = raw_index(registry, IMMUTABLE)
    listed = {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"] for m in index["manifests"]}
    assert len(index["manifests"]) == 2 and set(listed) == {"linux/amd64", "linux/arm64"}, index
    assert listed == {"linux/amd64": registry.digest(REPOSITORY, f"{IMMUTABLE}-amd64"), "linux/arm64": registry.digest(REPOSITORY, f"{IMMUTABLE}-arm64")}
    assert {p: config_digest(registry, d) for p, d in listed.items()} == {PLATFORM[c]: images[c] for c in images}, "each platform is the smoke-tested image"
    digest = registry.digest(REPOSITORY, IMMUTABLE)
    assert {tag: registry.digest(REPOSITORY, tag) for tag in (STEM, "latest", "2.21-cpu")} == dict.fromkeys((STEM, "latest", "2.21-cpu"), digest)
    return listed


def test_every_tag_of_the_stem_is_one_index_of_both_platforms_and_the_report_records_each_digest(registry, tiny_images, tmp_path):
    reports = write_reports(tmp_path / "reports", registry, tiny_images)
    code, output = publish(registry, reports)
    assert code == 0, output
    assert registry.tags(REPOSITORY) == STEM_TAGS
    listed = assert_one_index_of_both_platforms(registry, tiny_images)
    report = json.loads((reports / "publish-report.json").read_text())
    stem = report["stems"][STEM]
    assert stem["pushed"] and stem["digest"] == registry.digest(REPOSITORY, IMMUTABLE)
    assert stem["platforms"] == {PLATFORM[c]: {"cell": c, "digest": listed[PLATFORM[c]], "image_id": tiny_images[c]} for c in PLATFORM}
    assert {c: report["cells"][c]["digest"] for c in PLATFORM} == {c: listed[PLATFORM[c]] for c in PLATFORM}
    assert report["moved"] == {f"{registry.host}/{REPOSITORY}:{t}": stem["digest"] for t in ("latest", "2.21-cpu")}

    # Pulling for linux/arm64 gets the arm64 image (the tag's local copy is removed with the registry's tags).
    pulled = f"{registry.host}/{REPOSITORY}:{STEM}"
    subprocess.run(["docker", "pull", "--quiet", "--platform", "linux/arm64", pulled], capture_output=True, check=True)
    assert docker.image.inspect(pulled).architecture == "arm64" and docker.image.inspect(pulled).id == tiny_images[CPU_ARM]

    again, output = publish(registry, reports)
    assert again == 0 and "already in the registry with this index" in output, output
    assert registry.digest(REPOSITORY, IMMUTABLE) == stem["digest"]


def test_a_platform_that_failed_smoke_publishes_nothing_under_the_stem(registry, tiny_images, tmp_path):
    reports = write_reports(tmp_path / "reports", registry, tiny_images, failed=(CPU_ARM,))
    code, output = publish(registry, reports)
    assert code == 1, output
    assert f"{CPU_ARM} is not: smoke tests failed" in output
    assert registry.tags(REPOSITORY) == set(), "no tag of the stem, not even the amd64 staging tag"
    report = json.loads((reports / "publish-report.json").read_text())
    assert report["ok"] is False and set(report["held_back"]) == {CPU, CPU_ARM} and report["stems"] == {}


def test_the_release_flow_stages_each_platform_joins_them_then_moves_tags(registry, tiny_images, tmp_path):
    """As release.yml: one job per platform (--stage staging), the index job (publish-index), the release job (--stage moving)."""
    downloads = tmp_path / "publish-reports"
    for cell in PLATFORM:
        job = write_reports(downloads / f"publish-{cell}", registry, tiny_images, cells=(cell,))
        code, output = publish(registry, job, f"id={cell}", "--stage", "staging")
        assert code == 0, output
    assert registry.tags(REPOSITORY) == {f"{IMMUTABLE}-amd64", f"{IMMUTABLE}-arm64"}, "the platform jobs push nothing the users pull"

    code, output = kerastack(registry, "publish-index", "--report-dir", str(downloads), "--retries", "0", f"id={CPU},{CPU_ARM}")
    assert code == 0, output
    assert registry.tags(REPOSITORY) == STEM_TAGS - {"latest", "2.21-cpu"}, "the join moves no moving tag"
    index_report = json.loads((downloads / "index-report.json").read_text())
    assert set(index_report["stems"][STEM]["platforms"]) == {"linux/amd64", "linux/arm64"}

    code, output = kerastack(registry, "publish", "--stage", "moving", "--report-dir", str(downloads), f"id={CPU},{CPU_ARM}")
    assert code == 0, output
    assert_one_index_of_both_platforms(registry, tiny_images)


def test_the_join_refuses_a_stem_whose_arm64_job_reported_nothing(registry, tiny_images, tmp_path):
    downloads = tmp_path / "publish-reports"
    job = write_reports(downloads / f"publish-{CPU}", registry, tiny_images, cells=(CPU,))
    assert publish(registry, job, f"id={CPU}", "--stage", "staging")[0] == 0
    code, output = kerastack(registry, "publish-index", "--report-dir", str(downloads), "--retries", "0", f"id={CPU},{CPU_ARM}")
    assert code == 1 and f"no publish report says {CPU_ARM} was pushed" in output, output
    assert registry.tags(REPOSITORY) == {f"{IMMUTABLE}-amd64"}


def test_an_existing_immutable_tag_with_another_index_is_refused_and_no_tag_follows(registry, tiny_images, tmp_path):
    """Someone made the immutable tag an index of the amd64 image alone: publish refuses, the cell tag stays absent."""
    seed = f"{registry.host}/elsewhere/seed:amd64"
    docker.image.tag(tiny_images[CPU], seed)
    docker.image.push(seed, quiet=True)
    seeded = registry.digest("elsewhere/seed", "amd64")
    docker.buildx.imagetools.create(sources=[f"{registry.host}/elsewhere/seed@{seeded}"], tags=[f"{registry.host}/{REPOSITORY}:{IMMUTABLE}"])
    before = registry.digest(REPOSITORY, IMMUTABLE)
    reports = write_reports(tmp_path / "reports", registry, tiny_images)
    code, output = publish(registry, reports)
    assert code == 1 and "already exists in the registry with other content" in output and "immutable tags never move" in output, output
    assert registry.digest(REPOSITORY, IMMUTABLE) == before
    assert not registry.tags(REPOSITORY) & {STEM, "latest", "2.21-cpu"}, "no cell or moving tag follows a refused index"
