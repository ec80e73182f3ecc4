"""A shared lock group is a relative link into the sibling cell's folder (kerastack.lock_plan, "platforms"); the
Dockerfile's `COPY ${LOCK_DIR}/<group>.txt` must copy the file it points to. Checked with a real
`docker buildx build` of a throwaway context: the project's .dockerignore, the real locks of an arm64 cell and its
amd64 sibling (links kept), and a FROM scratch stage with one COPY per group, exported with --output type=local."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from kerastack.lock_plan import GROUPS

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]


def test_copy_of_a_shared_group_link_copies_the_siblings_file(tmp_path, docker_engine):
    arm64 = sorted(p for p in (ROOT / "locks").glob("*-arm64") if json.loads((p / "lock.json").read_text()).get("shared"))
    if not arm64:
        pytest.skip("no arm64 lock shares a group with its sibling")
    cell = arm64[0]
    sibling = next(iter(json.loads((cell / "lock.json").read_text())["shared"].values()))
    context = tmp_path / "context"
    (context / "images").mkdir(parents=True)
    shutil.copy(ROOT / ".dockerignore", context / ".dockerignore")
    for name in (cell.name, sibling):
        shutil.copytree(ROOT / "locks" / name, context / "locks" / name, symlinks=True)
    assert (context / "locks" / cell.name / "science.txt").is_symlink()
    copies = "".join(f"COPY ${{LOCK_DIR}}/{g}.txt /lock/\n" for g in GROUPS)
    (context / "images" / "Dockerfile").write_text(f"FROM scratch\nARG LOCK_DIR\n{copies}")
    out = tmp_path / "out"
    run = subprocess.run(
        ["docker", "buildx", "build", "--file", "images/Dockerfile", "--build-arg", f"LOCK_DIR=locks/{cell.name}", "--output", f"type=local,dest={out}", "."],
        cwd=context, capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    for group in GROUPS:
        copied = out / "lock" / f"{group}.txt"
        assert copied.is_file() and not copied.is_symlink(), group
        assert copied.read_bytes() == (cell / f"{group}.txt").read_bytes(), group  # the link's target's content
