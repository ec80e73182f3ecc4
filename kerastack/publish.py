"""The publish stage: push only what passed its smoke tests in this run; move moving tags last.

`plan_publish` is pure: from the build report, the smoke report and the matrix it decides what is
pushed, in which order, and what is held back and why. `execute` does the pushing.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from python_on_whales import DockerClient, DockerException
from python_on_whales.utils import run as run_docker

from .config import Config
from .errors import PipelineError
from .matrix import Cell
from .report import BuildReport
from .tags import IMMUTABLE, MOVING, moving_tags

SMOKE_REPORT = "smoke-report.json"
PUBLISH_REPORT = "publish-report.json"
_NOT_RETRYABLE = re.compile(r"unauthorized|denied|authentication required|no basic auth credentials|not found: manifest unknown", re.I)


@dataclass(frozen=True)
class PushStep:
    ref: str  # where it goes: REPOSITORY:TAG
    source: str  # the local image (immutable ref) or, for a remote retag, REPOSITORY@DIGEST
    kind: str  # immutable | cell | moving
    cell: str
    image_id: str = ""  # the image that was built and smoke-tested; the source must still be it
    facts: dict = field(default_factory=dict, compare=False)  # recorded in the publish report, e.g. gpu_op_on_gpu


@dataclass(frozen=True)
class PublishPlan:
    steps: tuple[PushStep, ...]
    held_back: tuple[tuple[str, str], ...]  # (cell, why)
    moving_held_back: str = ""  # why moving tags do not move, when they don't

    @property
    def cells(self) -> list[str]:
        return sorted({s.cell for s in self.steps if s.kind != MOVING})


def plan_publish(
    config: Config,
    all_cells: Sequence[Cell],
    selected: Sequence[Cell],
    build: BuildReport,
    smoke: dict,
    *,
    allow_dirty: bool = False,
    move_tags: bool = True,
    allow_untested_gpu: bool = False,
) -> PublishPlan:
    """Immutable tags first, then cell tags, then moving tags, the last only when every selected cell is ready."""
    built = {c.cell: c for c in build.cells}
    smoked = smoke.get("cells", {})
    ready, held = [], []
    for cell in selected:
        result = built.get(cell.id)
        if result is None or result.status != "built":
            held.append((cell.id, "not built in this run" if result is None else f"build failed: {result.error[:200]}"))
            continue
        tested = smoked.get(cell.id)
        if tested is None:
            held.append((cell.id, "no smoke test result in this run: run `nox -s smoke` first"))
        elif not tested.get("ok"):
            held.append((cell.id, f"smoke tests failed: {', '.join(tested.get('failed', [])) or 'no test passed'}"))
        elif tested.get("image_id") != result.image_id:
            held.append((cell.id, "the smoke-tested image is not the built one (rebuilt since?): run smoke again"))
        elif result.tags and result.tags[0].endswith("-dirty") and not allow_dirty:
            held.append(
                (
                    cell.id,
                    "built from a tree with uncommitted changes (tracked files, or untracked ones in the build context): commit and rebuild (or --allow-dirty)",
                )
            )
        elif result.tags and result.tags[0].endswith("-unknown") and not allow_dirty:
            why = "built where git could not tell the revision (no git, or not a repository), so it may hold anything"
            held.append((cell.id, f"{why}: build in a git checkout (or --allow-dirty)"))
        elif cell.is_gpu and not gpu_op_ran_on_gpu(tested) and not allow_untested_gpu:
            held.append((cell.id, f"its GPU checks did not run on a GPU ({_gpu_skip_reason(tested)}): smoke-test it on a GPU host (or --allow-untested-gpu)"))
        else:
            ready.append(result)

    # Targets are named from the config, so --registry / KERASTACK_REGISTRY decide where images go.
    # The source is the image id that was built and smoke-tested, not a tag that a later build may move.
    gpu_cells = {cell.id for cell in selected if cell.is_gpu}
    facts = {r.cell: {"gpu_op_on_gpu": gpu_op_ran_on_gpu(smoked[r.cell]) if r.cell in gpu_cells else None} for r in ready}
    steps = [PushStep(_retarget(r.tags[0], config.image), r.image_id, IMMUTABLE, r.cell, r.image_id, facts[r.cell]) for r in ready]
    steps += [PushStep(_retarget(tag, config.image), r.image_id, "cell", r.cell, r.image_id, facts[r.cell]) for r in ready for tag in r.tags[1:]]
    moving_why = ""
    if not move_tags:
        moving_why = "not asked to move tags"
    elif held:
        moving_why = f"{len(held)} selected cell(s) not ready, so no moving tag moves"
    else:
        owners = moving_tags(config, all_cells)
        steps += [PushStep(f"{config.image}:{tag}", r.image_id, MOVING, r.cell, r.image_id) for r in ready for tag in owners.get(r.cell, ())]
    return PublishPlan(tuple(steps), tuple(held), moving_why)


def gpu_op_ran_on_gpu(tested: dict) -> bool:
    """True when a GPU check of the smoke tests passed: only then did an op run on a GPU."""
    gpu_checks = [c for c in tested.get("checks", []) if c.get("gpu")]
    return any(c.get("outcome") == "passed" for c in gpu_checks) and not any(c.get("outcome") != "passed" for c in gpu_checks)


def _gpu_skip_reason(tested: dict) -> str:
    reasons = sorted({c.get("reason") or c.get("outcome", "") for c in tested.get("checks", []) if c.get("gpu") and c.get("outcome") != "passed"})
    return "; ".join(r for r in reasons if r) or "the smoke report records no GPU check"


def _retarget(ref: str, image: str) -> str:
    return f"{image}:{ref.rsplit(':', 1)[1]}"


def plan_moving_from_reports(config: Config, all_cells: Sequence[Cell], selected: Sequence[Cell], reports: Sequence[dict]) -> PublishPlan:
    """For the release job: move moving tags to the digests other jobs pushed, if every selected cell was pushed."""
    pushed: dict[str, dict] = {}
    for report in reports:
        for cell_id, entry in report.get("cells", {}).items():
            if entry.get("pushed"):
                pushed[cell_id] = entry
    held = tuple((c.id, "no publish report says it was pushed") for c in selected if c.id not in pushed)
    if held:
        return PublishPlan((), held, f"{len(held)} selected cell(s) not pushed, so no moving tag moves")
    owners = moving_tags(config, all_cells)
    steps = tuple(PushStep(f"{config.image}:{tag}", f"{config.image}@{pushed[c.id]['digest']}", MOVING, c.id) for c in selected for tag in owners.get(c.id, ()))
    return PublishPlan(steps, ())


# ---------------------------------------------------------------- side effects


@dataclass
class PublishResult:
    """What a publish did. Written as the publish report even when it stopped partway."""

    cells: dict[str, dict] = field(default_factory=dict)  # cell -> pushed, tags (pushed), not_pushed {ref: why}, digest, size
    moved: dict[str, str] = field(default_factory=dict)  # moving tag -> digest
    held_back: dict[str, str] = field(default_factory=dict)
    not_moved: dict[str, str] = field(default_factory=dict)  # moving tag -> why it stayed
    ok: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


@contextmanager
def registry_client(registry: str, environ: dict[str, str] | None = None) -> Iterator[DockerClient]:
    """A Docker client for pushing. With REGISTRY_USER/REGISTRY_PASSWORD it logs in (password on stdin)
    into a throwaway config that is deleted afterwards; otherwise it uses the user's `docker login`."""
    environ = dict(os.environ) if environ is None else environ
    user, password = environ.get("REGISTRY_USER"), environ.get("REGISTRY_PASSWORD")
    if bool(user) != bool(password):
        raise PipelineError("set both REGISTRY_USER and REGISTRY_PASSWORD, or neither (then `docker login` is used)")
    if not user:
        yield DockerClient()
        return
    with tempfile.TemporaryDirectory(prefix="kerastack-docker-config-") as config_dir:
        client = DockerClient(config=config_dir)
        try:
            # Through stdin, never the command line; captured, so docker's notes stay out of the log.
            run_docker(client.docker_cmd + ["login", registry, "--username", user, "--password-stdin"], input=password.encode())
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
            message = str(exc.stderr or exc).strip().splitlines()[-1:] or ["unknown error"]
            if _NOT_RETRYABLE.search(message[0]) or attempt == attempts:
                raise PipelineError(f"{what} failed after {attempt} attempt(s): {message[0]}") from None
            delay = backoff * 2 ** (attempt - 1)
            log(f"{what}: {message[0]}; retrying in {delay:.1f} s ({attempt}/{attempts})")
            time.sleep(delay)


@dataclass(frozen=True)
class RemoteImage:
    manifest_digest: str  # what the tag points at
    config_digest: str  # the image's config: equal to the local image id when the content is the same


def _inspect(client: DockerClient, ref: str, *args: str) -> str | None:
    """`imagetools inspect`; None only when the registry says the tag does not exist. Anything else
    (network, auth, server errors) raises: a guard that cannot read the tag must not assume it is free."""
    try:
        return run_docker(client.docker_cmd + ["buildx", "imagetools", "inspect", ref, *args])
    except DockerException as exc:
        message = (str(exc.stderr or exc).strip().splitlines() or ["unknown error"])[-1]
        if message.rstrip().endswith(f"{ref}: not found"):
            return None
        raise PipelineError(f"cannot read {ref} from the registry ({message}): not pushing over a tag whose state is unknown") from None


def remote_image(client: DockerClient, ref: str) -> RemoteImage | None:
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


def remote_digest(client: DockerClient, ref: str) -> str | None:
    found = remote_image(client, ref)
    return found.manifest_digest if found else None


def execute(
    plan: PublishPlan,
    client: DockerClient,
    *,
    dry_run: bool = False,
    attempts: int = 4,
    backoff: float = 2.0,
    log: Callable[[str], None] = print,
) -> PublishResult:
    result = PublishResult(held_back=dict(plan.held_back), ok=not plan.held_back)
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
            if step.kind == MOVING and "@" in step.source:
                with_retries(lambda s=step: client.buildx.imagetools.create(sources=[s.source], tags=[s.ref]), f"moving {step.ref}", attempts, backoff, log)
                result.moved[step.ref] = step.source.split("@", 1)[1]
                log(f"moved {step.ref} -> {step.source}")
                continue
            digest, pushed = _push_tag(client, step, attempts, backoff, log)
        except PipelineError as exc:
            # This cell stops here; others go on. Moving tags then stay, since a cell is missing.
            log(f"stopped {step.cell} at {step.ref}: {exc}")
            result.ok = False
            if entry is None:
                result.not_moved[step.ref] = str(exc)
                continue
            entry["error"] = str(exc)
            entry["not_pushed"][step.ref] = str(exc)
            result.held_back[step.cell] = str(exc)
            continue
        if entry is None:
            result.moved[step.ref] = digest
            log(f"moved {step.ref} -> {digest}")
        else:
            entry["tags"].append(step.ref)
            entry["digest"] = digest
            entry["size"] = int(client.image.inspect(step.source).size)
            entry["pushed"] = step.kind == "cell" or entry["pushed"]
            log(f"{'pushed' if pushed else 'kept'} {step.ref} ({step.kind}) {digest}")
    for cell, entry in result.cells.items():
        if not dry_run and not entry["pushed"]:
            result.ok = False
            result.held_back.setdefault(cell, "only partly pushed")
    return result


def _push_tag(client: DockerClient, step: PushStep, attempts: int, backoff: float, log: Callable[[str], None]) -> tuple[str, bool]:
    """Push one tag; (its digest in the registry, whether it was pushed now or was already there)."""
    repository = step.ref.rsplit(":", 1)[0]
    if not client.image.exists(step.source):
        raise PipelineError(f"{step.cell}: the built image {step.source[:19]} is no longer in the engine: rebuild and smoke-test it again")
    local_id = client.image.inspect(step.source).id
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
        client.image.tag(step.source, step.ref)
    with_retries(lambda: client.image.push(step.ref, quiet=True), f"pushing {step.ref}", attempts, backoff, log)
    digest = _local_digest(client, step.ref, repository) or remote_digest(client, step.ref)
    if digest is None:
        raise PipelineError(f"pushed {step.ref} but the registry does not show it (image {local_id[:19]})")
    return digest, True


def _local_digest(client: DockerClient, ref: str, repository: str) -> str | None:
    for repo_digest in client.image.inspect(ref).repo_digests or []:
        name, _, digest = repo_digest.partition("@")
        if name == repository:
            return digest
    return None


def load_reports(directory: Path, name: str = PUBLISH_REPORT) -> list[dict]:
    found = sorted(directory.rglob(name))
    if not found:
        raise PipelineError(f"no {name} under {directory}: download the cell jobs' publish reports there")
    return [json.loads(p.read_text()) for p in found]
