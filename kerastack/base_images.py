"""Base images: the official image pinned by digest, or a Debian base bootstrapped from packages.

When the official base cannot be pulled (an offline or air-gapped engine), the offline recipe of
versions.toml is used: `debootstrap --variant=minbase SUITE`, imported under a deterministic tag
that later runs reuse.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .config import PythonVersion
from .docker_client import Docker, DockerException
from .errors import PipelineError

BOOTSTRAP_REPOSITORY = "kerastack-base/debian"
# Bumped whenever `bootstrap` changes what goes into the rootfs, so an older base is not reused.
# 2: /etc/hosts exists. Without it BuildKit < 0.13 creates and removes a mount stub for it in every
# RUN step, and the step's layer gets /etc with the build's wall clock (not reproducible).
BOOTSTRAP_RECIPE = 2
ETC_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"


@dataclass(frozen=True)
class BaseImage:
    ref: str
    source: str  # "local", "pulled" or "bootstrapped"
    seconds: float = 0.0


@dataclass(frozen=True)
class BaseRecord:
    """What a build report records about its base: enough to tell whether two builds had the same one."""

    image_id: str
    suite: str = ""  # bootstrapped bases: the Debian suite and mirror debootstrap used
    mirror: str = ""


def bootstrap_message(suite: str, mirror: str) -> str:
    """The import comment of a bootstrapped base; `parse_bootstrap_message` reads it back."""
    return f"debootstrap --variant=minbase {suite} {mirror}"


def parse_bootstrap_message(comment: str) -> tuple[str, str]:
    """(suite, mirror) from a bootstrapped base's comment; ("", "") for any other image."""
    words = (comment or "").split()
    if len(words) == 4 and words[:2] == ["debootstrap", "--variant=minbase"]:
        return words[2], words[3]
    return "", ""


def record(docker: Docker, base: BaseImage) -> BaseRecord:
    """The base's image ID, and for a bootstrapped base the suite and mirror it was made from."""
    found = docker.inspect(base.ref)
    suite, mirror = parse_bootstrap_message(found.comment or "")
    return BaseRecord(found.id, suite, mirror)


def bootstrap_tag(suite: str) -> str:
    return f"{BOOTSTRAP_REPOSITORY}:{suite}-minbase-r{BOOTSTRAP_RECIPE}"


def apt_sources(suite: str, mirror: str) -> str:
    lines = [f"deb {mirror} {suite} main", f"deb {mirror} {suite}-updates main"]
    if suite not in ("sid", "unstable"):
        lines.append(f"deb {SECURITY_MIRROR} {suite}-security main")
    return "\n".join(lines) + "\n"


def resolve(docker: Docker, python: PythonVersion, *, offline: bool, mirror: str) -> BaseImage:
    """The base for a Python version: present locally, pulled, or bootstrapped (in that order).

    `offline` (KERASTACK_OFFLINE_BASE=1, resolved by the options) skips the official image and goes
    straight to the offline recipe; `mirror` is the Debian mirror it bootstraps from.
    """
    start = time.monotonic()
    if not offline:
        if docker.exists(python.base_image):
            return BaseImage(python.base_image, "local")
        try:
            docker.pull(python.base_image)
            return BaseImage(python.base_image, "pulled", time.monotonic() - start)
        except DockerException:
            pass  # no registry reachable: fall back to the offline recipe
    tag = bootstrap_tag(python.debian_suite)
    if docker.exists(tag):
        return BaseImage(tag, "local")
    bootstrap(docker, python.debian_suite, tag, mirror)
    return BaseImage(tag, "bootstrapped", time.monotonic() - start)


def _ensure_debootstrap() -> str:
    found = shutil.which("debootstrap") or (Path("/usr/sbin/debootstrap").exists() and "/usr/sbin/debootstrap")
    if found:
        return str(found)
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("kerastack: installing debootstrap to bootstrap a base image", file=sys.stderr, flush=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "debootstrap"], check=True, stdin=subprocess.DEVNULL, stdout=sys.stderr)
        return "/usr/sbin/debootstrap"
    raise PipelineError("no base image could be pulled and debootstrap is missing: install it (apt-get install debootstrap) or make the base pullable")


def bootstrap(docker: Docker, suite: str, tag: str, mirror: str) -> None:
    if os.geteuid() != 0:
        raise PipelineError(
            f"no base image could be pulled, and bootstrapping {tag} with debootstrap needs root: "
            "run once as root, or make the official base pullable (check your registry access)"
        )
    debootstrap = _ensure_debootstrap()
    print(f"kerastack: bootstrapping {tag} from Debian {suite} ({mirror}); about 30 s", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="kerastack-rootfs-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        result = subprocess.run([debootstrap, "--variant=minbase", suite, str(rootfs), mirror], capture_output=True, text=True)
        if result.returncode != 0:
            raise PipelineError(f"debootstrap {suite} failed:\n{(result.stdout + result.stderr)[-2000:]}")
        (rootfs / "etc/apt/sources.list").write_text(apt_sources(suite, mirror))
        (rootfs / "etc/hosts").write_text(ETC_HOSTS)
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists", "var/log"):
            for path in (rootfs / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        archive = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(archive), "."], check=True, stdout=sys.stderr)
        docker.import_rootfs(
            archive,
            tag,
            changes=["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 'CMD ["/bin/bash"]'],
            message=bootstrap_message(suite, mirror),
        )
