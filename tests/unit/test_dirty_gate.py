"""The build stamp's revision: `-dirty` for any change that reaches the build context, `unknown` without git."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kerastack.git import current_stamp


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args], cwd=root, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path) -> Path:
    for name, text in {
        "versions.toml": "schema = 1\n",
        "images/Dockerfile": "FROM scratch\n",
        "images/bin/start": "#!/bin/sh\n",
        ".gitignore": "__pycache__/\nlocks/.*\n",
    }.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "locks" / "cell").mkdir(parents=True)
    (tmp_path / "locks" / "cell" / "lock.json").write_text("{}\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "init")
    return tmp_path


def revision(root: Path) -> str:
    return current_stamp(root)[0].revision


def test_a_committed_tree_is_clean(repo):
    assert not revision(repo).endswith("-dirty") and revision(repo) != "unknown"


@pytest.mark.parametrize("new_file", ["locks/tf9.9.9-py3.11-cpu/lock.json", "images/bin/extra-tool", "images/Dockerfile.local", ".dockerignore"])
def test_an_untracked_file_in_the_build_context_makes_the_build_dirty(repo, new_file):
    (repo / new_file).parent.mkdir(parents=True, exist_ok=True)
    (repo / new_file).write_text("new\n")
    assert revision(repo).endswith("-dirty")


@pytest.mark.parametrize("new_file", ["notes.txt", "docs/idea.md", "locks/.cell.k3j2/lock.json", "images/bin/__pycache__/x.pyc"])
def test_untracked_files_outside_the_context_or_git_ignored_keep_it_clean(repo, new_file):
    (repo / new_file).parent.mkdir(parents=True, exist_ok=True)
    (repo / new_file).write_text("new\n")
    assert not revision(repo).endswith("-dirty")


def test_a_changed_tracked_file_makes_the_build_dirty(repo):
    (repo / "versions.toml").write_text("schema = 2\n")
    assert revision(repo).endswith("-dirty")


def test_outside_a_repository_the_revision_is_unknown(tmp_path):
    assert revision(tmp_path) == "unknown"


def test_without_git_the_revision_is_unknown(repo, monkeypatch):
    monkeypatch.setenv("PATH", str(repo / "no-such-bin"))
    assert revision(repo) == "unknown"
