"""The pipeline's one Docker adapter (python-on-whales): build, inspect, layers, tag, push, remove."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from python_on_whales import DockerException, docker
from python_on_whales.utils import run as run_docker

from .plan import DOCKERFILE, BuildPlan

_STEP = re.compile(r"^#(\d+) \[([^\]]+)\] (.*)$")
_CACHED = re.compile(r"^#(\d+) CACHED$")


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


def builder_name(explicit: str | None = None) -> str | None:
    """An existing buildx builder to use (e.g. a remote BuildKit): --builder, else BUILDX_BUILDER."""
    return explicit or os.environ.get("BUILDX_BUILDER") or None


def parse_buildkit_version(text: str | None) -> tuple[int, int] | None:
    """`v0.8+unknown` -> (0, 8); `v0.13.2` -> (0, 13); None when unknown."""
    match = re.match(r"^v?(\d+)\.(\d+)", (text or "").strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


REWRITE_TIMESTAMP_SINCE = (0, 13)  # BuildKit's `rewrite-timestamp=true` output option
SOURCE_DATE_EPOCH_SINCE = (0, 11)  # BuildKit sets created/history times from SOURCE_DATE_EPOCH


@functools.cache
def buildkit_version(builder: str | None = None) -> str:
    """The BuildKit version of a buildx builder (`docker buildx inspect`), e.g. `v0.8+unknown`; "" when unknown.

    An unknown version means no `rewrite-timestamp`: the Dockerfile's own clamping still applies, and a
    builder that does not exist fails the build itself, with buildx's message.
    """
    try:
        found = docker.buildx.inspect(builder, bootstrap=True)  # a docker-container builder shows its version once started
    except DockerException:
        return ""
    return next((node.version for node in found.nodes if node.version), "")


def rewrites_timestamps(builder: str | None = None) -> bool:
    version = parse_buildkit_version(buildkit_version(builder))
    return version is not None and version >= REWRITE_TIMESTAMP_SINCE


def build(
    plan: BuildPlan,
    context: Path,
    *,
    secrets: Sequence[str] = (),
    builder: str | None = None,
    cache_from: str | None = None,
    cache_to: str | None = None,
    no_cache: bool = False,
    extra_tags: Sequence[str] = (),
    only_tags: Sequence[str] = (),
    on_step: Callable[[str], None] = lambda step: None,
) -> BuildOutcome:
    """Build one plan with buildx, streaming the plain log; never raises for a failed build.

    `only_tags` replaces the plan's tags (throwaway builds such as the reproducibility check).
    Where the builder's BuildKit can (>= 0.13), it also clamps every file time in the layers to
    SOURCE_DATE_EPOCH itself (`rewrite-timestamp`); the Dockerfile does it on older ones.
    """
    tags = list(only_tags) or [*plan.local_refs, *extra_tags]
    output = {"type": "docker", "rewrite-timestamp": "true"} if rewrites_timestamps(builder_name(builder)) else None
    return _stream_build(
        tags[0],
        on_step,
        output=output,
        context_path=context,
        file=context / DOCKERFILE,
        target=plan.target,
        tags=tags,
        build_args=dict(plan.build_args),
        labels=dict(plan.labels),
        secrets=list(secrets),
        builder=builder_name(builder),
        cache_from=cache_from,
        cache_to=cache_to,
        cache=not no_cache,
    )


def build_dockerfile(dockerfile: Path, context: Path, tag: str, build_args: dict[str, str], secrets: Sequence[str] = ()) -> BuildOutcome:
    """A plain build of another Dockerfile (the naive baseline), tagged `tag`."""
    return _stream_build(tag, lambda step: None, context_path=context, file=dockerfile, tags=[tag], build_args=build_args, secrets=list(secrets))


def _stream_build(result_ref: str, on_step: Callable[[str], None], **buildx_options) -> BuildOutcome:
    """Run `docker buildx build` with a plain, streamed log: the steps, which were cached, the outcome."""
    start = time.monotonic()
    log: list[str] = []
    steps: dict[str, str] = {}
    cached: set[str] = set()
    if output := buildx_options.pop("output", None):
        buildx_options["output"] = output  # an explicit docker-type output loads the image as --load would
    else:
        buildx_options["load"] = True
    try:
        for line in docker.buildx.build(progress="plain", stream_logs=True, **buildx_options):
            line = line.rstrip("\n")
            log.append(line)
            if match := _STEP.match(line):
                steps[match.group(1)] = match.group(2)
                on_step(f"[{match.group(2)}] {match.group(3)[:60]}")
            elif match := _CACHED.match(line):
                cached.add(match.group(1))
    except DockerException as exc:
        return BuildOutcome(False, time.monotonic() - start, log=log, error=_last_error(log) or str(exc).strip()[-500:])
    image_id = docker.image.inspect(result_ref).id
    return BuildOutcome(True, time.monotonic() - start, image_id, len(cached & steps.keys()), len(steps), log)


def _last_error(log: Sequence[str]) -> str:
    for line in reversed(log):
        if "ERROR" in line or "error:" in line.lower():
            return line.strip()
    return ""


def image_id(ref: str) -> str | None:
    try:
        return docker.image.inspect(ref).id
    except DockerException:
        return None


def image_size(ref: str) -> int:
    return int(docker.image.inspect(ref).size)


VENV = "/opt/venv"


def bytecode_size(ref: str) -> int:
    """Bytes of the .pyc files the image ships in its venv (what compiling at build time adds to its size)."""
    listing = docker.run(ref, [VENV, "-name", "*.pyc", "-printf", "%s\\n"], entrypoint="find", remove=True, user="keras", networks=["none"])
    return sum(int(line) for line in str(listing).split() if line.isdigit())


def labels(ref: str) -> dict[str, str]:
    return dict(docker.image.inspect(ref).config.labels or {})


# The diff ID of an empty layer (BuildKit writes one for a WORKDIR that already exists).
EMPTY_LAYER = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"


def layers(ref: str) -> list[Layer]:
    """The image's layers, bottom first, with their uncompressed sizes.

    Sizes come from the history, whose non-zero entries are, in order, the non-empty layers.
    """
    diff_ids = list(docker.image.inspect(ref).root_fs.layers or [])
    # python-on-whales has no `image history` yet: run it through its own runner and client config.
    out = run_docker(docker.docker_cmd + ["image", "history", "--human=false", "--format", "{{.Size}}", ref])
    sizes = [int(line) for line in reversed(out.split()) if int(line) > 0]
    non_empty = [d for d in diff_ids if d != EMPTY_LAYER]
    if len(sizes) != len(non_empty):
        raise DockerException(["docker", "image", "history", ref], 1, None, b"history does not match the image's layers")
    by_id = dict(zip(non_empty, sizes, strict=True))
    return [Layer(d, by_id.get(d, 0)) for d in diff_ids]


def read_file(ref: str, path: str) -> str:
    """A text file of an image, read by a throwaway container (run as root, without the entrypoint)."""
    return docker.run(ref, ["cat", path], remove=True, entrypoint="", user="root")


def save(ref: str, archive: Path) -> None:
    """`docker save` one image into a tar archive (manifest.json, config, one tar per layer)."""
    docker.image.save(ref, output=archive)


def tag(source: str, target: str) -> None:
    docker.image.tag(source, target)


def remove_images(refs: Sequence[str]) -> None:
    for ref in refs:
        with contextlib.suppress(DockerException):
            docker.image.remove(ref, force=False)


def prune_build_cache(keep_storage: str, builder: str | None = None) -> None:
    """Shrink the BuildKit cache (least recently used first) to `keep_storage`, e.g. "16GB"."""
    name = builder_name(builder)
    run_docker(docker.docker_cmd + ["buildx", "prune", "--force", "--keep-storage", keep_storage, *(["--builder", name] if name else [])])
