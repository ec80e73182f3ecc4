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

from .docker_client import Docker, DockerException, docker_error
from .errors import PipelineError
from .files import write_atomic
from .publish_plan import CELL, PublishPlan, PublishResult, PushStep
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


def remote_image(client: Docker, ref: str) -> RemoteImage | None:
    """What a tag holds in the registry (linux/amd64 for an index), or None when it does not exist."""
    described = _inspect(client, ref, "--format", "{{json .Manifest}}")
    if described is None:
        return None
    raw = _inspect(client, ref, "--raw")
    try:
        manifest_digest = json.loads(described)["digest"]
        manifest = json.loads(raw or "")
        if "manifests" in manifest:  # an index: the platform this project builds
            (entry,) = [m for m in manifest["manifests"] if m.get("platform", {}).get("architecture") == "amd64"]
            manifest = json.loads(_inspect(client, f"{ref.rsplit(':', 1)[0]}@{entry['digest']}", "--raw") or "")
        return RemoteImage(manifest_digest, manifest["config"]["digest"])
    except (ValueError, KeyError, TypeError) as exc:
        raise PipelineError(f"cannot understand the manifest of {ref} ({exc!r}): not pushing over it") from None


def remote_digest(client: Docker, ref: str) -> str | None:
    found = remote_image(client, ref)
    return found.manifest_digest if found else None


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
    return ", ".join([ref for entry in result.cells.values() for ref in entry["tags"]] + list(result.moved))


def _execute(plan, client, result, dry_run, attempts, backoff, log, report) -> None:
    for cell, why in plan.held_back:
        log(f"held back {cell}: {why}")
    if plan.moving_held_back:
        log(f"moving tags stay where they are: {plan.moving_held_back}")
    for step in plan.steps:
        if step.kind == MOVING:
            entry = None
        else:
            entry = result.cells.setdefault(step.cell, {"pushed": False, "tags": [], "not_pushed": {}, "digest": "", "size": 0, **step.facts})
        if dry_run:
            log(f"would {'move' if step.kind == MOVING else 'push'} {step.ref}  ({step.kind})")
            continue
        stopped = [c for c, e in result.cells.items() if e.get("error")]
        if entry is not None and entry.get("error"):
            entry["not_pushed"][step.ref] = "an earlier tag of this cell failed"
            continue
        if entry is None and stopped:
            result.not_moved[step.ref] = f"cell(s) {', '.join(stopped)} failed, so no moving tag moves"
            continue
        try:
            try:
                if step.kind == MOVING and "@" in step.source:
                    with_retries(lambda s=step: client.imagetools_create([s.source], [s.ref]), f"moving {step.ref}", attempts, backoff, log)
                    wanted, now = step.source.split("@", 1)[1], remote_digest(client, step.ref)
                    if now != wanted:
                        raise PipelineError(f"moved {step.ref} to {wanted} but the registry says it holds {now or 'nothing'}: publish the moving tags again")
                    result.moved[step.ref] = wanted
                    log(f"moved {step.ref} -> {step.source}")
                    continue
                digest, pushed = _push_tag(client, step, attempts, backoff, log)
                size = client.size(step.source) if entry is not None else 0
            except DockerException as exc:  # a Docker step outside the retried push: inspect, tag, size
                raise PipelineError(f"{step.ref}: docker failed: {docker_error(exc)}") from None
        except PipelineError as exc:
            # This cell stops here; others go on. Moving tags then stay, since a cell is missing.
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
            entry["size"] = size
            entry["pushed"] = step.kind == CELL or entry["pushed"]
            log(f"{'pushed' if pushed else 'kept'} {step.ref} ({step.kind}) {digest}")
        _checkpoint(report, result)
    for cell, entry in result.cells.items():
        if not dry_run and not entry["pushed"]:
            result.ok = False
            result.held_back.setdefault(cell, "only partly pushed")


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
    if step.kind == IMMUTABLE:
        existing = remote_image(client, step.ref)
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
    pushed = remote_image(client, step.ref)
    if pushed is None:
        raise PipelineError(f"pushed {step.ref} but the registry does not show it (image {local_id[:19]})")
    if pushed.config_digest != (step.image_id or local_id):
        raise PipelineError(
            f"pushed {step.ref} but the registry holds image {pushed.config_digest[:19]}, not the smoke-tested {(step.image_id or local_id)[:19]} "
            "(retagged while pushing?): no moving tag follows; publish again"
        )
    return pushed.manifest_digest, True
