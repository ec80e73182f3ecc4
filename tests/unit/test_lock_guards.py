"""`lock --check` verifies content, respects filters, survives crashed runs and corrupt records.

Each test works on a copy of the test project tests/unit/data/locked (a four-cell versions.toml and its locks/)
in a temporary folder and goes through the CLI. Relocking runs the real `lock_cell` with a stand-in resolver that replays the cell's current lock,
so no network is needed.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from kerastack import cli, config, lock, lock_plan, matrix
from kerastack.errors import PipelineError
from tests.unit.conftest import uv_output

CELL = "tf2.21.0-py3.11-cpu"


@pytest.fixture
def project(locked_project) -> Path:
    return locked_project


def check(capsys, project: Path, *filters: str) -> tuple[int, str, str]:
    code = cli.main(["--project-dir", str(project), "lock", "--check", *filters])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


@pytest.fixture
def replaying_resolver(monkeypatch, tmp_path_factory):
    """`uv pip compile` stand-in: writes the cell's locked pins (with their hashes) as its output."""
    script = tmp_path_factory.mktemp("uv") / "uv.py"
    script.write_text(f"from pathlib import Path\nPath('compiled.txt').write_text({uv_output(CELL)!r})\n")
    monkeypatch.setattr(lock, "uv_command", lambda: [sys.executable, str(script)])


def relock(project: Path) -> None:
    cfg = config.load(project / "versions.toml")
    (cell,) = matrix.Filter.parse([f"id={CELL}"]).select(matrix.cells(cfg))
    lock.lock_cell(project, cfg, cell)


def test_the_locks_record_and_match_their_content_hashes(project, capsys):
    code, out, _ = check(capsys, project)
    assert code == 0 and out.count(": ok") == len(list((project / "locks").glob("tf*"))) == 4
    meta = json.loads((project / "locks" / CELL / "lock.json").read_text())
    assert set(meta["files"]) == {f"{group}.txt" for group in lock_plan.GROUPS}


def test_a_hand_edited_group_file_is_reported_as_modified(project, capsys):
    group = project / "locks" / CELL / "jupyter.txt"
    group.write_text(group.read_text().replace("jupyterlab==4.", "jupyterlab==0.0.1 # was 4.", 1))
    code, _, err = check(capsys, project)
    assert code == 2
    assert f"{CELL}: modified jupyter.txt changed since it was locked" in err and "run nox -s lock" in err


def test_a_filtered_check_looks_only_at_the_selected_cells(project, capsys):
    code, out, err = check(capsys, project, f"id={CELL}")
    assert code == 0, err
    assert out.strip() == f"✓ {CELL}: ok" and "delete the folder" not in err


def test_a_filtered_check_still_sees_a_bad_selected_cell(project, capsys):
    (project / "locks" / CELL / "tensorflow.txt").write_text("# emptied\n")
    code, _, err = check(capsys, project, f"id={CELL}")
    assert code == 2 and "modified tensorflow.txt" in err


def test_staging_folders_are_not_taken_for_cells(project, capsys):
    (project / "locks" / f".{CELL}.k3j2h1").mkdir()
    (project / "locks" / f".{CELL}.old").mkdir()
    code, _, err = check(capsys, project)
    assert code == 0, err


def test_a_folder_of_a_cell_not_in_the_matrix_is_still_stale(project, capsys):
    (project / "locks" / "tf2.19.0-py3.11-cpu").mkdir()
    code, _, err = check(capsys, project)
    assert code == 2 and "tf2.19.0-py3.11-cpu: stale" in err


def test_a_corrupt_lock_json_is_a_clear_error(project, capsys):
    (project / "locks" / CELL / "lock.json").write_text('{"cell": "tf2.21.0-py3.11-cpu", "groups": ')
    code, _, err = check(capsys, project)
    assert code == 2 and f"{CELL}: corrupt" in err and "not JSON" in err and "relock" in err
    cfg = config.load(project / "versions.toml")
    (cell,) = matrix.Filter.parse([f"id={CELL}"]).select(matrix.cells(cfg))
    with pytest.raises(PipelineError, match="not JSON"):
        lock_plan.locked_versions(project, cell)


def test_relocking_after_a_crash_between_the_two_renames_restores_and_replaces(project, capsys, replaying_resolver):
    target = project / "locks" / CELL
    target.rename(target.with_name(f".{CELL}.old"))  # the first rename happened, the second did not
    code, _, err = check(capsys, project)
    assert code == 2 and "interrupted lock run" in err
    relock(project)
    assert target.is_dir() and not target.with_name(f".{CELL}.old").exists()
    assert check(capsys, project)[0] == 0


def test_relocking_after_a_crash_before_the_cleanup_succeeds(project, capsys, replaying_resolver):
    leftover = project / "locks" / f".{CELL}.old"
    shutil.copytree(project / "locks" / CELL, leftover)  # both renames happened, the removal did not
    (project / "locks" / f".{CELL}.staging-abc123").mkdir()  # and a staging folder of yet another run
    relock(project)
    assert sorted(p.name for p in (project / "locks").iterdir() if p.name.startswith(f".{CELL}")) == []
    assert check(capsys, project)[0] == 0


def test_a_hand_edited_version_in_lock_json_fails_the_check(project, capsys):
    """`changes` reads lock.json's versions: one that disagrees with the group files (what is installed) is caught."""
    meta_file = project / "locks" / CELL / "lock.json"
    meta = json.loads(meta_file.read_text())
    group, pins = next((g, p) for g, p in meta["groups"].items() if p)
    name = sorted(pins)[0]
    pins[name] = "999.0"
    meta_file.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    code, _, err = check(capsys, project)
    assert code == 2 and f"{CELL}: modified" in err and f"{name} 999.0 in lock.json" in err and f"{group}.txt" in err


@pytest.mark.parametrize(
    "groups",
    [[], {"base": []}, {"base": {"numpy": 1}}, {"base": {"numpy": None}}, "x", {"base": {"numpy": {"v": "1"}}}],
)
def test_lock_json_groups_of_the_wrong_shape_are_corrupt_not_a_traceback(project, capsys, groups):
    meta_file = project / "locks" / CELL / "lock.json"
    meta = json.loads(meta_file.read_text())
    meta["groups"] = groups
    meta_file.write_text(json.dumps(meta))
    code, _, err = check(capsys, project)
    assert code == 2 and f"{CELL}: corrupt" in err and "Traceback" not in err
