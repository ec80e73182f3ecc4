"""Build plans (args, labels) and the pure parts of lock files, on the test data of tests/unit/data."""

from __future__ import annotations

import json
import re
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kerastack import config, contract, lock_plan, matrix, plan
from kerastack.errors import PipelineError
from kerastack.lock import GROUPS, Pin
from kerastack.tags import BuildStamp
from kerastack.versions import Version
from tests.unit.conftest import SAMPLE

ROOT = Path(__file__).resolve().parents[2]
STAMP = BuildStamp("20261124", "a1b2c3d")
CREATED = "2026-11-24T12:00:00Z"
BASE = "docker.io/library/python:3.11-slim-bookworm@sha256:" + "a" * 64
OCI = (
    "org.opencontainers.image.title",
    "org.opencontainers.image.description",
    "org.opencontainers.image.version",
    "org.opencontainers.image.created",
    "org.opencontainers.image.revision",
    "org.opencontainers.image.source",
    "org.opencontainers.image.licenses",
    "org.opencontainers.image.base.name",
    "org.opencontainers.image.ref.name",
)
GPU_ONLY = (
    "io.kerastack.tensorflow.built-with.cuda",
    "io.kerastack.tensorflow.built-with.cudnn",
    "io.kerastack.cuda.version",
    "io.kerastack.cuda.runtime",
    "io.kerastack.cudnn.version",
    "io.kerastack.cuda.wheels",
    "io.kerastack.nvidia.driver.min",
    "io.kerastack.gpu-op.ran-on-gpu",
)


def plan_of(cfg, cells, cell_id):
    cell = next(c for c in cells if c.id == cell_id)
    return plan.plan_cell(cfg, cells, cell, STAMP, BASE, CREATED)


def edited(text: str, old: str, new: str):
    assert text.count(old) == 1, old
    c = config.parse(text.replace(old, new), "versions.toml")
    return c


def fingerprints(cfg) -> dict[str, str]:
    return {cell.id: lock_plan.inputs_for(cfg, cell).fingerprint() for cell in matrix.cells(cfg)}


# ---------------------------------------------------------------- plans


def test_gpu_plan(sample_config, sample_cells):
    p = plan_of(sample_config, sample_cells, "tf2.21.0-py3.11-gpu-cuda12.5")
    assert (p.id, p.target, p.image) == ("tf2.21.0-py3.11-gpu-cuda12.5", "image", "ghcr.io/kerastack/keras-jupyter")
    args = dict(p.build_args)
    facts = json.loads(args.pop("MANIFEST_FACTS"))
    assert args == {
        **contract.build_args(),  # the image contract travels as build arguments
        "BASE_IMAGE": BASE,
        "BUILD_BASE_IMAGE": BASE,
        "PYTHON_STAGE": "base",
        "PYTHON_VERSION": "3.11",
        "LOCK_DIR": "locks/tf2.21.0-py3.11-gpu-cuda12.5",
        "VARIANT": "gpu",
        "SOURCE_DATE_EPOCH": str(int(datetime(2026, 11, 24, 12, 0, tzinfo=UTC).timestamp())),
    }
    assert facts == {
        "cell": "tf2.21.0-py3.11-gpu-cuda12.5",
        "variant": "gpu",
        "base_image": BASE,
        "cuda": {"version": "12.5", "cudnn": "9.3"},
        "tensorflow_built_with": {"cuda": "12.5", "cudnn": "9.3"},
        "expected": {"tensorflow": "2.21.0", "keras": "3.12.4", "cuda_runtime": "12.5.82"},
    }
    assert p.local_refs == [
        "ghcr.io/kerastack/keras-jupyter:2.21.0-py3.11-gpu-cuda12.5-20261124-a1b2c3d",
        "ghcr.io/kerastack/keras-jupyter:2.21.0-py3.11-gpu-cuda12.5",
    ]
    labels = dict(p.labels)
    assert all(key in labels and labels[key] for key in OCI)
    assert labels["org.opencontainers.image.version"] == "2.21.0-py3.11-gpu-cuda12.5"
    assert labels["org.opencontainers.image.ref.name"] == "2.21.0-py3.11-gpu-cuda12.5-20261124-a1b2c3d"
    assert labels["org.opencontainers.image.created"] == CREATED
    assert labels["org.opencontainers.image.revision"] == "a1b2c3d"
    assert labels["org.opencontainers.image.base.name"] == BASE
    assert labels["org.opencontainers.image.title"] == "Keras 3.12.4 + TensorFlow 2.21.0 + Jupyter (gpu)"
    assert labels["io.kerastack.cell"] == "tf2.21.0-py3.11-gpu-cuda12.5"
    assert labels["io.kerastack.variant"] == "gpu"
    assert labels["io.kerastack.tensorflow.version"] == "2.21.0"
    assert labels["io.kerastack.keras.version"] == "3.12.4"
    assert labels["io.kerastack.python.version"] == "3.11"
    assert labels["io.kerastack.tensorflow.built-with.cuda"] == "12.5"
    assert labels["io.kerastack.tensorflow.built-with.cudnn"] == "9.3"
    assert labels["io.kerastack.cuda.version"] == "12.5"
    assert labels["io.kerastack.cuda.runtime"] == "12.5.82"
    assert labels["io.kerastack.cudnn.version"] == "9.3"
    assert labels["io.kerastack.nvidia.driver.min"] == "555.42"
    wheels = dict(w.split("==") for w in labels["io.kerastack.cuda.wheels"].split(","))
    assert wheels == dict(sample_config.cuda[Version("12.5")].wheels)
    assert len(wheels) == 12 and wheels["nvidia-cudnn-cu12"] == "9.3.0.75" and wheels["nvidia-cublas-cu12"] == "12.5.3.2"
    assert [k for k, _ in p.labels] == sorted(labels)


def test_gpu_12_9_labels_are_its_own(sample_config, sample_cells):
    labels = dict(plan_of(sample_config, sample_cells, "tf2.21.0-py3.13-gpu-cuda12.9").labels)
    assert (labels["io.kerastack.cuda.version"], labels["io.kerastack.cuda.runtime"], labels["io.kerastack.cudnn.version"]) == ("12.9", "12.9.79", "9.10")
    assert labels["io.kerastack.nvidia.driver.min"] == "575.51"
    assert labels["io.kerastack.tensorflow.built-with.cuda"] == "12.5"  # what TF was built with, not the cell's CUDA
    assert "nvidia-cublas-cu12==12.9.1.4" in labels["io.kerastack.cuda.wheels"].split(",")


@pytest.mark.parametrize(("cpu_id", "keras"), [("tf2.20.0-py3.13-cpu", "3.11.3"), ("tf2.21.0-py3.11-cpu", "3.12.4")])
def test_cpu_plan(sample_config, sample_cells, cpu_id, keras):
    p = plan_of(sample_config, sample_cells, cpu_id)
    labels = dict(p.labels)
    assert p.target == "image"  # one target; the VARIANT build argument picks the layers
    assert all(key in labels for key in OCI)
    assert not [key for key in labels if "cuda" in key or "cudnn" in key or "nvidia" in key]
    assert not set(GPU_ONLY) & set(labels)
    assert labels["io.kerastack.keras.version"] == keras
    assert labels["io.kerastack.tensorflow.version"] == cpu_id[2:8]
    assert labels["io.kerastack.python.version"] == cpu_id.split("-py")[1][:4]
    assert dict(p.build_args)["LOCK_DIR"] == f"locks/{cpu_id}"


def test_plan_labels_equal_versions_toml_for_every_cell(sample_config, sample_cells):
    for cell in sample_cells:
        labels = dict(plan.plan_cell(sample_config, sample_cells, cell, STAMP, BASE, CREATED).labels)
        release = sample_config.tensorflow[cell.tensorflow]
        assert labels["io.kerastack.tensorflow.version"] == str(release.version)
        assert labels["io.kerastack.keras.version"] == str(release.keras)
        assert labels["io.kerastack.python.version"] == str(cell.python)
        assert (cell.cuda is not None) == ("io.kerastack.cuda.version" in labels)


def test_plan_uses_the_overridden_registry(sample_config, sample_cells):
    moved = config.with_registry(sample_config, "127.0.0.1:5000", "test/img")
    p = plan_of(moved, sample_cells, "tf2.21.0-py3.11-cpu")
    assert p.cell_ref == "127.0.0.1:5000/test/img:2.21.0-py3.11-cpu"
    assert p.as_json()["image"] == "127.0.0.1:5000/test/img"


# ---------------------------------------------------------------- lock inputs and fingerprints


def test_inputs_for_cpu(sample_config, sample_cells_by_id):
    i = lock_plan.inputs_for(sample_config, sample_cells_by_id["tf2.21.0-py3.13-cpu"])
    assert (i.cell_id, i.python, i.platform) == ("tf2.21.0-py3.13-cpu", "3.13", "x86_64-manylinux_2_28")
    assert i.requirements == (
        "tensorflow-cpu==2.21.0",
        "keras==3.12.4",
        *sample_config.science_packages,
        "openpyxl>=3.1,<4",
        "sqlalchemy>=2.0,<3",
        "bokeh>=3.5,<4",
        "jupyterlab>=4.4,<5",
        "notebook>=7.4,<8",
        "ipykernel>=6.29,<8",
        "pip",
        "setuptools",
    )
    assert i.constraints == ()
    assert i.group_roots == ("tensorflow-cpu", "keras")
    assert list(i.layer_roots) == ["science", "data", "visualisation"]  # jupyter takes the rest: no roots of its own
    science = i.layer_roots["science"]
    assert science[:2] == ("numpy", "h5py") and "scikit-learn" in science and "ipywidgets" in science
    assert i.layer_roots["data"] == ("openpyxl", "sqlalchemy") and i.layer_roots["visualisation"] == ("bokeh",)


def test_inputs_for_gpu(sample_config, sample_cells_by_id):
    i = lock_plan.inputs_for(sample_config, sample_cells_by_id["tf2.21.0-py3.11-gpu-cuda12.9"])
    assert i.requirements[:2] == ("tensorflow[and-cuda]==2.21.0", "keras==3.12.4")
    assert i.constraints == tuple(f"{n}=={v}" for n, v in sorted(sample_config.cuda[Version("12.9")].wheels))
    assert "nvidia-cuda-runtime-cu12==12.9.79" in i.constraints and len(i.constraints) == 12
    assert i.group_roots == ("tensorflow", "keras")


def test_fingerprint_is_stable_and_per_cell(sample_config, sample_cells):
    fps = fingerprints(sample_config)
    assert fps == fingerprints(config.parse(SAMPLE.read_text(), "elsewhere.toml"))
    assert len(set(fps.values())) == len(sample_cells)
    assert all(re.fullmatch(r"[0-9a-f]{64}", fp) for fp in fps.values())


def test_fingerprint_changes_with_the_keras_pin(sample_text, sample_config):
    before, after = fingerprints(sample_config), fingerprints(edited(sample_text, 'keras = "3.12.4"', 'keras = "3.12.5"'))
    changed = sorted(k for k in before if before[k] != after[k])
    assert changed == [k for k in sorted(before) if k.startswith("tf2.21.0-")]


def test_fingerprint_changes_with_jupyter_packages(sample_text, sample_config):
    before = fingerprints(sample_config)
    after = fingerprints(edited(sample_text, '"ipykernel>=6.29,<8"]', '"ipykernel>=6.29,<8", "jupyter-resource-usage"]'))
    assert all(before[k] != after[k] for k in before)


def test_fingerprint_changes_with_science_packages(sample_text, sample_config):
    before = fingerprints(sample_config)
    after = fingerprints(edited(sample_text, '"tqdm>=4.66,<5",', '"tqdm>=4.67,<5",'))
    assert all(before[k] != after[k] for k in before)


@pytest.mark.parametrize(
    "old, new",
    [
        ('"sqlalchemy>=2.0,<3"]', '"sqlalchemy>=2.0,<3", "xlrd"]'),  # a package more in [data]
        ('[visualisation]\npackages = ["bokeh>=3.5,<4"]\n', ""),  # [visualisation] dropped: its layer is empty
    ],
)
def test_fingerprint_changes_with_the_data_and_visualisation_packages(sample_text, sample_config, old, new):
    before, after = fingerprints(sample_config), fingerprints(edited(sample_text, old, new))
    assert all(before[k] != after[k] for k in before)


def test_fingerprint_changes_when_a_package_moves_to_another_layer(sample_text, sample_config):
    """The same requirements in another table give the same resolution but another split: relock."""
    assert sample_text.count('    "ipywidgets>=8.1,<9",\n') == 1
    text = sample_text.replace('    "ipywidgets>=8.1,<9",\n', "")
    moved = edited(text, 'packages = ["bokeh>=3.5,<4"]', 'packages = ["bokeh>=3.5,<4", "ipywidgets>=8.1,<9"]')
    assert sorted(moved.science_packages + moved.group_packages["visualisation"]) == sorted(
        sample_config.science_packages + sample_config.group_packages["visualisation"]
    )
    assert all(fingerprints(sample_config)[k] != fingerprints(moved)[k] for k in fingerprints(moved))


def test_fingerprint_changes_with_a_cuda_wheel_of_that_cuda_only(sample_text, sample_config):
    before = fingerprints(sample_config)
    after = fingerprints(edited(sample_text, '"nvidia-cublas-cu12" = "12.5.3.2"', '"nvidia-cublas-cu12" = "12.5.3.3"'))
    changed = sorted(k for k in before if before[k] != after[k])
    assert changed == ["tf2.20.0-py3.11-gpu-cuda12.5", "tf2.21.0-py3.11-gpu-cuda12.5", "tf2.21.0-py3.13-gpu-cuda12.5"]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('host = "ghcr.io"', 'host = "127.0.0.1:5000"'),
        ('repository = "kerastack/keras-jupyter"', 'repository = "other/name"'),
        ('[defaults]\ntensorflow = "2.21.0"\npython = "3.11"', '[defaults]\ntensorflow = "2.21.0"\npython = "3.13"'),
        ('min_driver = "555.42"', 'min_driver = "560.0"'),
    ],
    ids=["registry-host", "repository", "defaults", "min-driver"],
)
def test_fingerprint_ignores_irrelevant_values(sample_text, sample_config, old, new):
    assert fingerprints(edited(sample_text, old, new)) == fingerprints(sample_config)


# ---------------------------------------------------------------- parse_compiled, split_groups, render_group

H = "sha256:" + "1" * 64
H2 = "sha256:" + "2" * 64

COMPILED = textwrap.dedent(
    f"""\
    absl-py==2.5.1 \\
        --hash={H} \\
        --hash={H2}
        # via
        #   keras
        #   tensorflow
    jupyterlab==4.6.6 \\
        --hash={H}
        # via
        #   -r requirements.in
        #   notebook
    keras==3.12.4 \\
        --hash={H}
        # via
        #   -r requirements.in
        #   tensorflow
    notebook==7.6.5 \\
        --hash={H}
        # via -r requirements.in
    numpy==2.4.6 \\
        --hash={H}
        # via
        #   h5py
        #   keras
        #   tensorflow
    h5py==3.14.0 \\
        --hash={H}
        # via
        #   keras
        #   tensorflow
    nvidia-cublas-cu12==12.5.3.2 \\
        --hash={H}
        # via
        #   -c constraints.txt
        #   nvidia-cudnn-cu12
        #   tensorflow
    nvidia-cudnn-cu12==9.3.0.75 \\
        --hash={H}
        # via
        #   -c constraints.txt
        #   tensorflow
    packaging==26.3 \\
        --hash={H}
        # via
        #   jupyterlab
        #   keras
    six==1.17.0 \\
        --hash={H}
        # via astunparse
    astunparse==1.6.3 \\
        --hash={H}
        # via tensorflow
    Typing_Extensions==4.16.0 \\
        --hash={H}
        # via jupyterlab
    tensorflow[and-cuda]==2.21.0 \\
        --hash={H} \\
        --hash={H2}
        # via -r requirements.in
    """
)


def test_parse_compiled():
    pins = {p.name: p for p in lock_plan.parse_compiled(COMPILED)}
    assert list(pins) == [
        "absl-py", "jupyterlab", "keras", "notebook", "numpy", "h5py", "nvidia-cublas-cu12", "nvidia-cudnn-cu12",
        "packaging", "six", "astunparse", "typing-extensions", "tensorflow",
    ]  # fmt: skip
    assert pins["absl-py"] == Pin("absl-py", "2.5.1", (H, H2), ("keras", "tensorflow"))
    assert pins["tensorflow"] == Pin("tensorflow", "2.21.0", (H, H2), ("-",))
    assert pins["jupyterlab"].via == ("-", "notebook")
    assert pins["notebook"].via == ("-",)
    assert pins["numpy"].via == ("h5py", "keras", "tensorflow")
    assert pins["nvidia-cublas-cu12"].via == ("-", "nvidia-cudnn-cu12", "tensorflow")
    assert pins["six"].via == ("astunparse",)
    assert pins["typing-extensions"].version == "4.16.0"  # name normalised


def test_parse_compiled_ignores_header_and_options():
    text = "# This file was autogenerated by uv\n--index-url https://pypi.org/simple\n\n" + f"six==1.17.0 \\\n    --hash={H}\n    # via -r requirements.in\n"
    assert lock_plan.parse_compiled(text) == [Pin("six", "1.17.0", (H,), ("-",))]


def test_parse_compiled_without_hashes_raises():
    text = COMPILED.replace(f"notebook==7.6.5 \\\n    --hash={H}\n", "notebook==7.6.5\n")
    assert text != COMPILED
    with pytest.raises(PipelineError, match=r"notebook==7\.6\.5 without hashes"):
        lock_plan.parse_compiled(text)


def test_split_groups():
    pins = lock_plan.parse_compiled(COMPILED)
    groups = lock_plan.split_groups(pins, ("tensorflow", "keras"))
    names = {g: [p.name for p in ps] for g, ps in groups.items()}
    assert list(names) == list(GROUPS)
    assert names["cuda"] == ["nvidia-cublas-cu12", "nvidia-cudnn-cu12"]
    # packaging is needed by keras and by jupyterlab: it goes to the (lower) tensorflow layer
    assert names["tensorflow"] == ["absl-py", "astunparse", "h5py", "keras", "numpy", "packaging", "six", "tensorflow"]
    assert names["jupyter"] == ["jupyterlab", "notebook", "typing-extensions"]


def test_split_groups_with_cpu_roots():
    text = f"tensorflow-cpu==2.21.0 \\\n    --hash={H}\n    # via -r requirements.in\nabsl-py==2.5.1 \\\n    --hash={H}\n    # via tensorflow-cpu\n"
    text += f"jupyterlab==4.6.6 \\\n    --hash={H}\n    # via -r requirements.in\n"
    groups = lock_plan.split_groups(lock_plan.parse_compiled(text), ("tensorflow-cpu", "keras"))
    assert {g: [p.name for p in ps] for g, ps in groups.items()} == {
        "venv": [],
        "cuda": [],
        "tensorflow": ["absl-py", "tensorflow-cpu"],
        "science": [],
        "data": [],
        "visualisation": [],
        "jupyter": ["jupyterlab"],
    }


def test_split_groups_science_gets_its_closure_but_not_what_tensorflow_owns():
    def pin(name: str, *via: str) -> str:
        return f"{name}==1.0 \\\n    --hash={H}\n" + "".join(f"    # via {v}\n" for v in via)

    text = pin("tensorflow-cpu", "-r requirements.in") + pin("numpy", "-r requirements.in") + "    #   tensorflow-cpu\n    #   pandas\n"
    text += pin("pandas", "-r requirements.in") + pin("python-dateutil", "pandas") + "    #   jupyter-client\n"
    text += pin("six", "python-dateutil") + pin("jupyter-client", "-r requirements.in") + pin("pyzmq", "jupyter-client")
    groups = lock_plan.split_groups(lock_plan.parse_compiled(text), ("tensorflow-cpu",), {"science": ("numpy", "pandas")})
    assert {g: [p.name for p in ps] for g, ps in groups.items()} == {
        "venv": [],
        "cuda": [],
        "tensorflow": ["numpy", "tensorflow-cpu"],  # TensorFlow owns numpy, though science asks for it too
        "science": ["pandas", "python-dateutil", "six"],  # shared with jupyter: the lower layer has it
        "data": [],
        "visualisation": [],
        "jupyter": ["jupyter-client", "pyzmq"],
    }


def split_names(text: str, layer_roots: dict) -> dict[str, list[str]]:
    groups = lock_plan.split_groups(lock_plan.parse_compiled(text), ("tensorflow-cpu",), layer_roots)
    return {g: [p.name for p in ps] for g, ps in groups.items() if g not in ("venv", "cuda")}


def pin(name: str, *via: str) -> str:
    """One pin of `uv pip compile` output, needed by `via` (a root: "-r requirements.in")."""
    return f"{name}==1.0 \\\n    --hash={H}\n    # via\n" + "".join(f"    #   {v}\n" for v in via)


# A small graph like the real one: seaborn (visualisation) needs pandas (science) and matplotlib; tables (data)
# needs numpy (TensorFlow's) and blosc2; ipykernel (jupyter) needs ipython, which only it needs.
GRAPH = (
    pin("tensorflow-cpu", "-r requirements.in")
    + pin("numpy", "tensorflow-cpu", "pandas", "tables", "matplotlib")
    + pin("pandas", "-r requirements.in", "seaborn")
    + pin("python-dateutil", "pandas", "matplotlib", "jupyter-client")
    + pin("tables", "-r requirements.in")
    + pin("blosc2", "tables")
    + pin("seaborn", "-r requirements.in")
    + pin("matplotlib", "-r requirements.in", "seaborn")
    + pin("ipykernel", "-r requirements.in")
    + pin("jupyter-client", "ipykernel")
    + pin("ipython", "ipykernel")
)
ROOTS = {"science": ("pandas",), "data": ("tables",), "visualisation": ("matplotlib", "seaborn")}


def test_split_groups_each_layer_gets_its_closure_less_what_the_layers_below_have():
    assert split_names(GRAPH, ROOTS) == {
        "tensorflow": ["numpy", "tensorflow-cpu"],
        "science": ["pandas", "python-dateutil"],  # matplotlib and jupyter-client need it too: the lowest layer has it
        "data": ["blosc2", "tables"],  # numpy stays TensorFlow's
        "visualisation": ["matplotlib", "seaborn"],  # seaborn's pandas stays science's
        "jupyter": ["ipykernel", "ipython", "jupyter-client"],  # the rest
    }


def test_split_groups_follows_the_layer_order_not_the_mapping_order():
    assert split_names(GRAPH, dict(reversed(list(ROOTS.items())))) == split_names(GRAPH, ROOTS)


def test_split_groups_a_root_asked_for_by_a_higher_layer_belongs_to_the_lowest_that_needs_it():
    """pandas asked for in [visualisation] only, but seaborn is there too: still one layer; asked for in [data]
    while science needs it through another root: science's."""
    moved = split_names(GRAPH, {"science": (), "data": ("tables",), "visualisation": ("pandas", "matplotlib", "seaborn")})
    assert moved["science"] == [] and moved["visualisation"] == ["matplotlib", "pandas", "python-dateutil", "seaborn"]
    shared = split_names(GRAPH, {"science": ("pandas",), "data": ("tables", "python-dateutil"), "visualisation": ()})
    assert shared["science"] == ["pandas", "python-dateutil"] and shared["data"] == ["blosc2", "tables"]
    assert shared["visualisation"] == [] and shared["jupyter"] == ["ipykernel", "ipython", "jupyter-client", "matplotlib", "seaborn"]


def test_split_groups_refuses_a_group_that_has_no_roots():
    with pytest.raises(ValueError, match="no such rooted group jupyter"):
        lock_plan.split_groups([], ("tensorflow-cpu",), {"jupyter": ("ipykernel",)})


def test_render_group_round_trips(sample_config, sample_cells_by_id):
    inputs = lock_plan.inputs_for(sample_config, sample_cells_by_id["tf2.21.0-py3.11-gpu-cuda12.5"])
    pins = lock_plan.split_groups(lock_plan.parse_compiled(COMPILED), inputs.group_roots)["cuda"]
    text = lock_plan.render_group(inputs, "cuda", pins)
    assert text == (
        "# Lock group 'cuda' for Python 3.11. Generated by `nox -s lock`; do not edit.\n"
        f"nvidia-cublas-cu12==12.5.3.2 \\\n    --hash={H}\n"
        f"nvidia-cudnn-cu12==9.3.0.75 \\\n    --hash={H}\n"
    )
    assert "tf2.21.0" not in text  # identical groups of different cells are identical files
    assert [(p.name, p.version, p.hashes) for p in lock_plan.parse_compiled(text)] == [(p.name, p.version, p.hashes) for p in pins]
    assert lock_plan.render_group(inputs, "cuda", []).count("\n") == 1


# ---------------------------------------------------------------- status
# On the test project tests/unit/data/locked: cells tf2.20.0-py3.11-cpu, tf2.21.0-py3.11-cpu, its -arm64 twin, tf2.21.0-py3.11-gpu-cuda12.5.
# tests/unit/test_lock_platforms.py checks the arm64 cell's shared files.

OLD_CELL, CPU_CELL, GPU_CELL = "tf2.20.0-py3.11-cpu", "tf2.21.0-py3.11-cpu", "tf2.21.0-py3.11-gpu-cuda12.5"
ARM_CELL = CPU_CELL + "-arm64"


@pytest.fixture
def locked_text(locked_project) -> str:
    return (locked_project / "versions.toml").read_text()


@pytest.fixture
def locked_config(locked_text):
    return config.parse(locked_text, "versions.toml")


@pytest.fixture
def locked_cells(locked_config):
    return matrix.cells(locked_config)


def states(result) -> dict[str, str]:
    return {s.cell_id: s.state for s in result}


def test_status_of_valid_locks_is_ok(locked_project, locked_config, locked_cells):
    result = lock_plan.status(locked_project, locked_config, locked_cells)
    assert [s.cell_id for s in result] == [c.id for c in locked_cells] == [OLD_CELL, CPU_CELL, ARM_CELL, GPU_CELL]
    assert all(s.state == "ok" and s.detail == "" for s in result)


def test_status_stale_after_a_config_change(locked_project, locked_text, locked_cells):
    changed = edited(locked_text, 'keras = "3.12.4"', 'keras = "3.12.5"')
    result = lock_plan.status(locked_project, changed, locked_cells)
    assert states(result) == {OLD_CELL: "ok", CPU_CELL: "stale", ARM_CELL: "stale", GPU_CELL: "stale"}
    assert all("versions.toml changed" in s.detail for s in result if s.state == "stale")


def test_status_stale_only_where_the_change_reaches(locked_project, locked_text, locked_cells):
    changed = edited(locked_text, '"nvidia-cublas-cu12" = "12.5.3.2"', '"nvidia-cublas-cu12" = "12.5.3.3"')
    assert states(lock_plan.status(locked_project, changed, locked_cells)) == {OLD_CELL: "ok", CPU_CELL: "ok", ARM_CELL: "ok", GPU_CELL: "stale"}


def test_status_missing_group_file(locked_project, locked_config, locked_cells):
    (locked_project / "locks" / GPU_CELL / "tensorflow.txt").unlink()
    result = {s.cell_id: s for s in lock_plan.status(locked_project, locked_config, locked_cells)}
    assert result[GPU_CELL].state == "missing"
    assert result[GPU_CELL].detail == "group files missing: tensorflow"
    assert sum(s.state == "ok" for s in result.values()) == len(locked_cells) - 1


def test_status_missing_lock_json(locked_project, locked_config, locked_cells):
    (locked_project / "locks" / OLD_CELL / "lock.json").unlink()
    result = {s.cell_id: s for s in lock_plan.status(locked_project, locked_config, locked_cells)}
    assert result[OLD_CELL].state == "missing" and "lock.json does not exist" in result[OLD_CELL].detail


def test_status_missing_folder(tmp_path, sample_config, sample_cells):
    result = lock_plan.status(tmp_path, sample_config, sample_cells)
    assert [s.state for s in result] == ["missing"] * len(sample_cells)


def test_status_extra_folder_is_stale(locked_project, locked_config, locked_cells):
    (locked_project / "locks" / "tf2.19.0-py3.11-cpu").mkdir()
    (locked_project / "locks" / "README").write_text("a file, not a cell")
    result = lock_plan.status(locked_project, locked_config, locked_cells)
    assert result[-1].cell_id == "tf2.19.0-py3.11-cpu" and result[-1].state == "stale" and "delete the folder" in result[-1].detail
    assert len(result) == len(locked_cells) + 1


def test_status_of_a_removed_cell(locked_project, locked_text):
    cpu_only = locked_text.replace('variant = ["cpu", "gpu"]', 'variant = ["cpu"]').replace('[[matrix.exclude]]\ntensorflow = "2.20.0"\nvariant = "gpu"\n', "")
    narrowed = config.parse(cpu_only, "versions.toml")
    assert states(lock_plan.status(locked_project, narrowed, matrix.cells(narrowed))) == {OLD_CELL: "ok", CPU_CELL: "ok", ARM_CELL: "ok", GPU_CELL: "stale"}


# ---------------------------------------------------------------- _check_cuda_pins


def cuda_pins(cfg, cuda: str, **overrides) -> list[Pin]:
    wheels = dict(cfg.cuda[Version(cuda)].wheels) | overrides
    return [Pin(name, version, (H,)) for name, version in sorted(wheels.items())]


def test_check_cuda_pins_accepts_the_pinned_wheels(sample_config, sample_cells_by_id):
    lock_plan.check_cuda_pins(sample_config, sample_cells_by_id["tf2.21.0-py3.11-gpu-cuda12.5"], cuda_pins(sample_config, "12.5"))
    lock_plan.check_cuda_pins(sample_config, sample_cells_by_id["tf2.21.0-py3.11-cpu"], [])


def test_check_cuda_pins_rejects_an_unpinned_wheel(sample_config, sample_cells_by_id):
    pins = cuda_pins(sample_config, "12.5") + [Pin("nvidia-nvshmem-cu12", "3.3.20", (H,))]
    with pytest.raises(PipelineError) as info:
        lock_plan.check_cuda_pins(sample_config, sample_cells_by_id["tf2.21.0-py3.11-gpu-cuda12.5"], pins)
    message = str(info.value)
    assert message.startswith("tf2.21.0-py3.11-gpu-cuda12.5: ")
    assert "nvidia-nvshmem-cu12==3.3.20" in message and '[cuda."12.5"]' in message
    assert "nvidia-cublas-cu12" not in message


def test_check_cuda_pins_rejects_cuda_wheels_in_a_cpu_cell(sample_config, sample_cells_by_id):
    with pytest.raises(PipelineError, match=r"tf2.21.0-py3.11-cpu: a CPU cell resolved CUDA wheels \(nvidia-cublas-cu12\)"):
        lock_plan.check_cuda_pins(sample_config, sample_cells_by_id["tf2.21.0-py3.11-cpu"], [Pin("nvidia-cublas-cu12", "12.5.3.2", (H,))])


def test_check_cuda_pins_rejects_a_pinned_wheel_at_another_version(sample_config, sample_cells_by_id):
    pins = cuda_pins(sample_config, "12.5", **{"nvidia-cublas-cu12": "12.9.1.4"})
    with pytest.raises(PipelineError):
        lock_plan.check_cuda_pins(sample_config, sample_cells_by_id["tf2.21.0-py3.11-gpu-cuda12.5"], pins)


def test_split_groups_puts_pip_and_setuptools_in_the_venv_group_whoever_needs_them():
    text = f"tensorflow-cpu==2.21.0 \\\n    --hash={H}\n    # via -r requirements.in\n"
    text += f"setuptools==80.0.0 \\\n    --hash={H}\n    # via\n    #   -r requirements.in\n    #   tensorflow-cpu\n"
    text += f"pip==26.0 \\\n    --hash={H}\n    # via -r requirements.in\n"
    groups = lock_plan.split_groups(lock_plan.parse_compiled(text), ("tensorflow-cpu",))
    assert [p.name for p in groups["venv"]] == ["pip", "setuptools"]
    assert [p.name for p in groups["tensorflow"]] == ["tensorflow-cpu"]
