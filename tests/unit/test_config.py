"""versions.toml: a valid file loads, and every kind of bad input names the file, the key path and the fix.

Bad configs are the test data's versions.toml (tests/unit/data) edited in memory, so each case differs from a
valid file by one mistake. The real versions.toml is checked in test_real_versions_file.py.
"""

from __future__ import annotations

import json
import re

import pytest

from kerastack import config, matrix
from kerastack.errors import ConfigError, PipelineError
from kerastack.versions import Version

FILE = "versions.toml"
# The sample file ends with one [[matrix.include]] (the GPU pair that shows the shared CUDA layer).
# The bad-input cases below edit the file without it, so each appended table is the first of its kind.
GPU_PAIR_INCLUDE = re.compile(r"\n# \.\.\. except one GPU pair.*\Z", re.DOTALL)


@pytest.fixture(scope="module")
def base_text(sample_text) -> str:
    """The sample versions.toml without its include: what the bad-input cases edit."""
    stripped = GPU_PAIR_INCLUDE.sub("\n", sample_text)
    assert stripped != sample_text and "[[matrix.include]]" not in stripped
    return stripped


def edit(text: str, old: str, new: str) -> str:
    """Replace `old`, which must occur exactly once (so a changed versions.toml fails here, not silently)."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in versions.toml"
    return text.replace(old, new)


def top_level(text: str, line: str) -> str:
    """Insert a top-level key (before the first table header)."""
    return edit(text, "schema = 1\n", f"schema = 1\n{line}\n")


def load(text: str) -> list[matrix.Cell]:
    """What every entry point does: parse, then expand and validate the matrix."""
    return matrix.cells(config.parse(text, FILE))


def expect_error(text: str, key_path: str, *, problem: str = "", fix: str = "", file: str = FILE) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        matrix.cells(config.parse(text, file))
    err = info.value
    assert err.file == file
    assert err.key_path == key_path, f"key path {err.key_path!r} != {key_path!r} ({err})"
    assert err.fix.strip(), "the error must say how to fix it"
    assert problem in err.problem, err.problem
    assert fix in err.fix, err.fix
    message = str(err)
    assert message.startswith(f"{file}: {key_path}: " if key_path else f"{file}: "), message
    assert f"\n  fix: {err.fix}" in message
    assert isinstance(err, PipelineError) and err.exit_code == 2
    return err


# ---------------------------------------------------------------- a valid file


def test_the_sample_versions_toml_loads(sample_text):
    c = config.parse(sample_text, FILE)
    sample_cells = matrix.cells(c)
    assert c.path == FILE
    assert (c.registry, c.repository, c.image) == ("ghcr.io", "kerastack/keras-jupyter", "ghcr.io/kerastack/keras-jupyter")
    assert (str(c.defaults.tensorflow), str(c.defaults.python), str(c.defaults.cuda)) == ("2.21.0", "3.11", "12.5")
    assert c.jupyter_packages == ("jupyterlab>=4.4,<5", "notebook>=7.4,<8", "ipykernel>=6.29,<8")
    assert [str(v) for v in c.axis_tensorflow] == ["2.20.0", "2.21.0"]
    assert [str(v) for v in c.axis_python] == ["3.11", "3.13"]
    assert c.axis_variant == ("cpu", "gpu")
    assert [str(v) for v in c.axis_cuda] == ["12.5", "12.9"]
    assert {str(v): str(r.keras) for v, r in c.tensorflow.items()} == {"2.20.0": "3.11.3", "2.21.0": "3.12.4"}
    assert str(c.tensorflow[Version("2.21.0")].python) == ">= 3.10, <= 3.13"
    assert str(c.tensorflow[Version("2.20.0")].cuda) == ">= 12.5, < 13"
    assert {str(v): p.debian_suite for v, p in c.python.items()} == {"3.11": "bookworm", "3.13": "trixie"}
    assert all(p.base_image.startswith("docker.io/library/python:") and "@sha256:" in p.base_image for p in c.python.values())
    cuda125 = c.cuda[Version("12.5")]
    assert (str(cuda125.cudnn), cuda125.min_driver, cuda125.runtime_version) == ("9.3", "555.42", "12.5.82")
    assert len(cuda125.wheels) == 12 and [n for n, _ in cuda125.wheels] == sorted(n for n, _ in cuda125.wheels)
    assert c.cuda[Version("12.9")].runtime_version == "12.9.79"
    assert {n: (v.tensorflow_package, v.needs_cuda) for n, v in c.variants.items()} == {
        "cpu": ("tensorflow-cpu", False),
        "gpu": ("tensorflow[and-cuda]", True),
    }
    assert len(c.excludes) == 1 and c.excludes[0].key_path == "matrix.exclude[0]"
    # The GPU pair that differs only in TensorFlow: the build report shows the CUDA layer they share.
    assert [(str(r.tensorflow), str(r.python), r.variant, str(r.cuda)) for r in c.includes] == [("2.20.0", "3.11", "gpu", "12.5")]
    assert len(sample_cells) == 9


def test_load_reads_the_file_and_names_a_missing_one(tmp_path, base_text):
    path = tmp_path / "versions.toml"
    path.write_text(base_text)
    assert config.load(path).path == str(path)
    with pytest.raises(ConfigError) as info:
        config.load(tmp_path / "nope.toml")
    assert info.value.file == str(tmp_path / "nope.toml") and "not found" in info.value.problem and "--config" in info.value.fix


def test_error_names_the_file_it_was_given(base_text):
    expect_error(top_level(base_text, "colour = 1"), "colour", file="conf/other.toml")


# ---------------------------------------------------------------- unknown keys


def test_unknown_top_level_key(base_text):
    err = expect_error(top_level(base_text, 'colour = "blue"'), "colour", problem="unknown key")
    assert "registry" in err.fix and "matrix" in err.fix


def test_unknown_key_in_a_release(base_text):
    text = edit(base_text, 'keras = "3.12.4"\n', 'keras = "3.12.4"\nnumpy = "2.0"\n')
    err = expect_error(text, 'tensorflow."2.21.0".numpy', problem="unknown key")
    assert "keras" in err.fix and "built_with" in err.fix


def test_unknown_key_in_an_exclude(base_text):
    err = expect_error(base_text + "gpu = true\n", "matrix.exclude[0].gpu", problem="unknown key")
    assert "variant" in err.fix


def test_unknown_key_in_registry(base_text):
    text = edit(base_text, 'host = "ghcr.io"\n', 'host = "ghcr.io"\nport = 443\n')
    expect_error(text, "registry.port", problem="unknown key", fix="host, repository")


# ---------------------------------------------------------------- combinations a release does not support


def test_python_outside_a_release_range_names_the_cell_and_suggests_an_exclude(base_text):
    text = edit(base_text, 'python = ["3.11", "3.13"]', 'python = ["3.11", "3.13", "3.14"]')
    text = edit(text, 'python = { min = "3.10", max = "3.13" }', 'python = { min = "3.10", max = "3.14" }')  # 2.21.0 supports it
    text += '\n[python."3.14"]\nbase_image = "docker.io/library/python:3.14-slim-trixie@sha256:' + "1" * 64 + '"\noffline = { debian = "trixie" }\n'
    err = expect_error(text, "matrix.python", problem="(cell tf2.20.0-py3.14-cpu)", fix='[[matrix.exclude]] tensorflow = "2.20.0", python = "3.14"')
    assert "supports Python >= 3.9, <= 3.13, not 3.14" in err.problem

    # Following the fix makes it load, and removes only the unsupported cells.
    tf, py = re.search(r'tensorflow = "([^"]+)", python = "([^"]+)"', err.fix).groups()
    fixed = text + f'\n[[matrix.exclude]]\ntensorflow = "{tf}"\npython = "{py}"\n'
    ids = [cell.id for cell in load(fixed)]
    assert "tf2.20.0-py3.14-cpu" not in ids
    assert {"tf2.21.0-py3.14-cpu", "tf2.21.0-py3.14-gpu-cuda12.5", "tf2.21.0-py3.14-gpu-cuda12.9"} <= set(ids)
    assert len(ids) == 11


def test_python_below_a_release_range(base_text):
    text = edit(base_text, 'python = ["3.11", "3.13"]', 'python = ["3.9", "3.11", "3.13"]')
    text += '\n[python."3.9"]\nbase_image = "docker.io/library/python:3.9-slim-bookworm@sha256:' + "2" * 64 + '"\noffline = { debian = "bookworm" }\n'
    # 2.20.0 supports 3.9, 2.21.0 does not (min 3.10)
    expect_error(text, "matrix.python", problem="TensorFlow 2.21.0 supports Python >= 3.10, <= 3.13, not 3.9 (cell tf2.21.0-py3.9-cpu)")


def test_cuda_a_release_does_not_accept(base_text):
    text = edit(base_text, 'cuda = ["12.5", "12.9"]', 'cuda = ["11.8", "12.5", "12.9"]')
    text += '\n[cuda."11.8"]\ncudnn = "8.9"\nmin_driver = "520.61"\nwheels = { "nvidia-cuda-runtime-cu12" = "11.8.89" }\n'
    err = expect_error(text, "matrix.cuda", problem="accepts CUDA >= 12.5, < 13, not 11.8 (cell tf2.21.0-py3.11-gpu-cuda11.8)")
    assert '[[matrix.exclude]] tensorflow = "2.21.0", cuda = "11.8"' in err.fix

    tf, cuda = re.search(r'tensorflow = "([^"]+)", cuda = "([^"]+)"', err.fix).groups()
    fixed = text + f'\n[[matrix.exclude]]\ntensorflow = "{tf}"\ncuda = "{cuda}"\n'
    assert [cell.id for cell in load(fixed)] == [cell.id for cell in load(base_text)]


def test_cuda_at_or_above_an_exclusive_bound_is_rejected(base_text):
    text = edit(base_text, 'cuda = ["12.5", "12.9"]', 'cuda = ["12.5", "13.0"]')
    text += '\n[cuda."13.0"]\ncudnn = "9.12"\nmin_driver = "580.65"\nwheels = { "nvidia-cuda-runtime-cu12" = "13.0.48" }\n'
    expect_error(text, "matrix.cuda", problem="not 13.0 (cell tf2.21.0-py3.11-gpu-cuda13.0)")


# ---------------------------------------------------------------- malformed versions


@pytest.mark.parametrize(
    ("old", "new", "key_path", "problem"),
    [
        ('tensorflow = ["2.20.0", "2.21.0"]', 'tensorflow = ["2.20.0", "2.x"]', "matrix.tensorflow[1]", "'2.x' is a malformed version"),
        ('python = "3.11"\ncuda = "12.5"', 'python = "three"\ncuda = "12.5"', "defaults.python", "'three' is a malformed version"),
        ('python = ["3.11", "3.13"]', 'python = [3.11, "3.13"]', "matrix.python[0]", "expected a version string, got 3.11"),
        ('keras = "3.12.4"', 'keras = "1..2"', 'tensorflow."2.21.0".keras', "'1..2' is a malformed version"),
        ('cudnn = "9.10"', 'cudnn = "9.10-rc1"', 'cuda."12.9".cudnn', "malformed version"),
        ('min_driver = "555.42"', "min_driver = 555.42", 'cuda."12.5".min_driver', "expected a driver version string"),
        (
            'cuda = { min = "12.5", below = "13" }\nkeras = "3.12.4"',
            'cuda = { min = "12.5", below = "v13" }\nkeras = "3.12.4"',
            'tensorflow."2.21.0".cuda.below',
            "malformed",
        ),
        ('"nvidia-cublas-cu12" = "12.5.3.2"', '"nvidia-cublas-cu12" = "12.5..3.2"', 'cuda."12.5".wheels.nvidia-cublas-cu12', "is not a PEP 440 version"),
    ],
    ids=["2.x", "three", "float-3.11", "1..2", "cudnn-rc", "driver-float", "range-v13", "wheel-not-pep440"],
)
def test_malformed_versions(base_text, old, new, key_path, problem):
    expect_error(edit(base_text, old, new), key_path, problem=problem)


@pytest.mark.parametrize("driver", ["555.42", "555.42.06", "470.256.02", "1025.3"])
def test_nvidia_driver_versions_as_nvidia_smi_prints_them_are_accepted(base_text, driver):
    cfg = config.parse(edit(base_text, 'min_driver = "555.42"', f'min_driver = "{driver}"'), FILE)
    assert cfg.cuda[next(iter(cfg.cuda))].min_driver == driver


@pytest.mark.parametrize("driver", ["560", "555.42.", "0555.42", "555.42.06.1", "\u0665\u0665\u0665.42", "v555.42"])
def test_driver_versions_nvidia_never_prints_are_refused(base_text, driver):
    expect_error(edit(base_text, 'min_driver = "555.42"', f'min_driver = "{driver}"'), 'cuda."12.5".min_driver', problem="is not an NVIDIA driver version")


@pytest.mark.parametrize("name", ["nvidia-bad!", "nvidia-x-", "nvidia-\u00e9", "nvidia-a b"])
def test_cuda_wheel_names_that_are_not_distribution_names_are_refused(base_text, name):
    text = edit(base_text, '"nvidia-cublas-cu12" = "12.5.3.2"', f'"nvidia-cublas-cu12" = "12.5.3.2", {json.dumps(name)} = "1.0"')
    expect_error(text, config._join('cuda."12.5".wheels', name), problem="is not a valid distribution name")


def test_float_version_fix_says_to_quote_it(base_text):
    err = expect_error(edit(base_text, 'python = ["3.11", "3.13"]', 'python = [3.11, "3.13"]'), "matrix.python[0]")
    assert err.fix == 'quote it: "3.11"'


def test_axis_lists_a_version_twice(base_text):
    expect_error(edit(base_text, 'python = ["3.11", "3.13"]', 'python = ["3.11", "3.13", "3.11"]'), "matrix.python[2]", problem="listed twice")


def test_range_with_both_max_and_below(base_text):
    text = edit(base_text, 'python = { min = "3.10", max = "3.13" }', 'python = { min = "3.10", max = "3.13", below = "3.14" }')
    expect_error(text, 'tensorflow."2.21.0".python', problem="exactly one of")


def test_range_upper_bound_below_min(base_text):
    text = edit(base_text, 'python = { min = "3.10", max = "3.13" }', 'python = { min = "3.13", max = "3.10" }')
    expect_error(text, 'tensorflow."2.21.0".python', problem="upper bound 3.10 is below min 3.13")


def test_version_with_trailing_newline_is_malformed(base_text):
    expect_error(edit(base_text, 'tensorflow = ["2.20.0", "2.21.0"]', 'tensorflow = ["2.20.0", "2.21.0\\n"]'), "matrix.tensorflow[1]", problem="malformed")


def test_two_spellings_of_one_release_are_rejected(base_text):
    text = base_text + (
        '\n[tensorflow."2.21.00"]\npython = { min = "3.10", max = "3.13" }\nbuilt_with = { cuda = "12.5", cudnn = "9.3" }\n'
        'cuda = { min = "12.5", below = "13" }\nkeras = "9.9.9"\n'
    )
    with pytest.raises(ConfigError) as info:
        config.parse(text, FILE)
    assert info.value.key_path.startswith("tensorflow.")


# ---------------------------------------------------------------- GPU cells and CUDA data


def test_gpu_variant_without_a_cuda_axis(base_text):
    err = expect_error(edit(base_text, 'cuda = ["12.5", "12.9"]\n', ""), "matrix.cuda", problem="GPU cells need CUDA versions")
    assert "cuda = [" in err.fix


def test_cpu_only_matrix_needs_no_cuda_axis(base_text):
    text = edit(base_text, 'variant = ["cpu", "gpu"]\ncuda = ["12.5", "12.9"]\n', 'variant = ["cpu"]\n')
    text = edit(text, '[[matrix.exclude]]\ntensorflow = "2.20.0"\nvariant = "gpu"\n', "")
    assert [cell.id for cell in load(text)] == ["tf2.20.0-py3.11-cpu", "tf2.20.0-py3.13-cpu", "tf2.21.0-py3.11-cpu", "tf2.21.0-py3.13-cpu"]


def test_cuda_axis_names_a_version_without_an_entry(base_text):
    expect_error(edit(base_text, 'cuda = ["12.5", "12.9"]', 'cuda = ["12.5", "12.6"]'), "matrix.cuda[1]", problem="CUDA 12.6 has no", fix="12.5, 12.9")


def test_gpu_include_without_cuda(base_text):
    text = base_text + '\n[[matrix.include]]\ntensorflow = "2.20.0"\npython = "3.11"\nvariant = "gpu"\n'
    expect_error(text, "matrix.include[0]", problem="a GPU cell without a CUDA version")


def test_cpu_include_with_cuda(base_text):
    text = base_text + '\n[[matrix.include]]\ntensorflow = "2.20.0"\npython = "3.11"\nvariant = "cpu"\ncuda = "12.5"\n'
    expect_error(text, "matrix.include[0].cuda", problem="a CPU cell has no CUDA version")


def test_include_of_an_excluded_gpu_cell_adds_it(base_text):
    text = base_text + '\n[[matrix.include]]\ntensorflow = "2.20.0"\npython = "3.11"\nvariant = "gpu"\ncuda = "12.5"\n'
    ids = [cell.id for cell in load(text)]
    assert "tf2.20.0-py3.11-gpu-cuda12.5" in ids and "tf2.20.0-py3.13-gpu-cuda12.5" not in ids and len(ids) == 9


def test_runtime_wheel_of_another_cuda(base_text):
    text = edit(base_text, '"nvidia-cuda-runtime-cu12" = "12.5.82"', '"nvidia-cuda-runtime-cu12" = "12.4.127"')
    expect_error(text, 'cuda."12.5".wheels.nvidia-cuda-runtime-cu12', problem="runtime 12.4.127 is not CUDA 12.5", fix="12.5.x")


def test_runtime_wheel_prefix_is_per_component(base_text):
    # 12.50.1 starts with the characters "12.5" but is not CUDA 12.5
    text = edit(base_text, '"nvidia-cuda-runtime-cu12" = "12.5.82"', '"nvidia-cuda-runtime-cu12" = "12.50.1"')
    expect_error(text, 'cuda."12.5".wheels.nvidia-cuda-runtime-cu12', problem="is not CUDA 12.5")


def test_cuda_entry_without_runtime_wheel(base_text):
    text = edit(base_text, '"nvidia-cuda-runtime-cu12" = "12.9.79", ', "")
    expect_error(text, 'cuda."12.9".wheels', problem="runtime wheel is not pinned", fix='"nvidia-cuda-runtime-cu12"')


def test_cuda_entry_with_a_non_nvidia_wheel(base_text):
    text = edit(base_text, '"nvidia-nccl-cu12" = "2.27.7" }\n\n[cuda."12.9"]', '"nvidia-nccl-cu12" = "2.27.7", numpy = "2.0.0" }\n\n[cuda."12.9"]')
    expect_error(text, 'cuda."12.5".wheels.numpy', problem="only NVIDIA CUDA wheels")


# ---------------------------------------------------------------- matrix rules


def test_include_that_repeats_a_matrix_cell(base_text):
    text = base_text + '\n[[matrix.include]]\ntensorflow = "2.21.0"\npython = "3.11"\nvariant = "cpu"\n'
    err = expect_error(text, "matrix.include[0]", problem="duplicate cell tf2.21.0-py3.11-cpu (also from matrix)")
    assert "exclude" in err.fix


def test_include_that_repeats_a_gpu_cell(base_text):
    text = base_text + '\n[[matrix.include]]\ntensorflow = "2.21.0"\npython = "3.13"\nvariant = "gpu"\ncuda = "12.9"\n'
    expect_error(text, "matrix.include[0]", problem="duplicate cell tf2.21.0-py3.13-gpu-cuda12.9")


def test_two_identical_includes(base_text):
    rule = '\n[[matrix.include]]\ntensorflow = "2.20.0"\npython = "3.11"\nvariant = "gpu"\ncuda = "12.9"\n'
    expect_error(base_text + rule + rule, "matrix.include[1]", problem="(also from matrix.include[0])")


def test_include_must_name_a_whole_cell(base_text):
    expect_error(base_text + '\n[[matrix.include]]\ntensorflow = "2.21.0"\nvariant = "cpu"\n', "matrix.include[0]", problem="names one whole cell")


def test_include_of_unknown_release(base_text):
    text = base_text + '\n[[matrix.include]]\ntensorflow = "2.19.0"\npython = "3.11"\nvariant = "cpu"\n'
    expect_error(text, "matrix.include[0].tensorflow", problem="2.19.0 has no", fix="2.20.0, 2.21.0")


def test_exclude_that_matches_nothing(base_text):
    err = expect_error(base_text + '\n[[matrix.exclude]]\ntensorflow = "2.19.0"\n', "matrix.exclude[1]", problem="matches no cell")
    assert "remove it" in err.fix


def test_exclude_prefix_is_per_component(base_text):
    # python = "3.1" must not match 3.11 or 3.13
    expect_error(base_text + '\n[[matrix.exclude]]\npython = "3.1"\n', "matrix.exclude[1]", problem="matches no cell")


def test_exclude_of_cuda_matches_only_gpu_cells(base_text):
    ids = [cell.id for cell in load(base_text + '\n[[matrix.exclude]]\ncuda = "12.9"\n')]
    assert ids == [
        "tf2.20.0-py3.11-cpu",
        "tf2.20.0-py3.13-cpu",
        "tf2.21.0-py3.11-cpu",
        "tf2.21.0-py3.11-gpu-cuda12.5",
        "tf2.21.0-py3.13-cpu",
        "tf2.21.0-py3.13-gpu-cuda12.5",
    ]


def test_empty_exclude(base_text):
    expect_error(base_text + "\n[[matrix.exclude]]\n", "matrix.exclude[1]", problem="empty rule")


def test_exclude_with_unknown_variant(base_text):
    expect_error(base_text + '\n[[matrix.exclude]]\nvariant = "tpu"\n', "matrix.exclude[1].variant", problem="unknown variant 'tpu'", fix="cpu, gpu")


def test_excludes_that_remove_every_cell(base_text):
    expect_error(base_text + '\n[[matrix.exclude]]\nvariant = "cpu"\n[[matrix.exclude]]\nvariant = "gpu"\n', "matrix", problem="no cells")


def test_unknown_variant_in_axis(base_text):
    expect_error(edit(base_text, 'variant = ["cpu", "gpu"]', 'variant = ["cpu", "tpu"]'), "matrix.variant[1]", problem="unknown variant 'tpu'")


# ---------------------------------------------------------------- release keys, registry, required keys


@pytest.mark.parametrize(
    ("key", "key_path", "problem"),
    [
        ('"2.21"', 'tensorflow."2.21"', "not a full release version"),
        ('"2.21.0.1"', 'tensorflow."2.21.0.1"', "not a full release version"),
        ('"2"', 'tensorflow."2"', "not a full release version"),
        ("latest", "tensorflow.latest", "malformed version"),
    ],
)
def test_release_key_must_be_major_minor_patch(base_text, key, key_path, problem):
    expect_error(edit(base_text, '[tensorflow."2.21.0"]', f"[tensorflow.{key}]"), key_path, problem=problem)


def test_python_key_must_be_major_minor(base_text):
    expect_error(edit(base_text, '[python."3.13"]', '[python."3.13.1"]'), 'python."3.13.1"', problem="not a Python minor version")


@pytest.mark.parametrize(
    ("old", "new", "key_path", "problem"),
    [
        ('host = "ghcr.io"', 'host = "ghcr.io/kerastack"', "registry.host", "is not a registry host"),
        ('host = "ghcr.io"', 'host = "my registry"', "registry.host", "is not a registry host"),
        ('host = "ghcr.io"', 'host = "ghcr.io:port"', "registry.host", "is not a registry host"),
        ('host = "ghcr.io"', 'host = ""', "registry.host", "non-empty string"),
        ('host = "ghcr.io"', "host = 5000", "registry.host", "non-empty string"),
        ('repository = "kerastack/keras-jupyter"', 'repository = "Kerastack/Keras-Jupyter"', "registry.repository", "is not a valid repository"),
        ('repository = "kerastack/keras-jupyter"', 'repository = "kerastack//keras"', "registry.repository", "is not a valid repository"),
        ('repository = "kerastack/keras-jupyter"', 'repository = "kerastack/keras-jupyter:latest"', "registry.repository", "is not a valid repository"),
        ('repository = "kerastack/keras-jupyter"', 'repository = "-kerastack/keras"', "registry.repository", "is not a valid repository"),
    ],
)
def test_invalid_registry(base_text, old, new, key_path, problem):
    expect_error(edit(base_text, old, new), key_path, problem=problem)


def test_registry_with_port_is_valid(base_text):
    text = edit(base_text, 'host = "ghcr.io"', 'host = "127.0.0.1:5000"')
    assert config.parse(text, FILE).image == "127.0.0.1:5000/kerastack/keras-jupyter"


def test_registry_host_with_trailing_newline_is_invalid(base_text):
    expect_error(edit(base_text, 'host = "ghcr.io"', 'host = "ghcr.io\\n"'), "registry.host", problem="is not a registry host")


@pytest.mark.parametrize(
    ("old", "key_path"),
    [
        ('keras = "3.12.4"\n', 'tensorflow."2.21.0".keras'),
        ("schema = 1\n", "schema"),
        ('min_driver = "575.51"\n', 'cuda."12.9".min_driver'),
        ('[jupyter]\npackages = ["jupyterlab>=4.4,<5", "notebook>=7.4,<8", "ipykernel>=6.29,<8"]\n', "jupyter"),
        ('repository = "kerastack/keras-jupyter"\n', "registry.repository"),
        ('variant = ["cpu", "gpu"]\n', "matrix.variant"),
        ('offline = { debian = "trixie" }\n', 'python."3.13".offline'),
        ('tensorflow_package = "tensorflow-cpu"\n', "variants.cpu.tensorflow_package"),
    ],
)
def test_missing_required_key(base_text, old, key_path):
    err = expect_error(edit(base_text, old, ""), key_path, problem="missing")
    assert err.fix.startswith(f"add `{key_path.rsplit('.', 1)[-1]} = ...`")


def test_invalid_toml_syntax(base_text):
    err = expect_error(edit(base_text, 'host = "ghcr.io"', 'host = "ghcr.io'), "", problem="not valid TOML")
    assert str(err).startswith("versions.toml: not valid TOML")
    assert "line 6" in err.problem  # tomllib's position survives in the message


def test_duplicate_toml_table_is_invalid_toml(base_text):
    expect_error(base_text + '\n[registry]\nhost = "x"\n', "", problem="not valid TOML")


@pytest.mark.parametrize("value", ["2", "0", '"1"'])
def test_schema_must_be_1(base_text, value):
    err = expect_error(edit(base_text, "schema = 1\n", f"schema = {value}\n"), "schema", problem="unsupported schema")
    assert err.fix == "set schema = 1"


@pytest.mark.parametrize("value", ["true", "1.0"])
def test_schema_must_be_the_integer_1(base_text, value):
    expect_error(edit(base_text, "schema = 1\n", f"schema = {value}\n"), "schema", problem="unsupported schema")


def test_defaults_must_name_entries(base_text):
    expect_error(
        edit(base_text, 'cuda = "12.5"\n\n# Jupyter', 'cuda = "12.7"\n\n# Jupyter'),
        "defaults.cuda",
        problem='12.7 has no [cuda."12.7"] entry',
        fix="12.5, 12.9",
    )


def test_variant_needs_cuda_must_match_its_name(base_text):
    gpu_variant = 'tensorflow_package = "tensorflow[and-cuda]"\n'
    expect_error(
        edit(base_text, gpu_variant, gpu_variant + "needs_cuda = false\n"), "variants.gpu.needs_cuda", problem="must need CUDA", fix="needs_cuda = true"
    )


def test_unknown_debian_suite(base_text):
    expect_error(
        edit(base_text, 'offline = { debian = "trixie" }', 'offline = { debian = "jammy" }'), 'python."3.13".offline.debian', problem="'jammy'", fix="bookworm"
    )


def test_bad_jupyter_requirement(base_text):
    text = edit(base_text, '"notebook>=7.4,<8"', '"-e notebook"')
    expect_error(text, "jupyter.packages[1]", problem="is not a requirement")


# ---------------------------------------------------------------- with_registry


def test_with_registry_overrides(sample_config):
    moved = config.with_registry(sample_config, "127.0.0.1:5000", "team/img")
    assert moved.image == "127.0.0.1:5000/team/img"
    assert moved.tensorflow == sample_config.tensorflow and moved.defaults == sample_config.defaults
    assert sample_config.image == "ghcr.io/kerastack/keras-jupyter"  # the original is untouched
    assert config.with_registry(sample_config, "localhost:5000").image == "localhost:5000/kerastack/keras-jupyter"
    assert config.with_registry(sample_config, repository="other/name").image == "ghcr.io/other/name"
    assert config.with_registry(sample_config).image == sample_config.image


@pytest.mark.parametrize(
    ("host", "repository", "key_path"),
    [
        ("not a host", None, "registry"),
        ("ghcr.io/org", None, "registry"),
        (None, "Org/Name", "repository"),
        (None, "org/name:tag", "repository"),
    ],
)
def test_with_registry_rejects_invalid(sample_config, host, repository, key_path):
    with pytest.raises(ConfigError) as info:
        config.with_registry(sample_config, host, repository)
    err = info.value
    assert err.file == "--registry/--repository" and err.key_path == key_path and err.fix.strip()
    assert str(err).startswith(f"--registry/--repository: {key_path}: ")


# ---------------------------------------------------------------- [science]


def test_real_science_packages(sample_config):
    names = [re.split(r"[<>=!~\[ ]", p, maxsplit=1)[0] for p in sample_config.science_packages]
    wanted = {"numpy", "pandas", "scipy", "scikit-learn", "matplotlib", "seaborn", "pillow", "h5py", "tqdm", "ipywidgets"}
    assert wanted <= set(names)


def test_science_is_optional(sample_text):
    start = sample_text.index("[science]")
    end = sample_text.index("]\n", sample_text.index("packages = [", start)) + 2
    assert config.parse(sample_text[:start] + sample_text[end:], FILE).science_packages == ()


@pytest.mark.parametrize(
    "old, new, key_path, problem",
    [
        ('"tqdm>=4.66,<5",', '"tqdm>=4.66,<5", 3,', "science.packages[9]", "expected a requirement string"),
        ('"tqdm>=4.66,<5",', '"tqdm>=4.66,<5", "not a requirement!",', "science.packages[9]", "is not a requirement"),
        ('"tqdm>=4.66,<5",', '"tqdm>=4.66,<5", "Pandas>=2",', "science.packages[9]", "pandas is already required by science.packages[2]"),
        ('"tqdm>=4.66,<5",', '"tqdm>=4.66,<5", "notebook",', "science.packages[9]", "notebook is also in jupyter.packages[1]"),
        ("[science]\npackages = [", "[science]\nextras = 1\npackages = [", "science.extras", "unknown key"),
    ],
)
def test_bad_science_table(sample_text, old, new, key_path, problem):
    expect_error(edit(sample_text, old, new), key_path, problem=problem)


def test_empty_or_non_list_science_packages(sample_text):
    start = sample_text.index("[science]")
    end = sample_text.index("]\n", sample_text.index("packages = [", start)) + 2
    for replacement in ("[science]\npackages = []\n", '[science]\npackages = "pandas"\n', "science = 3\n"):
        text = sample_text[:start] + replacement + sample_text[end:]
        key = "science" if replacement.startswith("science =") else "science.packages"
        if replacement.startswith("science ="):
            text = top_level(sample_text[:start] + sample_text[end:], "science = 3")
        expect_error(text, key)


# ---------------------------------------------------------------- [data] and [visualisation]
DATA = '[data]\npackages = ["openpyxl>=3.1,<4", "sqlalchemy>=2.0,<3"]\n'
VISUALISATION = '[visualisation]\npackages = ["bokeh>=3.5,<4"]\n'


def test_data_and_visualisation_are_read_in_layer_order(sample_config):
    assert list(sample_config.group_packages) == ["science", "data", "visualisation", "jupyter"]
    assert sample_config.group_packages["data"] == ("openpyxl>=3.1,<4", "sqlalchemy>=2.0,<3")
    assert sample_config.group_packages["visualisation"] == ("bokeh>=3.5,<4",)


@pytest.mark.parametrize("table", [DATA, VISUALISATION, DATA + "\n" + VISUALISATION])
def test_data_and_visualisation_are_optional(sample_text, table):
    parsed = config.parse(edit(sample_text, table, ""), FILE)
    for name in ("data", "visualisation"):
        assert parsed.group_packages[name] == (() if f"[{name}]" in table else config.parse(sample_text, FILE).group_packages[name])
    assert len(matrix.cells(parsed)) == len(matrix.cells(config.parse(sample_text, FILE)))


@pytest.mark.parametrize(
    "old, new, key_path, problem, fix",
    [
        # A package in two tables: named where it is listed the second time, with the first place in the message.
        (
            DATA,
            DATA.replace('"sqlalchemy', '"Pandas>=2", "sqlalchemy'),
            "data.packages[1]",
            "pandas is also in science.packages[2]",
            "remove it from data.packages[1] or from science.packages[2]",
        ),
        (
            VISUALISATION,
            VISUALISATION.replace('"bokeh', '"openpyxl", "bokeh'),
            "visualisation.packages[0]",
            "openpyxl is also in data.packages[0]",
            "list each package in one group only",
        ),
        (
            VISUALISATION,
            VISUALISATION.replace('"bokeh', '"notebook", "bokeh'),
            "visualisation.packages[0]",
            "notebook is also in jupyter.packages[1]",
            "in one group only",
        ),
        (
            VISUALISATION,
            VISUALISATION.replace('"bokeh', '"ipywidgets>=8", "bokeh'),
            "visualisation.packages[0]",
            "ipywidgets is also in science.packages[9]",
            "in one group only",
        ),
        # The table's own rules are [science]'s.
        (
            DATA,
            DATA.replace('"sqlalchemy>=2.0,<3"', '"sqlalchemy>=2.0,<3", "SQLAlchemy"'),
            "data.packages[2]",
            "sqlalchemy is already required by data.packages[1]",
            "",
        ),
        (DATA, DATA.replace('"sqlalchemy>=2.0,<3"', '"sqlalchemy>=2.0<3"'), "data.packages[1]", "is not a requirement", "openpyxl>=3.1,<4"),
        (VISUALISATION, VISUALISATION.replace('"bokeh>=3.5,<4"', "3"), "visualisation.packages[0]", "expected a requirement string", "matplotlib>=3.9,<4"),
        (DATA, "[data]\npackages = []\n", "data.packages", "", ""),
        (VISUALISATION, '[visualisation]\npackages = "bokeh"\n', "visualisation.packages", "", ""),
        (VISUALISATION, '[visualisation]\nplots = ["bokeh"]\n', "visualisation.plots", "unknown key", ""),
        (DATA, '[data]\nextras = 1\npackages = ["xlrd"]\n', "data.extras", "unknown key", ""),
    ],
)
def test_bad_data_or_visualisation_table(sample_text, old, new, key_path, problem, fix):
    expect_error(edit(sample_text, old, new), key_path, problem=problem, fix=fix)


def test_a_misspelt_layer_table_is_an_unknown_key_that_lists_the_tables(sample_text):
    err = expect_error(edit(sample_text, "[visualisation]\n", "[visualization]\n"), "visualization", problem="unknown key")
    assert "visualisation" in err.fix.split(", ") and "data" in err.fix.split(", "), err.fix


def test_non_table_data_or_visualisation(sample_text):
    for name, table in (("data", DATA), ("visualisation", VISUALISATION)):
        expect_error(top_level(edit(sample_text, table, ""), f"{name} = 3"), name)


# ---------------------------------------------------------------- [jupyterhub]

HUB_JUPYTER = '[jupyter]\npackages = ["jupyterlab>=4.4,<5", "notebook>=7.4,<8", "ipykernel>=6.29,<8", "jupyterhub==6.1.1"]\n'
SAMPLE_JUPYTER = '[jupyter]\npackages = ["jupyterlab>=4.4,<5", "notebook>=7.4,<8", "ipykernel>=6.29,<8"]\n'


@pytest.fixture(scope="module")
def hub_text(sample_text) -> str:
    """The sample with jupyterhub pinned in [jupyter] and declared in [jupyterhub], as the real file has it."""
    return edit(sample_text, SAMPLE_JUPYTER, HUB_JUPYTER + '\n[jupyterhub]\nversion = "6.1.1"\n')


def test_jupyterhub_table_loads(hub_text):
    hub = config.parse(hub_text, FILE).jupyterhub
    assert hub is not None and str(hub.version) == "6.1.1" and hub.hub_major == 6


def test_jupyterhub_table_is_optional(sample_config):
    assert sample_config.jupyterhub is None


@pytest.mark.parametrize(
    "old, new, key_path, problem",
    [
        ('version = "6.1.1"', 'version = "6.2.0"', "jupyter.packages[3]", "does not pin jupyterhub.version 6.2.0"),
        ('version = "6.1.1"', 'version = "6.1"', "jupyterhub.version", "is not a full release version"),
        ('version = "6.1.1"', "version = 6", "jupyterhub.version", "expected a version string"),
        ('version = "6.1.1"', 'release = "6.1.1"', "jupyterhub.release", "unknown key"),
        ('"jupyterhub==6.1.1"', '"jupyterhub>=6"', "jupyter.packages[3]", "does not pin jupyterhub.version 6.1.1"),
        ('"jupyterhub==6.1.1"', '"jupyterhub[postgres]==6.1.1"', "jupyter.packages[3]", "does not pin"),
        (', "jupyterhub==6.1.1"', "", "jupyter.packages", "has no jupyterhub"),
    ],
)
def test_bad_jupyterhub_table(hub_text, old, new, key_path, problem):
    expect_error(edit(hub_text, old, new), key_path, problem=problem)


def test_jupyterhub_must_be_a_table(hub_text):
    text = top_level(edit(hub_text, '\n[jupyterhub]\nversion = "6.1.1"\n', ""), 'jupyterhub = "6.1.1"')
    expect_error(text, "jupyterhub", problem="expected a table")
