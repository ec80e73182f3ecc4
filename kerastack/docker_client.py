"""The pipeline's one Docker adapter, on python-on-whales: every Docker and registry call goes through here.

Engine probe, builds, images (inspect, layers, pull, push, tag, import, save, remove), containers,
the registry (`buildx imagetools`, login) and the build cache. `docker_error` is the one reader of
docker's last error line. scripts/launch is the exception: one standalone file users copy, with its own
small standard-library `docker()`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

from python_on_whales import DockerClient, DockerException
from python_on_whales.exceptions import NoSuchImage
from python_on_whales.utils import run as _run

__all__ = ["BuildOutcome", "CacheRecord", "Docker", "DockerException", "Layer", "docker_error"]

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


# `docker info`'s Architecture (uname -m of the engine's host) -> the OCI architecture name.
ENGINE_ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_CREATED_AT = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.(\d+))? ([+-]\d{4})\b")


@dataclass(frozen=True)
class CacheRecord:
    """One BuildKit cache record as `docker system df -v` lists it."""

    id: str
    parents: tuple[str, ...]
    type: str
    created: datetime

    @classmethod
    def parse(cls, record: Mapping) -> CacheRecord:
        """From the CLI's JSON: `ID` (a trailing `*` marks one in use), `Parent` (", "-joined when several),
        `CacheType`, `CreatedAt` ("2026-12-02 05:46:37.22157997 +0000 UTC")."""
        match = _CREATED_AT.match(str(record.get("CreatedAt", "")))
        if not match:
            raise DockerException(["docker", "system", "df"], 1, None, f"a build cache record with no readable CreatedAt: {record.get('CreatedAt')!r}".encode())
        stamp = f"{match.group(1)}.{(match.group(2) or '0')[:6]:0<6} {match.group(3)}"
        parents = tuple(p.strip() for p in str(record.get("Parent") or "").split(",") if p.strip())
        return cls(str(record["ID"]).rstrip("*"), parents, str(record.get("CacheType", "")), datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f %z"))


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

    def engine_platform(self) -> str:
        """The platform the engine builds and runs natively, e.g. `linux/amd64`; an engine that does not say
        is an error (never assumed to be amd64)."""
        info = self.info()
        arch = ENGINE_ARCHITECTURES.get(str(info.get("Architecture", "")))
        if not arch or not info.get("OSType"):
            said = f"OSType {info.get('OSType')!r}, Architecture {info.get('Architecture')!r}"
            raise DockerException(["docker", "info"], 1, None, f"the engine's platform is unknown: {said}".encode())
        return f"{info['OSType']}/{arch}"

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
        Never raises for a failed build; the outcome says what failed. A build whose connection to BuildKit
        broke (not a step that failed) is run once more: what it finished is in the cache."""
        first = self._build_once(result_ref, on_step, **buildx_options)
        if first.ok or not transient_build_error(first.error):
            return first
        on_step(f"BuildKit's connection broke ({first.error[-120:]}); building once more")
        again = self._build_once(result_ref, on_step, **buildx_options)
        note = f"kerastack: the build's connection to BuildKit broke ({first.error}); built once more"
        return dataclasses.replace(again, seconds=first.seconds + again.seconds, log=[*first.log, note, *again.log])

    def _build_once(self, result_ref: str, on_step: Callable[[str], None], **buildx_options) -> BuildOutcome:
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

    def build_cache_records(self) -> dict[str, CacheRecord]:
        """The engine's own BuildKit cache records (the default builder's) by ID; cache mounts (the pip and
        apt download caches) are left out. A listing of another shape is an error, never "no records"."""
        command = ["system", "df", "--verbose", "--format", "{{json .BuildCache}}"]
        output = self._raw(*command).strip()
        try:
            records = json.loads(output) if output else None
        except ValueError:
            records = "unreadable"
        if records is None:  # the engine has no build cache at all: the template prints null
            return {}
        if not isinstance(records, list) or not all(isinstance(r, dict) and r.get("ID") for r in records):
            raise DockerException(["docker", *command], 1, None, b"the build cache listing is not a list of records")
        return {record.id: record for record in map(CacheRecord.parse, records) if record.type != "exec.cachemount"}

    def remove_build_cache(self, records: Mapping[str, CacheRecord]) -> None:
        """Remove exactly these records of the engine's build cache, children before their parents (a record
        another one builds on cannot go first); one prune per record, as buildx takes one `id` filter. A
        record still in use stays (prune skips it): list again to see what went."""
        left = dict(records)
        while left:
            parents = {parent for record in left.values() for parent in record.parents}
            leaves = sorted(i for i in left if i not in parents)
            for record in leaves or sorted(left):  # a cycle cannot happen; if it did, try them all once
                self._raw("builder", "prune", "--force", f"--filter=id={record}")
                del left[record]

    # ---------------------------------------------------------------- images
    def image_id(self, ref: str) -> str | None:
        """The image's ID, or None when the engine says it has no such image; any other failure raises."""
        try:
            return self.client.image.inspect(ref).id
        except NoSuchImage:
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

    @contextlib.contextmanager
    def save_stream(self, ref: str) -> Iterator[IO[bytes]]:
        """`docker save` one image as a pipe, to be read front to back: nothing lands on disk. A save that
        fails raises docker's own error (also when the reader met the short archive first); a reader that
        stops early raises too (never a short archive read as a whole one)."""
        command = [str(part) for part in self.client.docker_cmd] + ["image", "save", ref]
        with tempfile.TemporaryFile() as errors, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors) as process:
            assert process.stdout is not None
            try:
                yield process.stdout
                trailing = _drain(process.stdout, limit=1 << 20)  # tar's end blocks; nothing else may follow
            except BaseException as exc:
                try:
                    returncode = process.wait(timeout=2)  # docker ended first: its failure is the cause
                except subprocess.TimeoutExpired:
                    returncode = None
                process.kill()
                process.wait()
                errors.seek(0)
                if returncode not in (None, 0):
                    raise DockerException(command, returncode, None, errors.read()) from exc
                raise
            if trailing > 1 << 20:  # the reader stopped early: docker may still be writing, never wait on it
                process.kill()
                process.wait()
                raise DockerException(command, 1, None, b"more than 1 MiB after the end of the archive was not read")
            returncode = process.wait()
            errors.seek(0)
            if returncode != 0:
                raise DockerException(command, returncode, None, errors.read())

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

    def read_file(self, ref: str, path: str, **options) -> str:
        """A text file of an image, read by a throwaway container (run as root, without the entrypoint)."""
        return self.run(ref, ["cat", path], entrypoint="", user="root", **options)

    def start(self, ref: str, **options) -> None:
        """A detached container (`docker run -d`)."""
        self.client.run(ref, detach=True, **options)

    def remove_container(self, name: str) -> None:
        with contextlib.suppress(DockerException):
            self.client.container.remove(name, force=True)

    def container_exists(self, name: str) -> bool:
        return bool(self.client.container.exists(name))

    # ---------------------------------------------------------------- volumes
    def create_volume(self, name: str) -> None:
        self.client.volume.create(name)

    def volume_exists(self, name: str) -> bool:
        return bool(self.client.volume.exists(name))

    def remove_volumes(self, names: Sequence[str]) -> None:
        """Remove exactly these named volumes; one that is gone already stays gone."""
        for name in names:
            if self.volume_exists(name):
                self.client.volume.remove(name)

    # ---------------------------------------------------------------- registries
    def imagetools_inspect(self, ref: str, *args: str) -> str:
        return self._raw("buildx", "imagetools", "inspect", ref, *args)

    def imagetools_create(self, sources: Sequence[str], tags: Sequence[str]) -> None:
        self.client.buildx.imagetools.create(sources=list(sources), tags=list(tags))

    def login(self, registry: str, user: str, password: str) -> None:
        """Through stdin, never the command line; captured, so docker's notes stay out of the log."""
        self._raw("login", registry, "--username", user, "--password-stdin", input=password.encode())


def _drain(stream: IO[bytes], limit: int) -> int:
    """Read what is left of `stream`, in pieces, up to just past `limit` bytes; how many were read."""
    total = 0
    while total <= limit and (piece := stream.read(1 << 16)):
        total += len(piece)
    return total


# BuildKit's session or its gRPC stream ended under the build (seen once on a freshly started Engine 20.10,
# on the first RUN step of a build): the engine's transport, not the Dockerfile. A step that failed says
# "executor failed running" / "did not complete successfully" instead, and is never retried.
_TRANSIENT = re.compile(r"rpc error: code = (Internal|Unavailable) desc = (unexpected EOF|transport is closing|error reading from server: EOF)", re.I)


def transient_build_error(error: str) -> bool:
    """Whether a failed build's error is BuildKit's broken connection rather than a failed step."""
    return bool(_TRANSIENT.search(error)) and "executor failed running" not in error and "did not complete successfully" not in error


def _last_error(log: Sequence[str]) -> str:
    for line in reversed(log):
        if "ERROR" in line or "error:" in line.lower():
            return line.strip()
    return ""
