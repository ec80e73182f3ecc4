"""Lock files, the effects half: resolve each cell with uv and swap its new lock files in atomically.

What to resolve and how to split and check the result is kerastack.lock_plan (pure).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .config import Config
from .errors import PipelineError
from .layout import Layout
from .lock_plan import (
    GROUPS,
    Pin,
    check_cuda_pins,
    file_hash,
    inputs_for,
    lock_dir,
    lock_record,
    parse_compiled,
    preferences,
    read_meta,
    render_group,
    shareable_groups,
    shared_link,
    sibling_of,
    split_groups,
)
from .matrix import Cell


def recover(root: Path, cell_id: str) -> None:
    """Finish or undo a lock run that stopped midway: the swap is two renames, so a crash between them
    leaves the previous lock as `.ID.old` and no `ID`; put it back. Staging folders are dropped."""
    locks = Layout(root).locks
    target, backup = locks / cell_id, locks / f".{cell_id}.old"
    if backup.is_dir():
        if target.is_dir():
            shutil.rmtree(backup)  # the new lock is in place; only the old copy was left
        else:
            backup.rename(target)
    for staging in locks.glob(f".{cell_id}.staging-*"):
        if staging.is_dir():
            shutil.rmtree(staging)


def uv_command() -> list[str]:
    found = shutil.which("uv")
    if found:
        return [found]
    try:
        import uv  # noqa: F401  (the PyPI package ships the binary)
    except ImportError:
        raise PipelineError("uv is needed to lock: pip install uv (nox -s lock installs it)") from None
    return [sys.executable, "-m", "uv"]


def _sibling_lock(root: Path, config: Config, cell: Cell, log) -> tuple[Cell, dict, dict[str, list[Pin]]] | None:
    """The default platform's lock of the cell's stem (its meta and its group files' pins), when there is one to
    prefer and share; None (said on `log`) otherwise."""
    sibling = sibling_of(config, cell)
    if sibling is None:
        return None
    directory = lock_dir(root, sibling)
    try:
        meta = read_meta(directory)
        groups = {g: parse_compiled((directory / f"{g}.txt").read_text(encoding="utf-8")) for g in GROUPS if (directory / f"{g}.txt").is_file()}
    except (PipelineError, OSError) as exc:
        log(f"{cell.id}: no usable lock of {sibling.id} to prefer ({exc}); resolving on its own, nothing shared")
        return None
    return sibling, meta, groups


def lock_cell(root: Path, config: Config, cell: Cell, log=lambda message: print(message, file=sys.stderr)) -> dict[str, list[Pin]]:
    """Resolve one cell with uv and write its group files and lock.json atomically (all or nothing).

    A cell off the default platform prefers its sibling's versions (its pins seeded into uv's output file) and
    links each group that comes out identical to the sibling's file (lock_plan: "platforms")."""
    inputs = inputs_for(config, cell)
    recover(root, cell.id)
    sibling = _sibling_lock(root, config, cell, log)
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        if sibling:  # uv pip compile reads an existing output file as preferences
            (tmpdir / "compiled.txt").write_text(preferences(sibling[1]))
        (tmpdir / "requirements.in").write_text("\n".join(inputs.requirements) + "\n")
        (tmpdir / "constraints.txt").write_text("\n".join(inputs.constraints) + "\n")
        command = [
            *uv_command(), "pip", "compile", "requirements.in",
            "--constraint", "constraints.txt",
            "--python-version", inputs.python,
            "--python-platform", inputs.platform,
            "--only-binary", ":all:",
            "--generate-hashes",
            "--no-header",
            "--quiet",
            "--output-file", "compiled.txt",
        ]  # fmt: skip
        run = subprocess.run(command, cwd=tmpdir, capture_output=True, text=True)
        if run.returncode != 0:
            raise PipelineError(f"{cell.id}: the resolver failed:\n{run.stderr.strip()}")
        compiled = tmpdir / "compiled.txt"
        if not compiled.is_file() or (sibling and compiled.read_text() == preferences(sibling[1])):
            raise PipelineError(f"{cell.id}: the resolver exited 0 but wrote no {compiled.name}: check uv ({' '.join(uv_command())} --version)")
        pins = parse_compiled(compiled.read_text())
        if not pins:
            raise PipelineError(f"{cell.id}: the resolver exited 0 but pinned nothing: check uv ({' '.join(uv_command())} --version); no lock written")
    groups = split_groups(pins, inputs.group_roots, inputs.layer_roots)
    check_cuda_pins(config, cell, groups["cuda"])
    staging = Path(tempfile.mkdtemp(prefix=f".{cell.id}.staging-", dir=_ensure(Layout(root).locks)))
    staging.chmod(0o755)  # mkdtemp's 0700 would become the lock folder's mode: readable like every other folder
    shared = {g: sibling[0].id for g in shareable_groups(groups, sibling[2])} if sibling else {}
    for group in GROUPS:
        if group in shared:
            (staging / f"{group}.txt").symlink_to(shared_link(shared[group], group))
        else:
            (staging / f"{group}.txt").write_text(render_group(inputs, group, groups[group]))
    meta = lock_record(inputs, groups, {f"{g}.txt": file_hash(staging / f"{g}.txt") for g in GROUPS}, shared)
    (staging / "lock.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    swap_in(staging, lock_dir(root, cell))
    return groups


def swap_in(staging: Path, target: Path) -> None:
    """Replace `target` with the complete folder `staging`. A directory cannot be renamed over another,
    so the old one steps aside first; `recover` completes or undoes a swap a crash interrupted."""
    backup = target.with_name(f".{target.name}.old")
    if target.exists():
        target.rename(backup)
    staging.rename(target)
    if backup.exists():
        shutil.rmtree(backup)


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
