"""Publishing, the effects half: push the steps of a publish plan, check what the registry then holds, and
record what happened (kerastack.publish_plan decides the steps)."""

from __future__ import annotations

import json
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .contract import DEFAULT_PLATFORM
from .docker_client import Docker, DockerException, docker_error
from .errors import PipelineError
from .files import write_atomic
from .publish_plan import CELL, STAGING, PublishPlan, PublishResult, PushStep
from .tags import IMMUTABLE, MOVING

_NOT_RETRYABLE = re.compile(r"unauthorized|denied|authentication required|no basic auth credentials|not found: manifest unknown", re.I)


@contextmanager
def registry_client(registry: str, credentials: tuple[str, str] | None) -> Iterator[Docker]:
    """A Docker client for pushing. With credentials (REGISTRY_USER/REGISTRY_PASSWORD, resolved by the
    options) it logs in into a throwaway config that is deleted afterwards; otherwise it uses the user's
    `docker login`."""
    if credentials is None:
        yield Docker()
        return
    user, password = credentials
    with tempfile.TemporaryDirectory(prefix="kerastack-docker-config-") as config_dir:
        client = Docker(config=config_dir)
        try:
            client.login(registry, user, password)
        except DockerException as exc:
            raise PipelineError(f"login to {registry} as {user} failed: {_redact(str(exc.stderr or exc), password)}") from None
        yield client


def _redact(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def with_retries(action: Callable[[], None], what: str, attempts: int, backoff: float, log: Callable[[str], None]) -> None:
    attempts = max(1, attempts)  # zero attempts would report success for work never done
    for attempt in range(1, attempts + 1):
        try:
            action()
            return
        except DockerException as exc:
            message = docker_error(exc)
            if _NOT_RETRYABLE.search(message) or attempt == attempts:
                raise PipelineError(f"{what} failed after {attempt} attempt(s): {message}") from None
            delay = backoff * 2 ** (attempt - 1)
            log(f"{what}: {message}; retrying in {delay:.1f} s ({attempt}/{attempts})")
            time.sleep(delay)


@dataclass(frozen=True)
class RemoteImage:
    manifest_digest: str  # what the tag points at
    config_digest: str  # the image's config: equal to the local image id when the content is the same


def _inspect(client: Docker, ref: str, *args: str) -> str | None:
    """`imagetools inspect`; None only when the registry says the tag does not exist. Anything else
    (network, auth, server errors) raises: a guard that cannot read the tag must not assume it is free."""
    try:
        return client.imagetools_inspect(ref, *args)
    except DockerException as exc:
        message = docker_error(exc)
        if message.rstrip().endswith(f"{ref}: not found"):
            return None
        raise PipelineError(f"cannot read {ref} from the registry ({message}): not pushing over a tag whose state is unknown") from None


def _platform_of(entry: dict) -> str:
    found = entry.get("platform") or {}
    return f"{found.get('os', '')}/{found.get('architecture', '')}"


def remote_image(client: Docker, ref: str, platform: str = DEFAULT_PLATFORM) -> RemoteImage | None:
    """What a tag (or REPOSITORY@DIGEST) holds in the registry, or None when it does not exist. For an index,
    the image of `platform`: exactly one entry of the index must be it."""
    described = _inspect(client, ref, "--format", "{{json .Manifest}}")
    if described is None:
        return None
    raw = _inspect(client, ref, "--raw")
    try:
        manifest_digest = json.loads(described)["digest"]
        manifest = json.loads(raw or "")
        if "manifests" in manifest:  # an index: the entry of the asked platform
            found = [m for m in manifest["manifests"] if _platform_of(m) == platform]
            if len(found) != 1:
                raise ValueError(f"the index lists {len(found)} {platform} images, not one")
            manifest = json.loads(_inspect(client, f"{ref.rsplit(':', 1)[0].split('@', 1)[0]}@{found[0]['digest']}", "--raw") or "")
        return RemoteImage(manifest_digest, manifest["config"]["digest"])
    except (ValueError, KeyError, TypeError) as exc:
        raise PipelineError(f"cannot understand the manifest of {ref} ({exc!r}): not pushing over it") from None


@dataclass(frozen=True)
class RemoteIndex:
    digest: str  # what the tag points at
    platforms: dict[str, str]  # platform -> manifest digest; {} when the tag holds one image, not an index
    entries: int  # how many manifests the index lists (a platform listed twice is not an index this project makes)


def remote_index(client: Docker, ref: str) -> RemoteIndex | None:
    """The index a tag holds (`imagetools inspect --raw`), or None when the tag does not exist."""
    described = _inspect(client, ref, "--format", "{{json .Manifest}}")
    if described is None:
        return None
    raw = _inspect(client, ref, "--raw")
    try:
        digest, manifest = json.loads(described)["digest"], json.loads(raw or "")
        entries = manifest.get("manifests")
        if entries is None:
            return RemoteIndex(digest, {}, 0)
        return RemoteIndex(digest, {_platform_of(m): m["digest"] for m in entries}, len(entries))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PipelineError(f"cannot understand the manifest of {ref} ({exc!r}): not pushing over it") from None


def _listed(index: RemoteIndex | None) -> str:
    if index is None:
        return "nothing"
    if not index.entries:
        return f"one image, not an index ({index.digest})"
    return ", ".join(f"{p} {d}" for p, d in sorted(index.platforms.items())) + ("" if index.entries == len(index.platforms) else " (a platform twice)")


def _exactly(index: RemoteIndex | None, expected: dict[str, str]) -> bool:
    return index is not None and index.entries == len(index.platforms) and index.platforms == expected


def remote_digest(client: Docker, ref: str) -> str | None:
    described = _inspect(client, ref, "--format", "{{json .Manifest}}")
    if described is None:
        return None
    try:
        return json.loads(described)["digest"]
    except (ValueError, KeyError, TypeError) as exc:
        raise PipelineError(f"cannot understand the manifest of {ref} ({exc!r})") from None


def execute(
    plan: PublishPlan,
    client: Docker,
    *,
    dry_run: bool = False,
    attempts: int = 4,
    backoff: float = 2.0,
    log: Callable[[str], None] = print,
    report: Path | None = None,
) -> PublishResult:
    """Carry the plan out. With `report`, the publish report is written there (atomically) after every
    step and at the end, whatever happens: a stopped or interrupted publish still says what it pushed."""
    result = PublishResult(held_back=dict(plan.held_back), ok=not plan.held_back)
    try:
        _execute(plan, client, result, dry_run, attempts, backoff, log, report)
    except BaseException as exc:  # an interruption or a bug: the report still says what was pushed
        result.ok = False
        result.held_back.setdefault("*", f"publish stopped: {type(exc).__name__}: {exc}; already pushed: {_already_pushed(result) or 'nothing'}")
        raise
    finally:
        if report is not None and not dry_run:
            write_atomic(report, result.to_json())
    return result


def _already_pushed(result: PublishResult) -> str:
    entries = [*result.cells.values(), *result.stems.values()]
    return ", ".join([ref for entry in entries for ref in entry["tags"]] + list(result.moved))


def _entry(result: PublishResult, step: PushStep) -> dict | None:
    """The report entry a step writes: its cell's, its stem's (an index), or None for a moving tag."""
    if step.kind == MOVING:
        return None
    if step.stem:
        return result.stems.setdefault(step.stem, {"pushed": False, "tags": [], "not_pushed": {}, "digest": "", "platforms": {}})
    return result.cells.setdefault(step.cell, {"pushed": False, "tags": [], "not_pushed": {}, "digest": "", "size": 0, **step.facts})


def _execute(plan, client, result, dry_run, attempts, backoff, log, report) -> None:
    for cell, why in plan.held_back:
        log(f"held back {cell}: {why}")
    if plan.moving_held_back:
        log(f"moving tags stay where they are: {plan.moving_held_back}")
    for step in plan.steps:
        entry = _entry(result, step)
        if dry_run:
            what = "move" if step.kind == MOVING else ("create the index" if step.parts else "push")
            log(f"would {what} {step.ref}  ({step.kind}{', of ' + ', '.join(p.platform for p in step.parts) if step.parts else ''})")
            continue
        stopped = [c for c, e in [*result.cells.items(), *result.stems.items()] if e.get("error")]
        if entry is not None and entry.get("error"):
            entry["not_pushed"][step.ref] = "an earlier tag of this cell failed"
            continue
        if entry is None and stopped:
            result.not_moved[step.ref] = f"cell(s) {', '.join(stopped)} failed, so no moving tag moves"
            continue
        try:
            try:
                if step.kind == MOVING:
                    source = step.source
                    if step.stem:  # the index this run made
                        made = result.stems.get(step.stem) or {}
                        if not made.get("pushed"):
                            raise PipelineError(f"the index of {step.stem} was not pushed in this run: {step.ref} stays")
                        source = f"{step.ref.rsplit(':', 1)[0]}@{made['digest']}"
                    if "@" in source:
                        with_retries(lambda s=source, r=step.ref: client.imagetools_create([s], [r]), f"moving {step.ref}", attempts, backoff, log)
                        wanted, now = source.split("@", 1)[1], remote_digest(client, step.ref)
                        if now != wanted:
                            held = now or "nothing"
                            raise PipelineError(f"moved {step.ref} to {wanted} but the registry says it holds {held}: publish the moving tags again")
                        result.moved[step.ref] = wanted
                        log(f"moved {step.ref} -> {source}")
                        continue
                if step.parts:
                    digest, pushed, platforms = _push_index(client, step, result, attempts, backoff, log)
                    size = 0
                else:
                    digest, pushed = _push_tag(client, step, attempts, backoff, log)
                    size = client.size(step.source) if entry is not None else 0
            except DockerException as exc:  # a Docker step outside the retried push: inspect, tag, size
                raise PipelineError(f"{step.ref}: docker failed: {docker_error(exc)}") from None
        except PipelineError as exc:
            # This cell (or stem) stops here; others go on. Moving tags then stay, since one is missing.
            why = f"{exc} (already pushed: {_already_pushed(result) or 'nothing'})"
            log(f"stopped {step.cell} at {step.ref}: {why}")
            result.ok = False
            if entry is None:
                result.not_moved[step.ref] = why
            else:
                entry["error"] = why
                entry["not_pushed"][step.ref] = str(exc)
                result.held_back[step.cell] = why
            _checkpoint(report, result)
            continue
        if entry is None:
            result.moved[step.ref] = digest
            log(f"moved {step.ref} -> {digest}")
        else:
            entry["tags"].append(step.ref)
            entry["digest"] = digest
            if step.parts:
                entry["platforms"] = platforms
            else:
                entry["size"] = size
            entry["pushed"] = step.kind in (CELL, STAGING) or entry["pushed"]
            log(f"{'pushed' if pushed else 'kept'} {step.ref} ({step.kind}{' index of ' + ', '.join(platforms) if step.parts else ''}) {digest}")
        _checkpoint(report, result)
    for name, entry in [*result.cells.items(), *result.stems.items()]:
        if not dry_run and not entry["pushed"]:
            result.ok = False
            result.held_back.setdefault(name, "only partly pushed")


def _checkpoint(report: Path | None, result: PublishResult) -> None:
    if report is not None:
        write_atomic(report, result.to_json())


def _push_tag(client: Docker, step: PushStep, attempts: int, backoff: float, log: Callable[[str], None]) -> tuple[str, bool]:
    """Push one tag; (its digest in the registry, whether it was pushed now or was already there)."""
    if not client.exists(step.source):
        raise PipelineError(f"{step.cell}: the built image {step.source[:19]} is no longer in the engine: rebuild and smoke-test it again")
    local_id = client.inspect(step.source).id
    if step.image_id and local_id != step.image_id:
        raise PipelineError(f"{step.cell}: {step.source} is no longer the image that was built and smoke-tested (rebuilt since?): run smoke again")
    platform = step.facts.get("platform") or DEFAULT_PLATFORM
    if step.kind in (IMMUTABLE, STAGING):  # staging tags never move either
        existing = remote_image(client, step.ref, platform)
        if existing is not None:
            # The registry's own record decides, not this engine's RepoDigests (a fresh runner has none):
            # the same config digest is the same image.
            if existing.config_digest != local_id:
                raise PipelineError(
                    f"{step.ref} already exists in the registry with other content (image {existing.config_digest[:19]}, "
                    f"this one is {local_id[:19]}); immutable tags never move. Rebuild from a new commit to get a new immutable tag."
                )
            log(f"{step.ref} is already in the registry with this content ({existing.manifest_digest}); not pushing it again")
            return existing.manifest_digest, False
    if step.ref != step.source:
        client.tag(step.source, step.ref)
    with_retries(lambda: client.push(step.ref), f"pushing {step.ref}", attempts, backoff, log)
    # The tag was pushed by its (mutable) name: the registry's record, not the push, says what it now holds.
    pushed = remote_image(client, step.ref, platform)
    if pushed is None:
        raise PipelineError(f"pushed {step.ref} but the registry does not show it (image {local_id[:19]})")
    if pushed.config_digest != (step.image_id or local_id):
        raise PipelineError(
            f"pushed {step.ref} but the registry holds image {pushed.config_digest[:19]}, not the smoke-tested {(step.image_id or local_id)[:19]} "
            "(retagged while pushing?): no moving tag follows; publish again"
        )
    return pushed.manifest_digest, True


def _push_index(client: Docker, step: PushStep, result: PublishResult, attempts: int, backoff: float, log: Callable[[str], None]) -> tuple[str, bool, dict]:
    """One multi-platform index under `step.ref`; (its digest, whether it was made now, {platform: cell,
    digest, image_id}). Every platform's manifest is read back by digest first and must name the smoke-tested
    image; an immutable tag that holds anything but exactly this index is refused; the index is read back
    after it is made and must list exactly these platforms with these digests."""
    repository = step.ref.rsplit(":", 1)[0]
    expected: dict[str, str] = {}
    platforms: dict[str, dict] = {}
    for part in step.parts:
        digest = part.digest
        if not digest:  # this run's staging push
            staged = result.cells.get(part.cell) or {}
            if not staged.get("pushed") or staged.get("error"):
                raise PipelineError(f"{part.cell} ({part.platform}) was not pushed under {part.source}: no index without every platform")
            digest = staged["digest"]
        found = remote_image(client, f"{repository}@{digest}", part.platform)
        if found is None:
            raise PipelineError(f"the {part.platform} image {repository}@{digest} ({part.cell}) is not in the registry: push its platform again")
        if found.config_digest != part.image_id:
            raise PipelineError(
                f"the {part.platform} image {repository}@{digest} is image {found.config_digest[:19]}, not the smoke-tested {part.image_id[:19]} of {part.cell}"
            )
        expected[part.platform] = digest
        platforms[part.platform] = {"cell": part.cell, "digest": digest, "image_id": part.image_id}
    if step.kind == IMMUTABLE:
        existing = remote_index(client, step.ref)
        if existing is not None:
            if not _exactly(existing, expected):
                raise PipelineError(
                    f"{step.ref} already exists in the registry with other content ({_listed(existing)}; this index is "
                    f"{', '.join(f'{p} {d}' for p, d in sorted(expected.items()))}); immutable tags never move. "
                    "Rebuild from a new commit to get a new immutable tag."
                )
            log(f"{step.ref} is already in the registry with this index ({existing.digest}); not making it again")
            return existing.digest, False, platforms
        sources = [f"{repository}@{d}" for d in expected.values()]
        wanted = ""
    else:  # the cell tag: a copy of the immutable index, by its digest
        made = result.stems.get(step.stem) or {}
        if not made.get("digest"):
            raise PipelineError(f"the immutable index of {step.stem} was not made in this run: {step.ref} stays")
        wanted = made["digest"]
        sources = [f"{repository}@{wanted}"]
    with_retries(lambda: client.imagetools_create(sources, [step.ref]), f"creating the index {step.ref}", attempts, backoff, log)
    now = remote_index(client, step.ref)
    if not _exactly(now, expected) or (wanted and now.digest != wanted):
        raise PipelineError(
            f"made the index {step.ref} but the registry's copy lists {_listed(now)}, not exactly "
            f"{', '.join(f'{p} {d}' for p, d in sorted(expected.items()))}{f' as {wanted}' if wanted else ''}: no tag follows it; publish again"
        )
    return now.digest, True, platforms
