"""Base images: the official image pinned by digest, or a Debian base bootstrapped from packages.

The offline recipe (`debootstrap --variant=minbase SUITE`, imported under a deterministic tag that later
runs reuse) runs only when asked (KERASTACK_OFFLINE_BASE=1) or when no registry can be reached at all
(DNS, connection, timeout). Any answer from the registry (rate limit, auth, unknown manifest) is an error:
a fallback that changes what ships is never silent. A reused bootstrapped base is checked against what it
claims to be (its import comment: suite and mirror; its platform), and the base's source goes into the
image labels, the build report and the publish gate.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .config import PythonVersion
from .docker_client import Docker, DockerException, docker_error
from .errors import PipelineError

BOOTSTRAP_REPOSITORY = "kerastack-base/debian"
# Bumped whenever `bootstrap` changes what goes into the rootfs, so an older base is not reused.
# 2: /etc/hosts exists. Without it BuildKit < 0.13 creates and removes a mount stub for it in every
# RUN step, and the step's layer gets /etc with the build's wall clock (not reproducible).
BOOTSTRAP_RECIPE = 2
ETC_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
ARCHITECTURE = "amd64"  # the platform this project builds
PULLED, BOOTSTRAPPED = "pulled", "bootstrapped"
# What docker says when no registry answered at all: only then may the offline recipe stand in.
_UNREACHABLE = re.compile(
    r"no such host|dial tcp|connection refused|network is unreachable|no route to host|i/o timeout|tls handshake timeout"
    r"|temporary failure in name resolution|server misbehaving|context deadline exceeded|proxyconnect",
    re.I,
)
# ...unless the registry did answer: these are answers, never "offline".
_ANSWERED = re.compile(
    r"toomanyrequests|rate limit|unauthorized|denied|authentication required|manifest unknown|not found|forbidden|\b[45]\d\d [A-Z][a-z]", re.I
)


@dataclass(frozen=True)
class BaseImage:
    ref: str
    source: str  # where the base came from: "pulled" (the official image, by digest) or "bootstrapped"
    seconds: float = 0.0
    reused: bool = False  # already in the engine, not pulled or bootstrapped by this run


def registry_unreachable(message: str) -> bool:
    """Whether a failed pull's message says no registry could be reached (not that one refused)."""
    return bool(_UNREACHABLE.search(message)) and not _ANSWERED.search(message)


@dataclass(frozen=True)
class BaseRecord:
    """What a build report records about its base: enough to tell whether two builds had the same one."""

    image_id: str
    suite: str = ""  # bootstrapped bases: the Debian suite and mirror debootstrap used,
    mirror: str = ""
    created: str = ""  # and when (the import: the snapshot of the suite it holds), RFC 3339


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
    created = found.created.strftime("%Y-%m-%dT%H:%M:%SZ") if suite and found.created else ""
    return BaseRecord(found.id, suite, mirror, created)


def labels(base: BaseImage, base_record: BaseRecord) -> dict[str, str]:
    """The image labels that say where its base came from (publish and users read them)."""
    found = {"io.kerastack.base.source": base.source, "io.kerastack.base.id": base_record.image_id}
    if base.source == BOOTSTRAPPED:
        found |= {
            "io.kerastack.base.suite": base_record.suite,
            "io.kerastack.base.mirror": base_record.mirror,
            "io.kerastack.base.created": base_record.created,
        }
    return found


def check_bootstrapped(docker: Docker, tag: str, suite: str, mirror: str) -> None:
    """A local `tag` is reused only when it is what bootstrap makes of (suite, mirror) for this platform."""
    found = docker.inspect(tag)
    claimed = parse_bootstrap_message(found.comment or "")
    platform = (str(found.os or ""), str(found.architecture or ""))
    if claimed != (suite, mirror) or platform != ("linux", ARCHITECTURE):
        what = f"comment {found.comment!r}, platform {'/'.join(platform)}"
        raise PipelineError(
            f"{tag} is in the engine but is not a bootstrapped Debian {suite} from {mirror} for linux/{ARCHITECTURE} ({what}): "
            f"remove it (`docker image rm {tag}`) so it is bootstrapped again, or set DEBIAN_MIRROR to the mirror it came from"
        )


def bootstrap_tag(suite: str) -> str:
    return f"{BOOTSTRAP_REPOSITORY}:{suite}-minbase-r{BOOTSTRAP_RECIPE}"


def apt_sources(suite: str, mirror: str) -> str:
    lines = [f"deb {mirror} {suite} main", f"deb {mirror} {suite}-updates main"]
    if suite not in ("sid", "unstable"):
        lines.append(f"deb {SECURITY_MIRROR} {suite}-security main")
    return "\n".join(lines) + "\n"


def resolve(docker: Docker, python: PythonVersion, *, offline: bool, mirror: str) -> BaseImage:
    """The base for a Python version: the official one (present locally or pulled by digest), or the
    offline recipe's (reused when checked, else bootstrapped).

    `offline` (KERASTACK_OFFLINE_BASE=1, resolved by the options) skips the official image and goes
    straight to the offline recipe; `mirror` is the Debian mirror it bootstraps from. Without it the
    recipe stands in only when no registry can be reached; any other pull failure is an error.
    """
    start = time.monotonic()
    if not offline:
        if docker.exists(python.base_image):
            return BaseImage(python.base_image, PULLED, reused=True)
        try:
            docker.pull(python.base_image)
            return BaseImage(python.base_image, PULLED, time.monotonic() - start)
        except DockerException as exc:
            message = docker_error(exc)
            if not registry_unreachable(message):
                raise PipelineError(
                    f"pulling the base {python.base_image} failed: {message}. The registry answered, so this is not an offline engine: "
                    "fix the access (docker login, wait out a rate limit), or ask for the offline base with KERASTACK_OFFLINE_BASE=1"
                ) from None
            print(f"kerastack: no registry reachable ({message}); using the offline base (publish refuses it unless --allow-bootstrapped-base)",
                  file=sys.stderr, flush=True)  # fmt: skip
    tag = bootstrap_tag(python.debian_suite)
    if docker.exists(tag):
        check_bootstrapped(docker, tag, python.debian_suite, mirror)
        return BaseImage(tag, BOOTSTRAPPED, reused=True)
    bootstrap(docker, python.debian_suite, tag, mirror)
    return BaseImage(tag, BOOTSTRAPPED, time.monotonic() - start)


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
