"""Where things live in a kerastack project folder (the `--project-dir`). Pure: paths only.

The pipeline works on a project checkout the way nox works on a noxfile: versions.toml, locks/,
images/ and scripts/ are its inputs, reports/ its output. Every path the package uses is named here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

VERSIONS_FILE = "versions.toml"
LOCKS_DIR = "locks"
REPORTS_DIR = "reports"
IMAGES_DIR = "images"
DOCKERFILE = f"{IMAGES_DIR}/Dockerfile"
NAIVE_DOCKERFILE = f"{IMAGES_DIR}/naive.Dockerfile"
INSTALL_DOCKER_SCRIPT = "scripts/install-docker.sh"
LAUNCHER = "scripts/launch"
INSTALL_HUB_SCRIPT = "scripts/install-hub.sh"
HUB_EXAMPLE_CONFIG = "deploy/jupyterhub/jupyterhub_config.py"
Z2JH_VALUES = "deploy/jupyterhub/config.yaml"
SMOKE_TESTS = "tests/smoke"
# What reaches the builder (see .dockerignore) or decides what is built: a new file here changes the image.
BUILD_CONTEXT_PATHS = (IMAGES_DIR, LOCKS_DIR, VERSIONS_FILE, ".dockerignore")

# Inside the report folder.
BUILD_REPORT = "build-report.json"
BUILD_REPORT_MD = "build-report.md"
SMOKE_REPORTS_DIR = "smoke"  # one SmokeReport per cell: smoke/<cell>.json
PUBLISH_REPORT = "publish-report.json"
MOVING_REPORT = "moving-report.json"
INDEX_REPORT = "index-report.json"  # publish-index: the multi-platform indexes a release joined from its platform jobs
MANIFESTS_DIR = "manifests"
LOGS_DIR = "logs"
REPRODUCE_REPORT = "reproduce.json"
REPRODUCE_REPORT_MD = "reproduce.md"
BENCH_REPORT = "bench.json"
BENCH_REPORT_MD = "bench.md"


def _under_root(relative: str) -> property:
    return property(lambda self: self.root / relative, doc=f"PROJECT/{relative}")


@dataclass(frozen=True)
class Layout:
    """The paths of one project folder."""

    root: Path
    versions = _under_root(VERSIONS_FILE)
    locks = _under_root(LOCKS_DIR)
    dockerfile = _under_root(DOCKERFILE)
    naive_dockerfile = _under_root(NAIVE_DOCKERFILE)
    install_docker_script = _under_root(INSTALL_DOCKER_SCRIPT)
    launcher = _under_root(LAUNCHER)
    install_hub_script = _under_root(INSTALL_HUB_SCRIPT)
    hub_example_config = _under_root(HUB_EXAMPLE_CONFIG)
    smoke_tests = _under_root(SMOKE_TESTS)
    default_reports = _under_root(REPORTS_DIR)

    def lock_dir(self, cell_id: str) -> Path:
        return self.locks / cell_id


def lock_build_arg(cell_id: str) -> str:
    """LOCK_DIR for the Dockerfile: relative to the build context (the project folder)."""
    return f"{LOCKS_DIR}/{cell_id}"
