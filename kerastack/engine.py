"""Make sure a Docker engine with buildx is there; every entry point calls `ensure`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import EngineError

INSTALL_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "install-docker.sh"


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


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def probe() -> EngineStatus:
    if shutil.which("docker") is None:
        return EngineStatus(cli=False, daemon=False, buildx=False)
    info = _run("docker", "version", "--format", "{{.Server.Version}}")
    if info.returncode != 0:
        last = (info.stderr.strip().splitlines() or [""])[-1]
        return EngineStatus(cli=True, daemon=False, buildx=False, detail=last[:200])
    buildx = _run("docker", "buildx", "version").returncode == 0
    return EngineStatus(cli=True, daemon=True, buildx=buildx, server_version=info.stdout.strip())


def ensure(install: bool | None = None) -> EngineStatus:
    """Return a ready engine or raise EngineError with the fix.

    As root, on a machine without an engine, installs and starts one with scripts/install-docker.sh
    (set KERASTACK_NO_INSTALL=1 to forbid that).
    """
    status = probe()
    if status.ready:
        return status
    if install is None:
        install = os.geteuid() == 0 and not os.environ.get("KERASTACK_NO_INSTALL")
    if install:
        # Progress goes to stderr: callers such as `make run` capture stdout as the command's result.
        print(f"kerastack: {status.problem()}\nkerastack: installing with {INSTALL_SCRIPT.name} ...", file=sys.stderr, flush=True)
        result = subprocess.run(["bash", str(INSTALL_SCRIPT)], stdin=subprocess.DEVNULL, stdout=sys.stderr)
        if result.returncode != 0:
            raise EngineError(f"{INSTALL_SCRIPT} failed (exit {result.returncode}); see its messages above")
        status = probe()
    if not status.ready:
        raise EngineError(status.problem())
    return status
