"""Base images per platform: the official image's manifest for that platform, pinned by digest, or a Debian
base bootstrapped from packages for that platform.

The official base is pinned in versions.toml by its index digest; each platform resolves to its own
manifest digest (`platform_manifest`), which is what is pulled, built on and recorded.
The offline recipe (`debootstrap --arch=ARCH --variant=minbase SUITE`, its second stage under QEMU for a
foreign architecture, then a one-layer image `FROM scratch` + `ADD rootfs.tar /` built with `--platform`,
since `docker import` on Engine 20.10 records the engine's architecture whatever `--platform` says) runs
only when asked (KERASTACK_OFFLINE_BASE=1) or when no registry can be reached at all (DNS, connection,
timeout). Any answer from the registry (rate limit, auth, unknown manifest) is an error: a fallback that
changes what ships is never silent. A reused bootstrapped base is checked against what it claims to be (its
labels: suite, mirror, recipe; its platform; one layer), and the base's source goes into the image labels,
the build report and the publish gate.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from . import emulation
from .config import PythonVersion
from .contract import DEFAULT_PLATFORM
from .docker_client import Docker, DockerException, docker_error
from .errors import PipelineError
from .oci_index import platform_manifest
from .reference import parse_reference

BOOTSTRAP_REPOSITORY = "kerastack-base/debian"
# Bumped whenever `bootstrap` changes what goes into the rootfs, so an older base is not reused.
# 2: /etc/hosts exists. Without it BuildKit < 0.13 creates and removes a mount stub for it in every
# RUN step, and the step's layer gets /etc with the build's wall clock (not reproducible).
# 3: built `FROM scratch` + `ADD rootfs.tar /` with `--platform` (any architecture), provenance in labels.
BOOTSTRAP_RECIPE = 3
ETC_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
# Labels of a bootstrapped base: what it was made from (a build cannot set an import comment).
SUITE_LABEL, MIRROR_LABEL, RECIPE_LABEL, CREATED_LABEL = (f"io.kerastack.bootstrap.{n}" for n in ("suite", "mirror", "recipe", "created"))
BASE_DOCKERFILE = 'FROM scratch\nADD rootfs.tar /\nENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nCMD ["/bin/bash"]\n'
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
    platform: str = DEFAULT_PLATFORM
    index: str = ""  # an official base: the index (versions.toml's pin) this platform's manifest was chosen from


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


def record(docker: Docker, base: BaseImage) -> BaseRecord:
    """The base's image ID, and for a bootstrapped base the suite and mirror it was made from and when."""
    found = docker.inspect(base.ref)
    made = (found.config.labels or {}) if base.source == BOOTSTRAPPED else {}
    return BaseRecord(found.id, made.get(SUITE_LABEL, ""), made.get(MIRROR_LABEL, ""), made.get(CREATED_LABEL, ""))


def architecture(platform: str) -> str:
    """`linux/arm64` -> `arm64`: Debian's and OCI's architecture names agree for the platforms built here."""
    return platform.split("/", 2)[1]


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


def check_bootstrapped(docker: Docker, tag: str, suite: str, mirror: str, platform: str = DEFAULT_PLATFORM) -> None:
    """A local `tag` is reused only when it is what bootstrap makes of (suite, mirror) for `platform`: its labels
    say so, its config names that platform, and it is one layer (the rootfs)."""
    found = docker.inspect(tag)
    made = found.config.labels or {}
    claimed = (made.get(SUITE_LABEL, ""), made.get(MIRROR_LABEL, ""), made.get(RECIPE_LABEL, ""))
    found_platform = f"{found.os or ''}/{found.architecture or ''}"
    layers = len(found.root_fs.layers or [])
    if claimed != (suite, mirror, str(BOOTSTRAP_RECIPE)) or found_platform != platform or layers != 1:
        what = f"labels suite={claimed[0]!r} mirror={claimed[1]!r} recipe={claimed[2]!r}, platform {found_platform}, {layers} layers"
        raise PipelineError(
            f"{tag} is in the engine but is not a bootstrapped Debian {suite} from {mirror} for {platform} ({what}): "
            f"remove it (`docker image rm {tag}`) so it is bootstrapped again, or set DEBIAN_MIRROR to the mirror it came from"
        )


def bootstrap_tag(suite: str, platform: str = DEFAULT_PLATFORM) -> str:
    return f"{BOOTSTRAP_REPOSITORY}:{suite}-minbase-r{BOOTSTRAP_RECIPE}-{architecture(platform)}"


def apt_sources(suite: str, mirror: str) -> str:
    lines = [f"deb {mirror} {suite} main", f"deb {mirror} {suite}-updates main"]
    if suite not in ("sid", "unstable"):
        lines.append(f"deb {SECURITY_MIRROR} {suite}-security main")
    return "\n".join(lines) + "\n"


def resolve(docker: Docker, python: PythonVersion, *, offline: bool, mirror: str, platform: str = DEFAULT_PLATFORM) -> BaseImage:
    """The base for a Python version on `platform`: the official one (that platform's manifest of the pinned
    index, present locally or pulled by digest), or the offline recipe's (reused when checked, else bootstrapped).

    `offline` (KERASTACK_OFFLINE_BASE=1, resolved by the options) skips the official image and goes
    straight to the offline recipe; `mirror` is the Debian mirror it bootstraps from. Without it the
    recipe stands in only when no registry can be reached; any other failure is an error.
    """
    start = time.monotonic()
    if not offline:
        try:
            ref = official_ref(docker, python.base_image, platform)
            if docker.exists(ref):
                return BaseImage(ref, PULLED, reused=True, platform=platform, index=python.base_image)
            docker.pull(ref)
            return BaseImage(ref, PULLED, time.monotonic() - start, platform=platform, index=python.base_image)
        except DockerException as exc:
            message = docker_error(exc)
            if not registry_unreachable(message):
                raise PipelineError(
                    f"the base {python.base_image} for {platform} could not be had: {message}. The registry answered, so this is not an offline engine: "
                    "fix the access (docker login, wait out a rate limit), or ask for the offline base with KERASTACK_OFFLINE_BASE=1"
                ) from None
            print(f"kerastack: no registry reachable ({message}); using the offline base (publish refuses it unless --allow-bootstrapped-base)",
                  file=sys.stderr, flush=True)  # fmt: skip
    tag = bootstrap_tag(python.debian_suite, platform)
    if docker.exists(tag):
        check_bootstrapped(docker, tag, python.debian_suite, mirror, platform)
        return BaseImage(tag, BOOTSTRAPPED, reused=True, platform=platform)
    bootstrap(docker, python.debian_suite, tag, mirror, platform)
    return BaseImage(tag, BOOTSTRAPPED, time.monotonic() - start, platform=platform)


def official_ref(docker: Docker, index_ref: str, platform: str) -> str:
    """`NAME@sha256:...` of `platform`'s manifest in the pinned index (asks the registry: DockerException when it cannot)."""
    raw = docker.imagetools_inspect(index_ref, "--raw")
    try:
        index = json.loads(raw)
    except ValueError:
        raise PipelineError(f"the registry's answer for {index_ref} is not JSON: not building on a base whose manifest is unknown") from None
    name, _tag, _digest = parse_reference(index_ref)
    return f"{name}@{platform_manifest(index, platform, index_ref)}"


def _ensure_debootstrap() -> str:
    found = shutil.which("debootstrap") or (Path("/usr/sbin/debootstrap").exists() and "/usr/sbin/debootstrap")
    if found:
        return str(found)
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("kerastack: installing debootstrap to bootstrap a base image", file=sys.stderr, flush=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "debootstrap"], check=True, stdin=subprocess.DEVNULL, stdout=sys.stderr)
        return "/usr/sbin/debootstrap"
    raise PipelineError("no base image could be pulled and debootstrap is missing: install it (apt-get install debootstrap) or make the base pullable")


def bootstrap(docker: Docker, suite: str, tag: str, mirror: str, platform: str = DEFAULT_PLATFORM) -> None:
    if os.geteuid() != 0:
        raise PipelineError(
            f"no base image could be pulled, and bootstrapping {tag} with debootstrap needs root: "
            "run once as root, or make the official base pullable (check your registry access)"
        )
    arch = architecture(platform)
    foreign = platform != docker.engine_platform()
    if foreign:
        emulation.require(platform)  # debootstrap's second stage runs the target's binaries
    debootstrap = _ensure_debootstrap()
    print(f"kerastack: bootstrapping {tag} from Debian {suite} for {platform} ({mirror}); about {'2 min under QEMU' if foreign else '30 s'}",
          file=sys.stderr, flush=True)  # fmt: skip
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with tempfile.TemporaryDirectory(prefix="kerastack-rootfs-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        result = subprocess.run([debootstrap, f"--arch={arch}", "--variant=minbase", suite, str(rootfs), mirror], capture_output=True, text=True)
        if result.returncode != 0:
            raise PipelineError(f"debootstrap --arch={arch} {suite} failed:\n{(result.stdout + result.stderr)[-2000:]}")
        (rootfs / "etc/apt/sources.list").write_text(apt_sources(suite, mirror))
        (rootfs / "etc/hosts").write_text(ETC_HOSTS)
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists", "var/log"):
            for path in (rootfs / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        context = Path(tmp) / "context"
        context.mkdir()
        subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(context / "rootfs.tar"), "."], check=True, stdout=sys.stderr)
        shutil.rmtree(rootfs)
        (context / "Dockerfile").write_text(BASE_DOCKERFILE)
        labels = {SUITE_LABEL: suite, MIRROR_LABEL: mirror, RECIPE_LABEL: str(BOOTSTRAP_RECIPE), CREATED_LABEL: created}
        outcome = docker.build(tag, context_path=context, file=context / "Dockerfile", tags=[tag], platforms=[platform], labels=labels)
        if not outcome.ok:
            raise PipelineError(f"building the bootstrapped base {tag} for {platform} failed: {outcome.error}")
    check_bootstrapped(docker, tag, suite, mirror, platform)
