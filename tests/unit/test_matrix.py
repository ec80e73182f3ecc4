"""The build matrix of the real versions.toml, cell ids, filters and the default cells."""

from __future__ import annotations

import re

import pytest

from kerastack import config, matrix
from kerastack.errors import ConfigError
from kerastack.matrix import Cell, Filter
from kerastack.versions import Version

EXPECTED = [
    "tf2.20.0-py3.11-cpu",
    "tf2.20.0-py3.11-gpu-cuda12.5",  # the [[matrix.include]]: a GPU pair differing only in TensorFlow
    "tf2.20.0-py3.13-cpu",
    "tf2.21.0-py3.11-cpu",
    "tf2.21.0-py3.11-gpu-cuda12.5",
    "tf2.21.0-py3.11-gpu-cuda12.9",
    "tf2.21.0-py3.13-cpu",
    "tf2.21.0-py3.13-gpu-cuda12.5",
    "tf2.21.0-py3.13-gpu-cuda12.9",
]


def ids(cells) -> list[str]:
    return [cell.id for cell in cells]


def select(words: list[str], cells) -> list[str]:
    return ids(Filter.parse(words).select(cells))


# ---------------------------------------------------------------- the real matrix


def test_real_matrix_has_exactly_the_expected_cells(sample_cells):
    assert ids(sample_cells) == EXPECTED


def test_real_matrix_cells_field_by_field(sample_cells):
    as_tuples = [(str(c.tensorflow), str(c.python), c.variant, str(c.cuda) if c.cuda else None) for c in sample_cells]
    assert as_tuples == [
        ("2.20.0", "3.11", "cpu", None),
        ("2.20.0", "3.11", "gpu", "12.5"),
        ("2.20.0", "3.13", "cpu", None),
        ("2.21.0", "3.11", "cpu", None),
        ("2.21.0", "3.11", "gpu", "12.5"),
        ("2.21.0", "3.11", "gpu", "12.9"),
        ("2.21.0", "3.13", "cpu", None),
        ("2.21.0", "3.13", "gpu", "12.5"),
        ("2.21.0", "3.13", "gpu", "12.9"),
    ]
    assert [c.is_gpu for c in sample_cells] == [False, True, False, False, True, True, False, True, True]


def test_the_excluded_release_has_only_the_included_gpu_cell(sample_cells):
    assert [c.id for c in sample_cells if c.tensorflow == Version("2.20.0") and c.variant == "gpu"] == ["tf2.20.0-py3.11-gpu-cuda12.5"]


def test_ids_are_unique_and_readable(sample_cells):
    assert len(set(ids(sample_cells))) == len(sample_cells)
    pattern = re.compile(r"^tf\d+\.\d+\.\d+-py\d+\.\d+-(cpu|gpu-cuda\d+\.\d+)$")
    assert all(pattern.match(i) for i in ids(sample_cells)), ids(sample_cells)
    gpu = Cell(Version("2.21.0"), Version("3.11"), "gpu", Version("12.5"))
    assert gpu.id == "tf2.21.0-py3.11-gpu-cuda12.5"
    assert Cell(Version("2.20.0"), Version("3.13"), "cpu").id == "tf2.20.0-py3.13-cpu"


def test_cells_are_sorted_and_stable(sample_config, sample_cells):
    assert sample_cells == sorted(sample_cells)
    assert matrix.cells(sample_config) == sample_cells


def test_resolve_looks_up_the_facts(sample_config, sample_cells_by_id):
    r = matrix.resolve(sample_config, sample_cells_by_id["tf2.21.0-py3.13-gpu-cuda12.9"])
    assert r.id == "tf2.21.0-py3.13-gpu-cuda12.9"
    assert (str(r.release.keras), r.python.debian_suite, r.variant.tensorflow_package, r.cuda.runtime_version) == (
        "3.12.4",
        "trixie",
        "tensorflow[and-cuda]",
        "12.9.79",
    )
    cpu = matrix.resolve(sample_config, sample_cells_by_id["tf2.20.0-py3.11-cpu"])
    assert cpu.cuda is None and str(cpu.release.keras) == "3.11.3" and cpu.variant.tensorflow_package == "tensorflow-cpu"


# ---------------------------------------------------------------- Version.startswith


@pytest.mark.parametrize(
    ("version", "prefix", "expected"),
    [
        ("2.21.0", "2.21", True),
        ("2.21.0", "2", True),
        ("2.21.0", "2.21.0", True),
        ("2.21.0", "2.2", False),
        ("2.20.0", "2.2", False),
        ("2.210.0", "2.21", False),
        ("12.5", "12.5.0", False),  # a longer prefix never matches
        ("3.11", "3.1", False),
    ],
)
def test_version_startswith_is_per_component(version, prefix, expected):
    assert Version(version).startswith(Version(prefix)) is expected


def test_version_order_is_numeric():
    assert sorted(Version(v) for v in ["3.9", "3.13", "3.10", "3.11"]) == [Version("3.9"), Version("3.10"), Version("3.11"), Version("3.13")]
    assert Version("12.9") < Version("13")
    assert Version("2.21") != Version("2.21.0")
    assert Version("2.21.0").major_minor == "2.21" and Version("13").major_minor == "13.0"


# ---------------------------------------------------------------- filters


def test_filter_tf_major_minor_selects_the_release(sample_cells):
    assert select(["tf=2.21"], sample_cells) == [i for i in EXPECTED if i.startswith("tf2.21.0-")]


def test_filter_tf_2_2_selects_neither_2_20_nor_2_21(sample_cells):
    f = Filter.parse(["tf=2.2"])
    assert not any(f.accepts(c) for c in sample_cells)
    with pytest.raises(ConfigError):
        f.select(sample_cells)


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["tf=2"], EXPECTED),
        (["tf=2.20.0"], ["tf2.20.0-py3.11-cpu", "tf2.20.0-py3.11-gpu-cuda12.5", "tf2.20.0-py3.13-cpu"]),
        (["tf=2.20,2.21"], EXPECTED),
        (["tf=2.20", "tf=2.21"], EXPECTED),  # a repeated key adds values
        (["python=3.13"], ["tf2.20.0-py3.13-cpu", "tf2.21.0-py3.13-cpu", "tf2.21.0-py3.13-gpu-cuda12.5", "tf2.21.0-py3.13-gpu-cuda12.9"]),
        (["python=3.11,3.13", "variant=gpu"], [i for i in EXPECTED if "-gpu-" in i]),
        (["variant=cpu", "python=3.13"], ["tf2.20.0-py3.13-cpu", "tf2.21.0-py3.13-cpu"]),
        (["cuda=12.5"], ["tf2.20.0-py3.11-gpu-cuda12.5", "tf2.21.0-py3.11-gpu-cuda12.5", "tf2.21.0-py3.13-gpu-cuda12.5"]),
        (["cuda=12"], [i for i in EXPECTED if "-gpu-" in i]),
        (["cuda=12.9", "python=3.11"], ["tf2.21.0-py3.11-gpu-cuda12.9"]),
        (["id=tf2.20.0-py3.13-cpu"], ["tf2.20.0-py3.13-cpu"]),
        (["id=tf2.21.0-py3.11-gpu-cuda12.5,tf2.20.0-py3.11-cpu"], ["tf2.20.0-py3.11-cpu", "tf2.21.0-py3.11-gpu-cuda12.5"]),
        (["tf=2.21,"], [i for i in EXPECTED if i.startswith("tf2.21.0-")]),  # a trailing comma is ignored
        ([], EXPECTED),
    ],
)
def test_filter_selects(sample_cells, words, expected):
    assert select(words, sample_cells) == expected


def test_cuda_filter_excludes_cpu_cells(sample_cells):
    f = Filter.parse(["cuda=12.5"])
    assert not any(f.accepts(c) for c in sample_cells if c.variant == "cpu")


def test_id_filter_is_exact(sample_cells):
    with pytest.raises(ConfigError):
        Filter.parse(["id=tf2.21.0-py3.11"]).select(sample_cells)


def test_filter_str():
    assert str(Filter.parse(["variant=gpu", "tf=2.21", "python=3.11,3.13"])) == "python=3.11,3.13 tf=2.21 variant=gpu"
    assert str(Filter.parse([])) == "(all cells)"


@pytest.mark.parametrize(
    ("word", "problem"),
    [
        ("gpu=1", "unknown filter key 'gpu'"),
        ("TF=2.21", "unknown filter key 'TF'"),
        ("tf", "not a KEY=VALUE term"),
        ("tf2.21", "not a KEY=VALUE term"),
        ("tf=", "not a KEY=VALUE term"),
        ("tf=2.x", "'2.x' is a malformed version"),
        ("python=three", "'three' is a malformed version"),
        ("cuda=12..5", "'12..5' is a malformed version"),
        ("tf=2.21,latest", "'latest' is a malformed version"),
    ],
)
def test_bad_filters(word, problem):
    with pytest.raises(ConfigError) as info:
        Filter.parse(["variant=cpu", word])
    err = info.value
    assert (err.file, err.key_path) == ("filter", word)
    assert problem in err.problem and err.fix.strip()


def test_unknown_key_fix_lists_the_keys():
    with pytest.raises(ConfigError) as info:
        Filter.parse(["gpu=1"])
    assert info.value.fix == "use one of: tf, python, variant, cuda, platform, id"


def test_filter_that_selects_nothing_lists_the_cells(sample_cells):
    with pytest.raises(ConfigError) as info:
        Filter.parse(["tf=9", "variant=cpu"]).select(sample_cells, "versions.toml")
    err = info.value
    assert err.file == "versions.toml" and err.key_path == "filter tf=9 variant=cpu"
    assert "selects no cell" in err.problem
    assert err.fix == "loosen it; the cells are: " + ", ".join(EXPECTED)


def test_unknown_variant_value_selects_nothing(sample_cells):
    with pytest.raises(ConfigError):
        Filter.parse(["variant=tpu"]).select(sample_cells)


# ---------------------------------------------------------------- default cells


def test_default_cells(sample_config, sample_cells):
    assert matrix.default_cell(sample_config, "cpu", sample_cells).id == "tf2.21.0-py3.11-cpu"
    assert matrix.default_cell(sample_config, "gpu", sample_cells).id == "tf2.21.0-py3.11-gpu-cuda12.5"


def test_default_cell_follows_defaults(sample_text):
    text = sample_text.replace('python = "3.11"\ncuda = "12.5"', 'python = "3.13"\ncuda = "12.9"', 1)
    assert text != sample_text
    c = config.parse(text, "versions.toml")
    cells = matrix.cells(c)
    assert matrix.default_cell(c, "cpu", cells).id == "tf2.21.0-py3.13-cpu"
    assert matrix.default_cell(c, "gpu", cells).id == "tf2.21.0-py3.13-gpu-cuda12.9"


def test_default_cell_not_in_matrix(sample_text):
    text = sample_text.replace('[defaults]\ntensorflow = "2.21.0"\npython = "3.11"', '[defaults]\ntensorflow = "2.20.0"\npython = "3.13"', 1)
    assert text != sample_text
    c = config.parse(text, "versions.toml")
    with pytest.raises(ConfigError) as info:
        matrix.cells(c)  # 2.20.0 GPU is excluded: loading refuses it, not only `make run-gpu` later
    assert info.value.key_path == "defaults" and "tf2.20.0-py3.13-gpu-cuda12.5" in info.value.problem and info.value.fix.strip()


def test_default_cell_of_a_selection_without_it(sample_config, sample_cells):
    only_313 = Filter.parse(["python=3.13"]).select(sample_cells)
    with pytest.raises(ConfigError):
        matrix.default_cell(sample_config, "cpu", only_313)
