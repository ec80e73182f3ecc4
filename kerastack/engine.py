"""Make sure a Docker engine with buildx is there; every command that needs one calls `ensure`."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .docker_client import Docker, DockerException, docker_error
from .errors import EngineError


@dataclass(frozen=True)
class EngineStatus:
    cli: bool
    daemon: bool
    buildx: bool
    server_version: str = ""
    detail: str = ""

    @property
    def ready(self) -> bool:
        return self.cli and self.daemon and self.buildx

    def problem(self) -> str:
        """One actionable sentence for the first thing that is missing."""
        if not self.cli:
            return "the docker CLI is not on PATH: install Docker (as root: scripts/install-docker.sh), then retry"
        if not self.daemon:
            hint = f" ({self.detail})" if self.detail else ""
            return (
                f"the Docker daemon is not reachable{hint}: start it (`sudo systemctl start docker`, or as root "
                "scripts/install-docker.sh, which starts dockerd without an init system), or point DOCKER_HOST at a running engine"
            )
        if not self.buildx:
            return "the buildx CLI plugin is missing: as root run scripts/install-docker.sh (it installs docker-buildx), or install Docker's buildx plugin"
        return ""


def probe(docker: Docker) -> EngineStatus:
    if not docker.cli_installed():
        return EngineStatus(cli=False, daemon=False, buildx=False)
    try:
        version = docker.server_version()
    except DockerException as exc:
        return EngineStatus(cli=True, daemon=False, buildx=False, detail=docker_error(exc)[:200])
    return EngineStatus(cli=True, daemon=True, buildx=docker.buildx_installed(), server_version=version)


def ensure(docker: Docker, *, install: bool, install_script: Path) -> EngineStatus:
    """Return a ready engine or raise EngineError with the fix. With `install` (root, and not
    KERASTACK_NO_INSTALL: the options decide), a missing engine is installed and started by `install_script`."""
    status = probe(docker)
    if status.ready:
        return status
    if install:
        # Progress goes to stderr: callers such as `make run` capture stdout as the command's result.
        print(f"kerastack: {status.problem()}\nkerastack: installing with {install_script.name} ...", file=sys.stderr, flush=True)
        result = subprocess.run(["bash", str(install_script)], stdin=subprocess.DEVNULL, stdout=sys.stderr)
        if result.returncode != 0:
            raise EngineError(f"{install_script} failed (exit {result.returncode}); see its messages above")
        status = probe(docker)
    if not status.ready:
        raise EngineError(status.problem())
    return status
