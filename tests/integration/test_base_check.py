"""Bases per platform. A reused bootstrapped base is checked against what it claims to be: its labels
(suite, mirror, recipe), its platform and its one layer; tiny images under a test-only name stand in,
removed by their tags. And the offline recipe makes a real arm64 base: its config says linux/arm64 and,
under QEMU, `uname -m` in it prints aarch64 (skipped, with the reason, where this kernel cannot run arm64)."""

from __future__ import annotations

import os
import subprocess

import pytest

from kerastack import base_images, emulation
from kerastack.docker_client import Docker
from kerastack.errors import PipelineError
from kerastack.options import DEFAULT_MIRROR
from tests.conftest import skip_unless_it_runs_here

pytestmark = pytest.mark.docker
MIRROR = "http://deb.debian.org/debian"
GOOD = {"suite": "bookworm", "mirror": MIRROR, "recipe": str(base_images.BOOTSTRAP_RECIPE)}


def made(tmp_path, labels: dict[str, str], platform: str = "linux/amd64", layers: int = 1) -> str:
    """A FROM-scratch image with `layers` one-file layers, these bootstrap labels, built for `platform`."""
    (tmp_path / "a").write_text("a\n")
    lines = ["FROM scratch", *(f"COPY a /layer-{n}" for n in range(layers))]
    lines += [f'LABEL io.kerastack.bootstrap.{k}="{v}"' for k, v in labels.items()]
    (tmp_path / "Dockerfile").write_text("\n".join(lines) + "\n")
    tag = f"kerastack-test/base-check:{os.urandom(4).hex()}"
    command = ["docker", "buildx", "build", "--load", "--platform", platform, "-t", tag, str(tmp_path)]
    subprocess.run(command, check=True, capture_output=True)
    return tag


@pytest.mark.parametrize(
    ("labels", "platform", "layers"),
    [
        ({}, "linux/amd64", 1),
        ({**GOOD, "suite": "trixie"}, "linux/amd64", 1),
        ({**GOOD, "mirror": "http://mirror.example/debian"}, "linux/amd64", 1),
        ({**GOOD, "recipe": "2"}, "linux/amd64", 1),
        (GOOD, "linux/arm64", 1),
        (GOOD, "linux/amd64", 2),
    ],
    ids=["no-labels", "other-suite", "other-mirror", "older-recipe", "other-platform", "two-layers"],
)
def test_a_local_base_that_is_not_what_bootstrap_makes_is_refused(tmp_path, docker_engine, labels, platform, layers):
    tag = made(tmp_path, labels, platform, layers)
    try:
        with pytest.raises(PipelineError, match="is not a bootstrapped Debian bookworm from .* for linux/amd64"):
            base_images.check_bootstrapped(Docker(), tag, "bookworm", MIRROR, "linux/amd64")
    finally:
        Docker().remove_images([tag])


def test_a_local_base_that_matches_is_reused(tmp_path, docker_engine):
    for platform in ("linux/amd64", "linux/arm64"):
        tag = made(tmp_path, GOOD, platform)
        try:
            base_images.check_bootstrapped(Docker(), tag, "bookworm", MIRROR, platform)
        finally:
            Docker().remove_images([tag])


@pytest.mark.emulated
def test_the_offline_recipe_makes_a_real_arm64_base(docker_engine, project_config):
    """Kept afterwards, like every bootstrapped base: the arm64 cell's build starts from it."""
    docker = Docker()
    skip_unless_it_runs_here(docker, "linux/arm64")
    python = project_config.python[project_config.defaults.python]
    base = base_images.resolve(docker, python, offline=True, mirror=DEFAULT_MIRROR, platform="linux/arm64")
    assert base.source == base_images.BOOTSTRAPPED and base.ref.endswith("-arm64")
    found = docker.inspect(base.ref)
    assert (found.os, found.architecture, len(found.root_fs.layers)) == ("linux", "arm64", 1)
    record = base_images.record(docker, base)
    assert (record.suite, record.mirror) == (python.debian_suite, DEFAULT_MIRROR) and record.created.endswith("Z")
    assert docker.run(base.ref, ["uname", "-m"], platform="linux/arm64").strip() == "aarch64"
    assert emulation.problem("linux/arm64") == ""
