"""The pipeline's one Docker adapter, on python-on-whales: every Docker and registry call goes through here.

Engine probe, builds, images (inspect, layers, pull, push, tag, import, save, remove), containers,
the registry (`buildx imagetools`, login) and the build cache. `docker_error` is the one reader of
docker's last error line. scripts/launch is the exception: one standalone file users copy, with its own
small standard-library `docker()`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from python_on_whales import DockerClient, DockerException
from python_on_whales.utils import run as _run

__all__ = ["BuildOutcome", "Docker", "DockerException", "Layer", "docker_error"]

_STEP = re.compile(r"^#(\d+) \[([^\]]+)\] (.*)$")
_CACHED = re.compile(r"^#(\d+) CACHED$")
# The diff ID of an empty layer (BuildKit writes one for a WORKDIR that already exists).
EMPTY_LAYER = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
REWRITE_TIMESTAMP_SINCE = (0, 13)  # BuildKit's `rewrite-timestamp=true` output option
SOURCE_DATE_EPOCH_SINCE = (0, 11)  # BuildKit sets created/history times from SOURCE_DATE_EPOCH


def docker_error(exc: BaseException) -> str:
    """The line of a failed docker command that says what went wrong (its last line of stderr)."""
    text = (getattr(exc, "stderr", None) or str(exc) or "").strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"


def parse_buildkit_version(text: str | None) -> tuple[int, int] | None:
    """`v0.8+unknown` -> (0, 8); `v0.13.2` -> (0, 13); None when unknown."""
    match = re.match(r"^v?(\d+)\.(\d+)", (text or "").strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


@dataclass
class BuildOutcome:
    ok: bool
    seconds: float
    image_id: str = ""
    cached_steps: int = 0
    total_steps: int = 0
    log: list[str] = field(default_factory=list)
    error: str = ""


@dataclass(frozen=True)
class Layer:
    diff_id: str
    size: int


class Docker:
    """One Docker client: the user's configuration, or `config` (a throwaway folder a login writes to)."""

    def __init__(self, config: str | None = None) -> None:
        self.client = DockerClient(config=config) if config else DockerClient()

    def _raw(self, *args: str, input: bytes | None = None) -> str:
        """A docker command python-on-whales has no call for, run through its runner and client config."""
        return _run(self.client.docker_cmd + list(args), input=input)

    # ---------------------------------------------------------------- the engine
    @staticmethod
    def cli_installed() -> bool:
        return shutil.which("docker") is not None

    def server_version(self) -> str:
        """The engine's version; DockerException when the daemon does not answer."""
        return str(self.client.version().server.version)

    def buildx_installed(self) -> bool:
        try:
            self._raw("buildx", "version")
            return True
        except DockerException:
            return False

    def info(self) -> dict:
        return json.loads(self._raw("info", "--format", "{{json .}}"))

    # ---------------------------------------------------------------- builds
    @functools.cache  # noqa: B019 (one adapter per process; the builder does not change under it)
    def buildkit_version(self, builder: str | None = None) -> str:
        """The BuildKit version of a buildx builder, e.g. `v0.8+unknown`; "" when unknown.

        An unknown version means no `rewrite-timestamp`: the Dockerfile's own clamping still applies, and a
        builder that does not exist fails the build itself, with buildx's message.
        """
        try:
            found = self.client.buildx.inspect(builder, bootstrap=True)  # a docker-container builder shows its version once started
        except DockerException:
            return ""
        return next((node.version for node in found.nodes if node.version), "")

    def rewrites_timestamps(self, builder: str | None = None) -> bool:
        version = parse_buildkit_version(self.buildkit_version(builder))
        return version is not None and version >= REWRITE_TIMESTAMP_SINCE

    def build(self, result_ref: str, on_step: Callable[[str], None] = lambda step: None, **buildx_options) -> BuildOutcome:
        """Run `docker buildx build` with a plain, streamed log: the steps, which were cached, the outcome.
        Never raises for a failed build; the outcome says what failed."""
        start = time.monotonic()
        log: list[str] = []
        steps: dict[str, str] = {}
        cached: set[str] = set()
        if not buildx_options.get("output"):
            buildx_options.pop("output", None)
            buildx_options["load"] = True  # an explicit docker-type output loads the image as --load would
        try:
            for line in self.client.buildx.build(progress="plain", stream_logs=True, **buildx_options):
                line = line.rstrip("\n")
                log.append(line)
                if match := _STEP.match(line):
                    steps[match.group(1)] = match.group(2)
                    on_step(f"[{match.group(2)}] {match.group(3)[:60]}")
                elif match := _CACHED.match(line):
                    cached.add(match.group(1))
        except DockerException as exc:
            return BuildOutcome(False, time.monotonic() - start, log=log, error=_last_error(log) or str(exc).strip()[-500:])
        image_id = self.client.image.inspect(result_ref).id
        return BuildOutcome(True, time.monotonic() - start, image_id, len(cached & steps.keys()), len(steps), log)

    def prune_build_cache(self, keep_storage: str, builder: str | None = None) -> None:
        """Shrink the BuildKit cache (least recently used first) to `keep_storage`, e.g. "16GB"."""
        self._raw("buildx", "prune", "--force", "--keep-storage", keep_storage, *(["--builder", builder] if builder else []))

    # ---------------------------------------------------------------- images
    def image_id(self, ref: str) -> str | None:
        """The image's ID, or None when the engine has no such image."""
        try:
            return self.client.image.inspect(ref).id
        except DockerException:
            return None

    def exists(self, ref: str) -> bool:
        return self.client.image.exists(ref)

    def inspect(self, ref: str):
        return self.client.image.inspect(ref)

    def size(self, ref: str) -> int:
        return int(self.client.image.inspect(ref).size)

    def repo_digests(self, ref: str) -> list[str]:
        return list(self.client.image.inspect(ref).repo_digests or [])

    def layers(self, ref: str) -> list[Layer]:
        """The image's layers, bottom first, with their uncompressed sizes.

        Sizes come from the history, whose non-zero entries are, in order, the non-empty layers.
        """
        diff_ids = list(self.client.image.inspect(ref).root_fs.layers or [])
        out = self._raw("image", "history", "--human=false", "--format", "{{.Size}}", ref)  # python-on-whales has no `image history`
        sizes = [int(line) for line in reversed(out.split()) if int(line) > 0]
        non_empty = [d for d in diff_ids if d != EMPTY_LAYER]
        if len(sizes) != len(non_empty):
            raise DockerException(["docker", "image", "history", ref], 1, None, b"history does not match the image's layers")
        by_id = dict(zip(non_empty, sizes, strict=True))
        return [Layer(d, by_id.get(d, 0)) for d in diff_ids]

    def pull(self, ref: str) -> None:
        self.client.image.pull(ref, quiet=True)

    def push(self, ref: str) -> None:
        self.client.image.push(ref, quiet=True)

    def tag(self, source: str, target: str) -> None:
        self.client.image.tag(source, target)

    def save(self, ref: str, archive: Path) -> None:
        """`docker save` one image into a tar archive (manifest.json, config, one tar per layer)."""
        self.client.image.save(ref, output=archive)

    def import_rootfs(self, archive: Path, tag: str, changes: Sequence[str], message: str) -> None:
        self.client.image.import_(archive, tag=tag, changes=list(changes), message=message)

    def remove_images(self, refs: Sequence[str]) -> None:
        """Untag each reference (never forced); one that is gone already or still used stays as it is."""
        for ref in refs:
            with contextlib.suppress(DockerException):
                self.client.image.remove(ref, force=False)

    # ---------------------------------------------------------------- containers
    def run(self, ref: str, command: Sequence[str], **options) -> str:
        """Run a throwaway container to the end and return its output (`remove=True` unless told otherwise)."""
        return str(self.client.run(ref, list(command), remove=options.pop("remove", True), **options))

    def read_file(self, ref: str, path: str) -> str:
        """A text file of an image, read by a throwaway container (run as root, without the entrypoint)."""
        return self.run(ref, ["cat", path], entrypoint="", user="root")

    def start(self, ref: str, **options) -> None:
        """A detached container (`docker run -d`)."""
        self.client.run(ref, detach=True, **options)

    def remove_container(self, name: str) -> None:
        with contextlib.suppress(DockerException):
            self.client.container.remove(name, force=True)

    # ---------------------------------------------------------------- registries
    def imagetools_inspect(self, ref: str, *args: str) -> str:
        return self._raw("buildx", "imagetools", "inspect", ref, *args)

    def imagetools_create(self, sources: Sequence[str], tags: Sequence[str]) -> None:
        self.client.buildx.imagetools.create(sources=list(sources), tags=list(tags))

    def login(self, registry: str, user: str, password: str) -> None:
        """Through stdin, never the command line; captured, so docker's notes stay out of the log."""
        self._raw("login", registry, "--username", user, "--password-stdin", input=password.encode())


def _last_error(log: Sequence[str]) -> str:
    for line in reversed(log):
        if "ERROR" in line or "error:" in line.lower():
            return line.strip()
    return ""
