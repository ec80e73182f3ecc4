"""Locks per platform (issue 17, item 2), on the test project tests/unit/data/locked.

Its fourth cell, tf2.21.0-py3.11-cpu-arm64, was locked by the real `nox -s lock` (uv, PyPI) with the amd64
cell's pins as preferences: every group but tensorflow came out identical and is a relative link to the amd64
cell's file, recorded in lock.json's "shared". These tests check the pure logic (preferences, order, what is
shared, `lock --check` of links, `changes --against-platform`) on those files; the relock tests replay pins
through a stand-in resolver and claim nothing about uv itself.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from kerastack import changes, cli, config, lock, lock_plan, matrix
from kerastack.errors import PipelineError
from kerastack.lock_plan import GROUPS, Pin
from tests.unit.conftest import LOCKED, uv_output

AMD, ARM, OLD, GPU = "tf2.21.0-py3.11-cpu", "tf2.21.0-py3.11-cpu-arm64", "tf2.20.0-py3.11-cpu", "tf2.21.0-py3.11-gpu-cuda12.5"
SHARED_GROUPS = ["venv", "cuda", "science", "data", "visualisation", "jupyter"]
H1, H2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


@pytest.fixture
def cfg(locked_project):
    return config.load(locked_project / "versions.toml")


@pytest.fixture
def by_id(cfg):
    return {c.id: c for c in matrix.cells(cfg)}


def check(capsys, project: Path, *filters: str) -> tuple[int, str, str]:
    code = cli.main(["--project-dir", str(project), "lock", "--check", *filters])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def statuses(project: Path) -> dict[str, lock_plan.LockStatus]:
    cfg = config.load(project / "versions.toml")
    return {s.cell_id: s for s in lock_plan.status(project, cfg, matrix.cells(cfg))}


def edit_meta(project: Path, cell_id: str, **changes_) -> None:
    path = project / "locks" / cell_id / "lock.json"
    meta = json.loads(path.read_text())
    meta.update(changes_)
    path.write_text(json.dumps(meta))


# ---------------------------------------------------------------- the test data itself


def test_the_arm64_cell_links_every_group_but_tensorflow_to_its_amd64_sibling():
    arm = LOCKED / "locks" / ARM
    meta = json.loads((arm / "lock.json").read_text())
    assert meta["shared"] == dict.fromkeys(SHARED_GROUPS, AMD)
    assert meta["inputs"]["platform"] == "aarch64-manylinux_2_28"
    for group in GROUPS:
        path = arm / f"{group}.txt"
        if group in SHARED_GROUPS:
            assert path.is_symlink() and str(path.readlink()) == f"../{AMD}/{group}.txt", group
            assert path.read_bytes() == (LOCKED / "locks" / AMD / f"{group}.txt").read_bytes()
        else:
            assert not path.is_symlink()
    tf = {p.name: p.version for p in lock_plan.parse_compiled((arm / "tensorflow.txt").read_text())}
    amd_tf = json.loads((LOCKED / "locks" / AMD / "lock.json").read_text())["groups"]["tensorflow"]
    # The preferences held: the same versions, only the TensorFlow distribution differs.
    assert tf.pop("tensorflow") == amd_tf.pop("tensorflow-cpu") == "2.21.0"
    assert tf == amd_tf


def test_all_four_locks_of_the_test_project_are_ok(locked_project, capsys):
    code, out, err = check(capsys, locked_project)
    assert code == 0, err
    assert out.count(": ok") == 4 and f"✓ {ARM}: ok" in out


# ---------------------------------------------------------------- pure helpers


def test_the_sibling_is_the_default_platforms_cell_of_the_same_stem(cfg, by_id):
    assert lock_plan.sibling_of(cfg, by_id[ARM]) == by_id[AMD]
    assert lock_plan.sibling_of(cfg, by_id[AMD]) is None and lock_plan.sibling_of(cfg, by_id[GPU]) is None
    assert matrix.on_platform(by_id[AMD], by_id.values(), "linux/arm64") == by_id[ARM]
    assert matrix.on_platform(by_id[OLD], by_id.values(), "linux/arm64") is None  # excluded in the test project


def test_the_default_platform_is_locked_first_otherwise_in_order(by_id):
    order = [by_id[ARM], by_id[OLD], by_id[GPU], by_id[AMD]]
    assert [c.id for c in lock_plan.lock_order(order)] == [OLD, GPU, AMD, ARM]


def test_preferences_are_the_siblings_pins_one_per_line():
    meta = {"groups": {"venv": {"pip": "25.3"}, "tensorflow": {"tensorflow-cpu": "2.21.0", "numpy": "2.4.6"}, "cuda": {}}}
    assert lock_plan.preferences(meta) == "numpy==2.4.6\npip==25.3\ntensorflow-cpu==2.21.0\n"


def test_a_group_is_shareable_only_when_names_versions_and_hashes_agree():
    mine = {g: [] for g in GROUPS} | {
        "science": [Pin("scipy", "1.16.0", (H1, H2), via=("-",))],
        "data": [Pin("dill", "0.4.0", (H1,))],
        "jupyter": [Pin("notebook", "7.4.0", (H1,))],
    }
    sibling = {g: [] for g in GROUPS} | {
        "science": [Pin("scipy", "1.16.0", (H2, H1), via=("pandas",))],  # hash order and `via` do not count
        "data": [Pin("dill", "0.4.0", (H2,))],  # another hash: not the same file
        "jupyter": [Pin("notebook", "7.4.1", (H1,))],
    }
    assert lock_plan.shareable_groups(mine, sibling) == ["venv", "cuda", "tensorflow", "science", "visualisation"]
    assert lock_plan.shareable_groups(mine, {}) == []


def test_the_group_files_name_no_platform(cfg, by_id):
    arm, amd = (lock_plan.inputs_for(cfg, by_id[i]) for i in (ARM, AMD))
    pins = [Pin("scipy", "1.16.0", (H1,))]
    assert lock_plan.render_group(arm, "science", pins) == lock_plan.render_group(amd, "science", pins)


def test_shared_between_names_the_linked_groups_either_way(locked_project, by_id):
    assert lock_plan.shared_between(locked_project, by_id[ARM], by_id[AMD]) == SHARED_GROUPS
    assert lock_plan.shared_between(locked_project, by_id[AMD], by_id[ARM]) == SHARED_GROUPS
    assert lock_plan.shared_between(locked_project, by_id[AMD], by_id[GPU]) == []


# ---------------------------------------------------------------- lock --check of shared files


def test_a_shared_group_copied_as_a_plain_file_is_reported(locked_project, capsys):
    link = locked_project / "locks" / ARM / "science.txt"
    link.unlink()
    shutil.copy(locked_project / "locks" / AMD / "science.txt", link)
    code, out, err = check(capsys, locked_project)
    assert code == 2 and out.count(": ok") == 3
    assert f"✗ {ARM}: modified science.txt should be a link to ../{AMD}/science.txt" in err and "core.symlinks" in err


def test_a_shared_link_pointing_elsewhere_is_reported(locked_project):
    link = locked_project / "locks" / ARM / "science.txt"
    link.unlink()
    link.symlink_to(f"../{GPU}/science.txt")  # same content today, but not what lock.json says
    st = statuses(locked_project)[ARM]
    assert st.state == "modified" and f"links to ../{GPU}/science.txt, not to ../{AMD}/science.txt" in st.detail


def test_a_link_that_lock_json_does_not_record_is_reported(locked_project):
    path = locked_project / "locks" / ARM / "tensorflow.txt"
    path.unlink()
    path.symlink_to(f"../{AMD}/tensorflow.txt")
    st = statuses(locked_project)[ARM]
    assert st.state == "modified" and "tensorflow.txt is a link, but lock.json records no shared tensorflow group" in st.detail


def test_a_relocked_sibling_makes_the_shared_cell_stale(locked_project):
    """The sibling's file changed under the link (its own lock.json updated, as a relock would): the sibling is
    fine, the cell that shares it must be relocked."""
    path = locked_project / "locks" / AMD / "jupyter.txt"
    path.write_text(path.read_text() + "# relocked\n")
    files = json.loads((locked_project / "locks" / AMD / "lock.json").read_text())["files"]
    edit_meta(locked_project, AMD, files=files | {"jupyter.txt": lock_plan.file_hash(path)})
    result = statuses(locked_project)
    assert result[AMD].state == "ok"
    assert result[ARM].state == "stale" and f"the shared jupyter.txt of {AMD} changed since this cell was locked" in result[ARM].detail
    assert f"id={ARM}" in result[ARM].detail


def test_a_missing_sibling_lock_is_a_clear_error(locked_project):
    shutil.rmtree(locked_project / "locks" / AMD)
    result = statuses(locked_project)
    assert result[AMD].state == "missing"
    assert result[ARM].state == "missing" and f"links to ../{AMD}/venv.txt, which does not exist: lock {AMD} first" in result[ARM].detail


@pytest.mark.parametrize(
    ("shared", "why"),
    [
        (["science"], "shared is not an object of group: sibling cell id strings"),
        ({"science": 3}, "shared is not an object of group: sibling cell id strings"),
        ({"science": ""}, "shared is not an object of group: sibling cell id strings"),
        ({"lapack": AMD}, "shared names 'lapack', not lock groups"),
    ],
)
def test_a_shared_record_of_the_wrong_shape_is_corrupt_not_a_traceback(locked_project, capsys, shared, why):
    edit_meta(locked_project, ARM, shared=shared)
    code, out, err = check(capsys, locked_project)
    assert code == 2 and f"✗ {ARM}: corrupt" in err and why in err and f"id={ARM}" in err
    with pytest.raises(PipelineError, match="is not a lock record"):
        lock_plan.read_meta(locked_project / "locks" / ARM)


def test_a_shared_record_naming_another_cell_is_corrupt(locked_project):
    edit_meta(locked_project, ARM, shared=dict.fromkeys(SHARED_GROUPS, GPU))
    st = statuses(locked_project)[ARM]
    assert st.state == "corrupt" and f"shared with '{GPU}', but this cell can share with its sibling {AMD}" in st.detail


def test_a_default_platform_cell_never_shares(locked_project):
    edit_meta(locked_project, AMD, shared={"science": ARM})
    st = statuses(locked_project)[AMD]
    assert st.state == "corrupt" and "a default-platform cell holds its own files" in st.detail


# ---------------------------------------------------------------- lock_cell: preferences in, links out
# The resolver is a stand-in that records what it was given and replays the arm64 cell's locked pins.


@pytest.fixture
def replaying_arm64_resolver(monkeypatch, tmp_path_factory):
    where = tmp_path_factory.mktemp("uv")
    script = where / "uv.py"
    script.write_text(
        "import shutil, sys\nfrom pathlib import Path\n"
        f"if Path('compiled.txt').exists(): shutil.copy('compiled.txt', {str(where / 'seen.txt')!r})\n"
        f"Path('compiled.txt').write_text({uv_output(ARM)!r})\n"
    )
    monkeypatch.setattr(lock, "uv_command", lambda: [sys.executable, str(script)])
    return where / "seen.txt"


def test_relocking_arm64_seeds_the_siblings_pins_and_links_identical_groups(locked_project, cfg, by_id, replaying_arm64_resolver, capsys):
    shutil.rmtree(locked_project / "locks" / ARM)
    lock.lock_cell(locked_project, cfg, by_id[ARM])
    seen = replaying_arm64_resolver.read_text()
    assert seen == lock_plan.preferences(lock_plan.read_meta(locked_project / "locks" / AMD)) and "tensorflow-cpu==2.21.0\n" in seen
    for group in GROUPS:
        original, again = LOCKED / "locks" / ARM / f"{group}.txt", locked_project / "locks" / ARM / f"{group}.txt"
        assert again.is_symlink() == original.is_symlink() and again.read_bytes() == original.read_bytes(), group
    assert statuses(locked_project)[ARM].state == "ok"


def test_without_a_sibling_lock_arm64_resolves_on_its_own_and_says_so(locked_project, cfg, by_id, replaying_arm64_resolver):
    shutil.rmtree(locked_project / "locks" / AMD)
    said = []
    lock.lock_cell(locked_project, cfg, by_id[ARM], log=said.append)
    assert not replaying_arm64_resolver.exists()  # no preferences given
    (message,) = said
    assert message.startswith(f"{ARM}: no usable lock of {AMD} to prefer ({locked_project / 'locks' / AMD / 'lock.json'}: cannot read a lock record")
    assert message.endswith("; resolving on its own, nothing shared")
    assert not any(p.is_symlink() for p in (locked_project / "locks" / ARM).iterdir())
    assert json.loads((locked_project / "locks" / ARM / "lock.json").read_text())["shared"] == {}


# ---------------------------------------------------------------- changes --against-platform


def fake_versions(cell) -> dict[str, str]:
    tf = "tensorflow-cpu" if cell.is_default_platform and not cell.is_gpu else "tensorflow"
    return {tf: str(cell.tensorflow), "numpy": "2.4.6", "scipy": "1.16.0" if cell.is_default_platform else "1.16.1"}


def test_comparisons_against_another_platform(locked_project, by_id):
    cells = list(by_id.values())
    result = changes.comparisons([by_id[ARM]], cells, fake_versions, against_platform="linux/amd64", shared_with=lambda a, b: ["venv", "jupyter"])
    (c,) = result
    assert (c.cell, c.baseline) == (ARM, AMD)
    assert [(x.kind, x.name, x.old, x.new) for x in c.changes] == [
        ("added", "tensorflow", None, "2.21.0"),
        ("removed", "tensorflow-cpu", "2.21.0", None),
        ("upgraded", "scipy", "1.16.0", "1.16.1"),
    ]
    assert changes.summary_line(c) == f"{ARM} vs {AMD}: 1 added, 1 removed, 1 upgraded (lock groups shared as one file: venv, jupyter)"


def test_comparisons_against_a_platform_say_when_there_is_nothing_to_compare(by_id):
    cells = list(by_id.values())
    same, none = changes.comparisons([by_id[AMD], by_id[GPU]], cells, fake_versions, against_platform="linux/amd64")[0], None
    assert same.changes is None and same.note == "is itself the linux/amd64 cell: select another platform's cell of 2.21.0-py3.11-cpu"
    (none,) = changes.comparisons([by_id[GPU]], cells, fake_versions, against_platform="linux/arm64")
    assert none.changes is None and none.note == "no linux/arm64 cell of 2.21.0-py3.11-gpu-cuda12.5 in the matrix to compare with"
    with pytest.raises(PipelineError, match="--against-platform 'arm64': not a platform of the matrix; use one of linux/amd64, linux/arm64"):
        changes.comparisons([by_id[ARM]], cells, fake_versions, against_platform="arm64")


def test_changes_command_compares_arm64_with_amd64_on_the_locks(locked_project, capsys):
    assert cli.main(["--project-dir", str(locked_project), "changes", f"id={ARM}", "--against-platform", "linux/amd64", "--markdown"]) == 0
    captured = capsys.readouterr()
    assert captured.out == (
        "## What changed\n\n"
        f"### {ARM} vs {AMD}: 1 added, 1 removed (lock groups shared as one file: {', '.join(SHARED_GROUPS)})\n\n"
        "| change | package | from | to |\n|---|---|---|---|\n"
        "| added | tensorflow | – | 2.21.0 |\n| removed | tensorflow-cpu | 2.21.0 | – |\n\n"
    )


def test_changes_command_the_other_way_round(locked_project, capsys):
    assert cli.main(["--project-dir", str(locked_project), "changes", f"id={AMD}", "--against-platform", "linux/arm64"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{AMD} vs {ARM}: 1 added, 1 removed") and "tensorflow-cpu" in out


@pytest.mark.parametrize("platform", ["arm64", "linux/s390x"])
def test_changes_command_refuses_an_unknown_platform(locked_project, capsys, platform):
    assert cli.main(["--project-dir", str(locked_project), "changes", f"id={ARM}", "--against-platform", platform]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and f"--against-platform {platform!r}: not a platform of the matrix" in captured.err


def test_changes_command_needs_the_other_platforms_lock(locked_project, capsys):
    shutil.rmtree(locked_project / "locks" / AMD)
    assert cli.main(["--project-dir", str(locked_project), "changes", f"id={ARM}", "--against-platform", "linux/amd64"]) != 0
    captured = capsys.readouterr()
    assert captured.out == "" and f"no lock files for {AMD}: run `nox -s lock` first" in captured.err


def test_lock_command_locks_the_default_platform_first_and_names_a_twin_it_left_stale(locked_project, monkeypatch, tmp_path, capsys):
    """`lock id=ARM,AMD` resolves AMD first. The stand-in resolver logs the TensorFlow requirement it was given and
    replays AMD's pins without `# via` notes (all but TensorFlow and Keras land in jupyter), the same for both, so ARM
    links its science group (among others). Relocked alone with the real split, AMD's files change: the command says that ARM, whose
    links now point at new content, is stale."""
    log = tmp_path / "asked.txt"
    script = tmp_path / "uv.py"
    pins = "".join((LOCKED / "locks" / AMD / f"{g}.txt").read_text() for g in GROUPS)
    script.write_text(
        "from pathlib import Path\n"
        f"with open({str(log)!r}, 'a') as f: f.write(Path('requirements.in').read_text().splitlines()[0] + '\\n')\n"
        f"Path('compiled.txt').write_text({pins!r})\n"
    )
    monkeypatch.setattr(lock, "uv_command", lambda: [sys.executable, str(script)])
    assert cli.main(["--project-dir", str(locked_project), "lock", f"id={ARM},{AMD}"]) == 0
    assert log.read_text().splitlines() == ["tensorflow-cpu==2.21.0", "tensorflow==2.21.0"]
    assert json.loads((locked_project / "locks" / ARM / "lock.json").read_text())["shared"]["science"] == AMD  # the same replay
    capsys.readouterr()
    script.write_text(f"from pathlib import Path\nPath('compiled.txt').write_text({uv_output(AMD)!r})\n")  # now with the real split
    assert cli.main(["--project-dir", str(locked_project), "lock", f"id={AMD}"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"✓ {AMD}: ") and ARM not in captured.out
    assert f"note: {ARM} shares lock files with a cell just relocked and is now" in captured.err and f"id={ARM}" in captured.err
