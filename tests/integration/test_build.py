"""Building for real: the CA secret never lands in the image, the matrix builds, failures are contained,
bad input stops before anything runs. Throwaway images use the repository `localhost/kerastack-test/*`
and are removed afterwards."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from python_on_whales import docker

from kerastack import base_images, contract, lock_plan
from kerastack.docker_client import Docker
from kerastack.options import DEFAULT_MIRROR
from tests.conftest import ROOT, track_build

pytestmark = pytest.mark.docker
DEFAULT_CPU = "tf2.21.0-py3.11-cpu"
NAIVE_CELL = "tf2.21.0-py3.13-cpu"


def kerastack(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "kerastack", *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd)
    if "build" in args and "--report-dir" in args:  # the session removes what this build made, and only that
        report = Path(args[args.index("--report-dir") + 1]) / "build-report.json"
        if report.exists():
            track_build(json.loads(report.read_text())["cells"])
    return result


def remove_repository(repository: str) -> None:
    for image in docker.image.list(repository_or_tag=repository):
        docker.image.remove([t for t in image.repo_tags if t.startswith(f"{repository}:")])  # its tags only, never forced, never by id


# ---------------------------------------------------------------- the matrix builds


def test_naive_baseline_is_measured_and_larger(tmp_path, docker_engine):
    """Of the Python 3.13 cell, before the matrix test below needs it: on a cold machine the cell's build
    and the naive one (built alongside) overlap, and the matrix test then finds the cell built."""
    result = kerastack("build", f"id={NAIVE_CELL}", "--naive", "--report-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    (cell,) = json.loads((tmp_path / "build-report.json").read_text())["cells"]
    assert cell["naive_size"] and cell["naive_size"] > cell["size"], cell
    assert "saved" in (tmp_path / "build-report.md").read_text()
    assert not docker.image.list(repository_or_tag=f"kerastack-naive/{NAIVE_CELL}"), "the naive image was not removed"


def test_build_matrix_builds_both_python_versions_and_reports_them(tmp_path, docker_engine, project_config):
    # The default platform's: the arm64 cells are built (under QEMU here) only for the emulated tests (tests/conftest.py's background build).
    result = kerastack("build", "variant=cpu", "tf=2.21", "platform=linux/amd64", "--report-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "build-report.json").read_text())
    cells = {c["cell"]: c for c in report["cells"]}
    assert set(cells) == {"tf2.21.0-py3.11-cpu", "tf2.21.0-py3.13-cpu"}
    for cell in cells.values():
        assert cell["status"] == "built"
        assert cell["size"] > 500_000_000 and cell["seconds"] > 0 and cell["image_id"].startswith("sha256:")
        assert cell["tags"][0].rsplit(":", 1)[1].startswith(cell["cell"].removeprefix("tf") + "-")
        assert docker.image.inspect(cell["tags"][1]).id == cell["image_id"]
    assert cells["tf2.21.0-py3.11-cpu"]["image_id"] != cells["tf2.21.0-py3.13-cpu"]["image_id"]
    markdown = (tmp_path / "build-report.md").read_text()
    assert "tf2.21.0-py3.11-cpu" in markdown and "tf2.21.0-py3.13-cpu" in markdown and "GB" in markdown
    python = docker.run(cells["tf2.21.0-py3.13-cpu"]["tags"][1], ["python", "--version"], remove=True, entrypoint="")
    assert python.startswith("Python 3.13.")
    for cell_id, cell in cells.items():  # the manifests: the image's own, plus id and size; an SBOM of the same
        manifest = json.loads((tmp_path / "manifests" / f"{cell_id}.json").read_text())
        in_image = json.loads(docker.run(cell["tags"][1], ["cat", "/usr/share/kerastack/manifest.json"], remove=True, entrypoint=""))
        assert {k: v for k, v in manifest.items() if k != "image"} == in_image
        assert (manifest["image"]["id"], manifest["image"]["size"]) == (cell["image_id"], cell["size"])
        assert 0 < manifest["image"]["os_packages_layer_size"] == cell["os_layer_size"] < 300_000_000
        layers = dict(cell["named_layers"])  # each layer named and sized; the toolkit one is TeX, pandoc, ffmpeg, compilers
        assert list(layers) == list(contract.image_layers("cpu")) and layers["toolkit"] > 500_000_000, cell["named_layers"]
        sbom = json.loads((tmp_path / "manifests" / f"{cell_id}.cdx.json").read_text())
        assert len(sbom["components"]) == len(manifest["python_packages"]) + len(manifest["debian_packages"])
        assert f"| TensorFlow | {manifest['versions']['tensorflow']} |" in (tmp_path / "manifests" / f"{cell_id}.md").read_text()


def test_a_failing_cell_does_not_stop_the_others(tmp_path, docker_engine):
    project = tmp_path / "project"
    project.mkdir()
    for item in ("versions.toml", "images", "locks", ".dockerignore"):
        if (ROOT / item).is_dir():
            shutil.copytree(ROOT / item, project / item, symlinks=True)  # shared lock groups stay links
        else:
            shutil.copy(ROOT / item, project / item)
    # The venv group (pip, setuptools) is the first stage every lock group builds on, so the cell fails in
    # seconds instead of after installing TensorFlow. pip accepts a wheel matching any listed hash, so every
    # hash of the group is made wrong.
    broken = project / "locks/tf2.20.0-py3.11-cpu/venv.txt"
    broken.write_text(re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, broken.read_text()))
    # ... and recorded in lock.json as if locked that way, so the build (not the lock check) meets the bad hashes.
    meta_file = broken.parent / "lock.json"
    meta = json.loads(meta_file.read_text())
    meta["files"]["venv.txt"] = lock_plan.file_hash(broken)
    meta_file.write_text(json.dumps(meta, indent=2) + "\n")
    try:
        result = kerastack(
            "--project-dir", str(project), "--registry", "localhost", "--repository", "kerastack-test/failing",
            "build", "python=3.11", "variant=cpu", "platform=linux/amd64", "--report-dir", str(tmp_path / "r"),
        )  # fmt: skip
        assert result.returncode == 1, result.stderr[-2000:]
        assert "tf2.20.0-py3.11-cpu" in result.stderr and "failed" in result.stderr
        assert "DO NOT MATCH THE HASHES" in result.stderr, "the failed cell's build log is not shown"
        statuses = {c["cell"]: c["status"] for c in json.loads((tmp_path / "r/build-report.json").read_text())["cells"]}
        assert statuses == {"tf2.20.0-py3.11-cpu": "failed", "tf2.21.0-py3.11-cpu": "built"}
    finally:
        remove_repository("localhost/kerastack-test/failing")


# ---------------------------------------------------------------- bad input stops everything

NO_DAEMON = {"DOCKER_HOST": "unix:///nonexistent/docker.sock", "KERASTACK_NO_INSTALL": "1"}


@pytest.mark.parametrize(
    "edit, key_path",
    [
        (lambda t: t.replace('keras = "3.12.4"', 'keras = "3.12.4"\nkeras_extra = "x"'), 'tensorflow."2.21.0".keras_extra'),
        (lambda t: t.replace('python = ["3.11", "3.13"]', 'python = ["3.11", "3.8"]').replace('[python."3.13"]', '[python."3.8"]'), "matrix.python"),
        (lambda t: t.replace('cuda = ["12.5", "12.9"]', 'cuda = ["12.5", "12.x"]'), "matrix.cuda[1]"),
        (lambda t: t + '\n[[matrix.exclude]]\ntensorflow = "2.19.0"\n', "matrix.exclude[1]"),
    ],
    ids=["unknown-key", "python-out-of-range", "malformed-version", "exclude-matches-nothing"],
)
def test_bad_versions_file_fails_before_any_docker_call(tmp_path, edit, key_path):
    bad = tmp_path / "versions.toml"
    bad.write_text(edit((ROOT / "versions.toml").read_text()))
    result = kerastack("--config", str(bad), "build", "--report-dir", str(tmp_path / "r"), env=NO_DAEMON)
    assert result.returncode == 2, result.stderr
    assert str(bad) in result.stderr and key_path in result.stderr and "fix:" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "r").exists()


def test_filter_that_selects_nothing_fails_before_any_docker_call(tmp_path):
    result = kerastack("build", "tf=2.19", "--report-dir", str(tmp_path / "r"), env=NO_DAEMON)
    assert result.returncode == 2 and "selects no cell" in result.stderr and "tf2.21.0-py3.11-cpu" in result.stderr
    assert not (tmp_path / "r").exists()


def test_stale_lock_fails_the_build_of_that_cell_only_with_the_fix(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(ROOT / "locks", project / "locks", symlinks=True)
    (project / "versions.toml").write_text((ROOT / "versions.toml").read_text().replace('keras = "3.11.3"', 'keras = "3.11.2"'))
    result = kerastack("--project-dir", str(project), "lock", "--check", env=NO_DAEMON)
    assert result.returncode == 2
    assert "tf2.20.0-py3.11-cpu: stale" in result.stdout + result.stderr and "nox -s lock" in result.stderr


# ---------------------------------------------------------------- the engine check


def test_engine_check_names_an_unreachable_daemon_and_the_fix():
    result = kerastack("engine", "--check", env=NO_DAEMON)
    assert result.returncode == 3
    assert "daemon is not reachable" in result.stderr and "systemctl start docker" in result.stderr


def test_engine_check_names_a_missing_cli(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "kerastack", "engine", "--check"], capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PATH": str(tmp_path)}
    )
    assert result.returncode == 3 and "docker CLI is not on PATH" in result.stderr


def test_bootstrapped_base_is_tagged_deterministically_and_reused(project_config, docker_engine):
    python = project_config.python[project_config.defaults.python]
    first = base_images.resolve(Docker(), python, offline=True, mirror=DEFAULT_MIRROR)
    again = base_images.resolve(Docker(), python, offline=True, mirror=DEFAULT_MIRROR)
    assert first.ref == again.ref == f"kerastack-base/debian:{python.debian_suite}-minbase-r{base_images.BOOTSTRAP_RECIPE}-amd64"
    assert again.source == "bootstrapped" and again.reused
    os_release = docker.run(again.ref, ["cat", "/etc/os-release"], remove=True)
    assert f"VERSION_CODENAME={python.debian_suite}" in os_release


# ---------------------------------------------------------------- remote builders


def test_builds_go_to_the_builder_named_in_buildx_builder(tmp_path, docker_engine):
    """A team's remote BuildKit is reached the same way: BUILDX_BUILDER names an existing builder."""
    named = kerastack("build", f"id={DEFAULT_CPU}", "--report-dir", str(tmp_path / "ok"), env={"BUILDX_BUILDER": "default"})
    assert named.returncode == 0, named.stderr[-2000:]
    assert json.loads((tmp_path / "ok/build-report.json").read_text())["cells"][0]["status"] == "built"

    missing = kerastack("build", f"id={DEFAULT_CPU}", "--report-dir", str(tmp_path / "missing"), env={"BUILDX_BUILDER": "kerastack-no-such-builder"})
    assert missing.returncode == 1
    assert "kerastack-no-such-builder" in missing.stderr
