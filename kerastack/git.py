"""The project's git facts, read in one place: the build stamp's revision and dirty flag, the commit time,
and a clean export of a commit. Without git, or outside a repository, the revision is `unknown` (publish
refuses such builds); any other git failure is an error, never a clean tree."""

from __future__ import annotations

import subprocess
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .errors import PipelineError
from .layout import BUILD_CONTEXT_PATHS
from .tags import BuildStamp

UNKNOWN = "unknown"


class NotARepository(Exception):
    """No git on PATH, or the folder is not inside a work tree: the revision cannot be known."""


def _git(root: Path, *args: str) -> str:
    try:
        result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except OSError as exc:  # no git on PATH
        raise NotARepository(str(exc)) from None
    if result.returncode != 0:
        message = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
        if "not a git repository" in message.lower():
            raise NotARepository(message)
        raise PipelineError(f"git {' '.join(args)} failed in {root}: {message}")
    return result.stdout.strip()


@dataclass(frozen=True)
class Commit:
    revision: str  # short hash
    created: str  # RFC 3339 commit time


def head(root: Path) -> Commit:
    """HEAD's short hash and commit time; fails closed outside a git checkout."""
    try:
        out = _git(root, "log", "-1", "--format=%h %ct", "--abbrev=7")  # any other git failure raises with git's message
    except NotARepository:
        out = ""
    if not out:
        raise PipelineError(f"{root} is not a git checkout with a commit: the reproducibility check builds a commit (`git archive HEAD`)")
    revision, seconds = out.split()
    return Commit(revision, _rfc3339(datetime.fromtimestamp(int(seconds), UTC)))


def has_uncommitted_changes(root: Path) -> bool:
    """A tracked file changed anywhere, or an untracked (not git-ignored) file sits inside the build context."""
    return bool(
        _git(root, "status", "--porcelain", "--untracked-files=no") or _git(root, "status", "--porcelain", "--untracked-files=all", "--", *BUILD_CONTEXT_PATHS)
    )


def current_stamp(root: Path, now: datetime | None = None, day: str | None = None) -> tuple[BuildStamp, str]:
    """The build stamp (UTC date, or `day` when given: a release's one day for all its jobs; revision with
    `-dirty` when changed) and the RFC 3339 `created` time.

    `created` is the commit time (the SOURCE_DATE_EPOCH convention): rebuilding the same inputs then gives
    the same image id, so a cached rebuild is recognisably the image that was tested.
    """
    now = now or datetime.now(UTC)
    try:
        revision = _git(root, "rev-parse", "--short=7", "HEAD")
        if has_uncommitted_changes(root):
            revision += "-dirty"
        created = datetime.fromtimestamp(int(_git(root, "log", "-1", "--format=%ct")), UTC)
    except NotARepository:
        revision, created = UNKNOWN, now
    stamp = BuildStamp(day, revision) if day else BuildStamp.at(now, revision)
    return stamp, _rfc3339(created)


def export_head(root: Path, destination: Path) -> None:
    """A clean copy of HEAD's files (no untracked files, no checkout times) in `destination`."""
    destination.mkdir(parents=True)
    archive = destination.parent / f"{destination.name}.tar"
    with archive.open("wb") as out:
        result = subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=root, stdout=out, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise PipelineError(f"git archive HEAD failed in {root}: {result.stderr.strip()}")
    with tarfile.open(archive) as tar:
        tar.extractall(destination, filter="tar")
    archive.unlink()


def _rfc3339(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")
