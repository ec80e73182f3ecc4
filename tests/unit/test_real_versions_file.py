"""The real versions.toml and locks/ of the project: the only unit tests that read the live matrix.

Every other unit test works on its own data under tests/unit/data, so changing the matrix never breaks a test
of logic; these few tests fail when the real file is invalid or the real locks disagree with it (then relock).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from kerastack import cli, config, lock_plan, matrix
from kerastack.lock import GROUPS, Pin

ROOT = Path(__file__).resolve().parents[2]
H = "sha256:" + "1" * 64


@pytest.fixture(scope="module")
def real_config():
    return config.load(ROOT / "versions.toml")


@pytest.fixture(scope="module")
def real_cells(real_config):
    return matrix.cells(real_config)


# ---------------------------------------------------------------- versions.toml


def test_real_versions_toml_is_valid(real_config, real_cells):
    assert real_cells, "the matrix has no cells"
    assert len({c.id for c in real_cells}) == len(real_cells)
    for variant in real_config.variants:
        assert matrix.default_cell(real_config, variant, real_cells) in real_cells


# ---------------------------------------------------------------- locks/


def test_real_locks_record_and_match_their_content_hashes(tmp_path, capsys):
    shutil.copy(ROOT / "versions.toml", tmp_path / "versions.toml")
    shutil.copytree(ROOT / "locks", tmp_path / "locks", symlinks=True)
    code = cli.main(["--project-dir", str(tmp_path), "lock", "--check"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.count(": ok") == len(list((ROOT / "locks").glob("tf*")))


def read_meta(cell_id: str) -> dict:
    return json.loads((ROOT / "locks" / cell_id / "lock.json").read_text())


def test_real_locks_have_a_folder_per_cell_and_nothing_else(real_cells):
    assert sorted(p.name for p in (ROOT / "locks").iterdir() if p.is_dir()) == sorted(c.id for c in real_cells)
    for cell in real_cells:
        assert sorted(p.name for p in (ROOT / "locks" / cell.id).iterdir()) == sorted(
            ["cuda.txt", "data.txt", "jupyter.txt", "lock.json", "science.txt", "tensorflow.txt", "venv.txt", "visualisation.txt"]
        )


def test_real_lock_inputs_match_versions_toml(real_config, real_cells):
    for cell in real_cells:
        meta = read_meta(cell.id)
        inputs = lock_plan.inputs_for(real_config, cell)
        assert meta["cell"] == cell.id and meta["format"] == lock_plan.LOCK_FORMAT
        assert meta["fingerprint"] == inputs.fingerprint()
        assert meta["inputs"] == lock_plan.inputs_record(inputs) == json.loads(json.dumps(inputs.__dict__))


def test_real_cuda_groups_equal_the_pins(real_config, real_cells):
    for cell in real_cells:
        cuda_group = read_meta(cell.id)["groups"]["cuda"]
        expected = dict(real_config.cuda[cell.cuda].wheels) if cell.cuda else {}
        assert cuda_group == expected, cell.id
        lock_plan.check_cuda_pins(real_config, cell, [Pin(n, v, (H,)) for n, v in cuda_group.items()])


def test_real_tensorflow_groups_hold_the_release_and_keras(real_config, real_cells):
    """The TensorFlow distribution is the platform's: tensorflow-cpu on amd64 CPU cells, tensorflow on arm64
    (tensorflow-cpu has no aarch64 wheels) and on GPU cells; never both."""
    for cell in real_cells:
        group = read_meta(cell.id)["groups"]["tensorflow"]
        release = real_config.tensorflow[cell.tensorflow]
        tf_name = "tensorflow" if cell.is_gpu or cell.platform == "linux/arm64" else "tensorflow-cpu"
        other = {"tensorflow", "tensorflow-cpu"} - {tf_name}
        assert group[tf_name] == str(release.version), cell.id
        assert not other & set(group), cell.id
        assert group["keras"] == str(release.keras), cell.id
        assert not [n for n in group if n.startswith("nvidia-")]
        assert read_meta(cell.id)["inputs"]["platform"] == lock_plan.UV_TARGETS[cell.platform], cell.id


def test_real_locks_of_one_tag_hold_the_same_versions_on_every_platform(real_config, real_cells):
    """One tag serves amd64 and arm64: a non-default cell has its sibling's versions (uv preferred them), bar the
    TensorFlow distribution, and every group that came out identical is a link to the sibling's file, no copy."""
    arm64 = [c for c in real_cells if not c.is_default_platform]
    assert arm64, "no cell off the default platform in the real matrix"
    for cell in arm64:
        sibling = lock_plan.sibling_of(real_config, cell)
        assert sibling is not None, cell.id
        mine, theirs = (lock_plan.locked_versions(ROOT, c) for c in (cell, sibling))
        assert mine.pop("tensorflow") == theirs.pop("tensorflow-cpu") == str(cell.tensorflow), cell.id
        assert mine == theirs, f"{cell.id} differs from {sibling.id}: relock both (`nox -s lock -- tf={cell.tensorflow}`)"
        shared = read_meta(cell.id)["shared"]
        assert set(shared.values()) == {sibling.id}, cell.id
        assert sorted(shared) == sorted(g for g in GROUPS if g != "tensorflow"), cell.id  # only the TF group differs
        for group in GROUPS:
            path = ROOT / "locks" / cell.id / f"{group}.txt"
            assert path.is_symlink() == (group in shared), (cell.id, group)
            if group in shared:
                assert str(path.readlink()) == f"../{sibling.id}/{group}.txt"
                assert path.read_bytes() == (ROOT / "locks" / sibling.id / f"{group}.txt").read_bytes()
    for cell in real_cells:
        if cell.is_default_platform:
            assert read_meta(cell.id)["shared"] == {}, cell.id
            assert not any(p.is_symlink() for p in (ROOT / "locks" / cell.id).iterdir()), cell.id


_PIN_START = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[^\]]*\])?==")


def test_every_real_requirement_line_has_a_sha256_hash(real_cells):
    checked = 0
    for cell in real_cells:
        for group in GROUPS:
            lines = (ROOT / "locks" / cell.id / f"{group}.txt").read_text().splitlines()
            assert lines[0] == f"# Lock group '{group}' for Python {cell.python}. Generated by `nox -s lock`; do not edit."  # no platform: shared
            starts = [i for i, line in enumerate(lines) if _PIN_START.match(line)]
            for n, start in enumerate(starts):
                block = lines[start : starts[n + 1] if n + 1 < len(starts) else len(lines)]
                hashes = [line.strip().removesuffix("\\").strip() for line in block[1:]]
                assert hashes, f"{cell.id}/{group}.txt: {lines[start]} has no hash"
                assert all(re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", h) for h in hashes), (cell.id, group, lines[start])
                checked += 1
            non_pin = [line for i, line in enumerate(lines[1:], 1) if not _PIN_START.match(line) and not line.startswith("    --hash=sha256:")]
            assert non_pin == [], (cell.id, group, non_pin[:3])
    assert checked > 500


def test_real_group_files_match_lock_json_and_are_generated(real_config, real_cells):
    for cell in real_cells:
        meta = read_meta(cell.id)
        inputs = lock_plan.inputs_for(real_config, cell)
        for group in GROUPS:
            text = (ROOT / "locks" / cell.id / f"{group}.txt").read_text()
            pins = lock_plan.parse_compiled(text)
            assert {p.name: p.version for p in pins} == meta["groups"][group], (cell.id, group)
            assert lock_plan.render_group(inputs, group, pins) == text, (cell.id, group)


def test_real_science_and_jupyter_groups_are_shared_by_cpu_and_gpu_cells(real_cells):
    """Identical groups are identical files, so CPU and GPU tags of one TF and Python share those layers (and the
    arm64 cells link to the same files)."""
    for group in ("science", "data", "visualisation", "jupyter"):
        by_key: dict[tuple, set[str]] = {}
        for cell in real_cells:
            by_key.setdefault((cell.tensorflow, cell.python), set()).add((ROOT / "locks" / cell.id / f"{group}.txt").read_text())
        assert all(len(texts) == 1 for texts in by_key.values()), group


def test_real_locks_give_numpy_and_h5py_to_the_tensorflow_group(real_cells):
    for cell in real_cells:
        groups = read_meta(cell.id)["groups"]
        assert {"numpy", "h5py", "ml-dtypes"} <= set(groups["tensorflow"]), cell.id
        assert {"pandas", "scipy", "scikit-learn", "tqdm", "dask", "cloudpickle", "pyarrow"} <= set(groups["science"]), cell.id  # pillow: TF 2.20 has it
        assert {"tables", "openpyxl", "xlrd", "sqlalchemy", "beautifulsoup4", "dill"} <= set(groups["data"]), cell.id
        assert {"matplotlib", "seaborn", "bokeh", "altair"} <= set(groups["visualisation"]), cell.id
        assert {"ipywidgets", "ipython", "jupyterlab-widgets"} <= set(groups["jupyter"]), cell.id


def test_real_toolkit_layers_ask_only_for_what_they_hold(real_config, real_cells):
    """Every package a [science], [data] or [visualisation] table asks for is in that table's layer, unless
    TensorFlow owns it (numpy, h5py): a requirement listed in one layer's table but installed in a lower one
    would make versions.toml say the wrong thing about the image."""
    for cell in real_cells:
        groups = read_meta(cell.id)["groups"]
        for group, roots in lock_plan.inputs_for(real_config, cell).layer_roots.items():
            elsewhere = [r for r in roots if r not in groups[group] and r not in groups["tensorflow"]]
            assert not elsewhere, f"{cell.id}: [{group}] asks for {elsewhere}, which a lower layer already has: move them there"


# ---------------------------------------------------------------- JupyterHub


def test_the_hub_the_tests_run_matches_the_images_singleuser_major(real_config):
    """A hub spawns a singleuser server of its own major only: the pinned test hub must be one the images work with."""
    assert real_config.jupyterhub is not None, "versions.toml needs [jupyterhub]: the images are JupyterHub single-user servers"
    pins = re.findall(r"^jupyterhub==([0-9.]+) ", (ROOT / "requirements" / "hub" / "requirements.txt").read_text(), re.MULTILINE)
    assert len(pins) == 1, "requirements/hub/requirements.txt must pin jupyterhub once"
    assert int(pins[0].split(".")[0]) == real_config.jupyterhub.hub_major
    lock = json.loads((ROOT / "requirements" / "hub" / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/configurable-http-proxy"]["integrity"].startswith("sha512-")
    assert all("integrity" in entry for name, entry in lock["packages"].items() if name), "npm ci checks every package by its integrity"
