"""Fail closed on bad input: every class of hard bad input is one clear error through the real CLI.

Each case is the test data's versions.toml (tests/unit/data) with one mistake, written to a file and given to `python -m kerastack
--config FILE matrix`: exit 2, one message naming the file, the key and the fix, nothing on stdout, no
traceback, in under a second. Property tests then throw random bytes, TOML and versions at the same door.
"""

from __future__ import annotations

import string
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kerastack import cli, config, matrix, options, tags
from kerastack.errors import ConfigError
from kerastack.tags import BuildStamp
from kerastack.versions import Version
from tests.unit.conftest import ROOT, SAMPLE

SAMPLE_TEXT = SAMPLE.read_text(encoding="utf-8")
BASE_311 = "docker.io/library/python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b"


def edit(old: str, new: str, text: str = SAMPLE_TEXT) -> str:
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in versions.toml"
    return text.replace(old, new)


def run_cli(capsys, *argv: str) -> tuple[int, str, str, float]:
    started = time.monotonic()
    code = cli.main(list(argv))
    seconds = time.monotonic() - started
    captured = capsys.readouterr()
    return code, captured.out, captured.err, seconds


def assert_refused(capsys, path: Path, key: str, problem: str) -> str:
    code, out, err, seconds = run_cli(capsys, "--project-dir", str(ROOT), "--config", str(path), "matrix", "--json")
    flat = " ".join(err.split())  # rich wraps nothing (soft_wrap), but keep the check independent of it
    assert code == 2, f"exit {code}: {err}"
    assert out == "", "nothing may reach stdout"
    assert "Traceback" not in err
    assert str(path) in flat and (key in flat), err
    assert problem in flat, err
    assert "fix:" in err, err
    assert seconds < 1.0, f"took {seconds:.2f} s"
    return err


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "versions.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


# ---------------------------------------------------------------- file level


def test_a_versions_file_that_is_not_utf8_is_refused(tmp_path, capsys):
    assert_refused(capsys, write(tmp_path, SAMPLE_TEXT.encode() + b"\n# caf\xe9\n"), "", "is not UTF-8")


def test_a_directory_as_config_is_refused(tmp_path, capsys):
    assert_refused(capsys, tmp_path, "", "is a directory")


def test_toml_nested_too_deeply_for_the_parser_is_refused(tmp_path, capsys):
    assert_refused(capsys, write(tmp_path, "x = " + "[" * 100_000 + "]" * 100_000 + "\n" + SAMPLE_TEXT), "", "nests tables or arrays too deeply")


def test_an_integer_of_thousands_of_digits_is_refused(tmp_path, capsys):
    assert_refused(capsys, write(tmp_path, edit("schema = 1", "schema = " + "1" * 5000)), "", "cannot hold")


# ---------------------------------------------------------------- versions


@pytest.mark.parametrize(
    "old, new, key",
    [
        ('keras = "3.12.4"', 'keras = "3.1\u0662.4"', 'tensorflow."2.21.0".keras'),  # Arabic-Indic digits
        ('keras = "3.12.4"', 'keras = "3.1\uff12.4"', 'tensorflow."2.21.0".keras'),  # full-width digits
        ('keras = "3.12.4"', f'keras = "3.{"1" * 60}.4"', 'tensorflow."2.21.0".keras'),
        ('cudnn = "9.3"\nmin', 'cudnn = "9.33333333333333333333333"\nmin', 'cuda."12.5".cudnn'),
    ],
    ids=["arabic-digits", "fullwidth-digits", "60-digit-component", "over-24-characters"],
)
def test_versions_with_non_ascii_digits_or_absurd_length_are_refused(tmp_path, capsys, old, new, key):
    assert_refused(capsys, write(tmp_path, edit(old, new)), key, "malformed version")


@pytest.mark.parametrize("version", ["3.1\u0663", "3.1\uff13", "3.13" + "0" * 40], ids=["arabic-digit", "fullwidth-digit", "long"])
def test_a_python_version_that_would_reach_the_tags_is_refused(tmp_path, capsys, version):
    """Every "3.13" (axis, table, ranges) replaced: the old code took it up to the tag code's assertion."""
    assert_refused(capsys, write(tmp_path, SAMPLE_TEXT.replace('"3.13"', f'"{version}"')), 'tensorflow."2.20.0".python.max', "malformed version")


def test_non_ascii_or_long_version_never_reaches_the_tag_code():
    for text in ("2.2\u0661.0", "2." + "1" * 30 + ".0"):
        with pytest.raises(ValueError, match="ASCII digits"):
            Version(text)


# ---------------------------------------------------------------- Docker references


@pytest.mark.parametrize(
    "old, new, key, problem",
    [
        ('host = "ghcr.io"', 'host = "ghcr..io"', "registry.host", "empty DNS label"),
        ('host = "ghcr.io"', 'host = ".ghcr.io"', "registry.host", "empty DNS label"),
        ('host = "ghcr.io"', 'host = "ghcr.io:0"', "registry.host", "not a number from 1 to 65535"),
        ('host = "ghcr.io"', 'host = "ghcr.io:70000"', "registry.host", "not a number from 1 to 65535"),
        ('host = "ghcr.io"', 'host = "https://ghcr.io"', "registry.host", "is not a registry host"),
        ('repository = "kerastack/keras-jupyter"', f'repository = "kerastack/{"k" * 250}"', "registry.repository", "Docker allows at most 255"),
        (BASE_311, "https://" + BASE_311, 'python."3.11".base_image', "is a URL"),
        (BASE_311, BASE_311.split("@")[0], 'python."3.11".base_image', "is not pinned by digest"),
        (BASE_311, BASE_311.replace("python:", "Python:"), 'python."3.11".base_image', "lowercase"),
        (BASE_311, BASE_311[:-1], 'python."3.11".base_image', "digest"),
    ],
    ids=["empty-label", "leading-dot", "port-0", "port-70000", "scheme", "name-over-255", "base-url", "base-no-digest", "base-uppercase", "short-digest"],
)
def test_bad_docker_references_are_refused(tmp_path, capsys, old, new, key, problem):
    assert_refused(capsys, write(tmp_path, edit(old, new)), key, problem)


def test_registry_overrides_follow_the_same_grammar(capsys):
    for bad in ("ghcr..io", "ghcr.io:65536", "http://ghcr.io"):
        code, out, err, _ = run_cli(capsys, "--project-dir", str(ROOT), "--config", str(SAMPLE), "--registry", bad, "tags")
        assert code == 2 and out == "" and "is not a registry host" in err and "Traceback" not in err, err


# ---------------------------------------------------------------- requirements


@pytest.mark.parametrize(
    "bad",
    [
        "jupyterlab>=",
        "jupyterlab>=4.4<5",
        "jupyterlab --index-url=https://evil.example/simple",
        "jupyterlab>=4; --trusted-host evil",
        "jupyterlab @ https://e.x/j.whl",
    ],
    ids=["operator-without-version", "specifiers-without-comma", "pip-option", "option-after-marker", "direct-url"],
)
def test_jupyter_requirements_that_are_not_pep508_are_refused(tmp_path, capsys, bad):
    text = edit('packages = ["jupyterlab>=4.4,<5",', f"packages = [{bad!r},".replace("'", '"'))
    assert_refused(capsys, write(tmp_path, text), "jupyter.packages[0]", "is not a requirement" if "@" not in bad else "from a URL")


def test_the_same_package_twice_is_refused(tmp_path, capsys):
    text = edit('"ipykernel>=6.29,<8"]', '"ipykernel>=6.29,<8", "JupyterLab<5"]')
    assert_refused(capsys, write(tmp_path, text), "jupyter.packages[3]", "already required by jupyter.packages[0]")


def test_requirement_validation_is_reusable_for_any_requirements_table():
    reader = config._Reader("versions.toml")
    assert reader.requirements(["numpy>=2,<3", "pandas"], "science.packages", "numpy>=2") == ("numpy>=2,<3", "pandas")
    with pytest.raises(ConfigError) as info:
        reader.requirements(["numpy>=2<3"], "science.packages", "numpy>=2")
    assert info.value.key_path == "science.packages[0]" and "numpy>=2" in info.value.fix


# ---------------------------------------------------------------- cross-field


def test_the_default_cell_excluded_from_the_matrix_is_refused(tmp_path, capsys):
    text = SAMPLE_TEXT + '\n[[matrix.exclude]]\ntensorflow = "2.21.0"\npython = "3.11"\nvariant = "cpu"\n'
    assert_refused(capsys, write(tmp_path, text), "defaults", "tf2.21.0-py3.11-cpu is not in the matrix")


def test_a_default_release_off_the_tensorflow_axis_is_refused(tmp_path, capsys):
    text = edit('tensorflow = ["2.20.0", "2.21.0"]', 'tensorflow = ["2.20.0"]')
    assert_refused(capsys, write(tmp_path, text), "defaults.tensorflow", "is not on the matrix axis matrix.tensorflow")


def test_a_cudnn_that_disagrees_with_its_pinned_cudnn_wheel_is_refused(tmp_path, capsys):
    text = edit('cudnn = "9.3"\nmin_driver', 'cudnn = "9.4"\nmin_driver')
    assert_refused(capsys, write(tmp_path, text), 'cuda."12.5".cudnn', "pinned nvidia-cudnn-cu12 wheel is 9.3.0.75")


def test_a_cudnn_major_other_than_tensorflows_build_is_refused(tmp_path, capsys):
    text = edit('cudnn = "9.10"', 'cudnn = "8.9"')
    text = edit('"nvidia-cudnn-cu12" = "9.10.2.21"', '"nvidia-cudnn-cu12" = "8.9.7.29"', text)
    assert_refused(capsys, write(tmp_path, text), 'cuda."12.9".cudnn', "cuDNN 9.x TensorFlow 2.21.0 was built with")


# ---------------------------------------------------------------- command line


def test_a_project_dir_that_does_not_exist_is_refused(tmp_path, capsys):
    code, out, err, _ = run_cli(capsys, "--project-dir", str(tmp_path / "nope"), "tags")
    assert code == 2 and out == "" and "Traceback" not in err
    assert "--project-dir" in err and "does not exist" in err


def test_without_git_on_path_the_revision_is_unknown(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no git
    code, out, err, _ = run_cli(capsys, "--project-dir", str(ROOT), "--config", str(SAMPLE), "matrix", "--json", "id=tf2.21.0-py3.11-cpu")
    assert code == 0, err
    assert "-unknown" in out and "Traceback" not in err


# ---------------------------------------------------------------- property tests

PROPERTY = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _config_or_clear_error(path: Path) -> None:
    """Load, expand the matrix and make every tag (where bad versions used to end in an AssertionError)."""
    try:
        cfg = config.load(path)
        cells = matrix.cells(cfg)
    except ConfigError as exc:
        assert exc.fix.strip() and str(path) in str(exc)
        return
    for cell in cells:
        tags.tags_for(cfg, cells, cell, BuildStamp("20261125", "abc1234"))


@PROPERTY
@given(st.binary(max_size=2000))
def test_random_bytes_give_a_config_or_a_clear_error(tmp_path_factory, data):
    _config_or_clear_error(write(tmp_path_factory.mktemp("bytes"), data))


_KEYS = st.sampled_from(["schema", "registry", "host", "repository", "defaults", "tensorflow", "python", "cuda", "jupyter", "packages", "matrix", "x"])
_SCALARS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False),
    st.booleans(),
    st.text(max_size=40),
    st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3}){0,4}", fullmatch=True),
)
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4), max_leaves=20)


def _toml(value, key_path: str = "") -> str:
    """A tiny TOML writer for random documents (inline tables only)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, int) else repr(float(value)).replace("inf", "inf")
    if isinstance(value, str):
        return '"' + value.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f'"{k}" = {_toml(v)}' for k, v in value.items()) + "}"


@PROPERTY
@given(st.dictionaries(_KEYS, _VALUES, max_size=8))
def test_random_toml_gives_a_config_or_a_clear_error(tmp_path_factory, document):
    text = "".join(f'"{k}" = {_toml(v)}\n' for k, v in document.items())
    _config_or_clear_error(write(tmp_path_factory.mktemp("toml"), text))


@PROPERTY
@given(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
    | st.from_regex(r"[0-9.]{1,40}", fullmatch=True)
    | st.from_regex("[1-9][0-9\u0660-\u0669\uff10-\uff19\u0966-\u096f]{0,3}(\\.[1-9][0-9\u0660-\u0669]{0,3}){0,3}", fullmatch=True)
    | st.from_regex(r"[1-9][0-9]{20,80}(\.[0-9]{1,3}){0,2}", fullmatch=True)
)
def test_random_versions_in_every_version_key_give_a_config_or_a_clear_error(tmp_path_factory, version):
    quoted = '"' + version.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'
    _config_or_clear_error(write(tmp_path_factory.mktemp("version"), SAMPLE_TEXT.replace('"3.13"', quoted)))  # reaches the tags
    for old in ('keras = "3.12.4"', 'cudnn = "9.3"\nmin', 'tensorflow = "2.21.0"\npython = "3.11"', '"nvidia-cublas-cu12" = "12.5.3.2"'):
        new = old.replace('"3.12.4"', quoted).replace('"9.3"', quoted).replace('"2.21.0"', quoted).replace('"12.5.3.2"', quoted)
        _config_or_clear_error(write(tmp_path_factory.mktemp("version"), edit(old, new)))


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=500), st.lists(st.text(alphabet=string.printable, max_size=12), max_size=3))
def test_the_cli_on_random_files_and_filters_exits_0_or_2_without_a_traceback(tmp_path_factory, capsys, data, words):
    path = write(tmp_path_factory.mktemp("cli"), data)
    code, out, err, _ = run_cli(capsys, "--project-dir", str(ROOT), "--config", str(path), "tags", *[w for w in words if not w.startswith("-")])
    assert code in (0, 2) and "Traceback" not in err


@pytest.mark.parametrize("key", ["--registry", "--repository"])
def test_environment_overrides_are_validated(monkeypatch, capsys, key):
    monkeypatch.setenv(options.REGISTRY_ENV if key == "--registry" else options.REPOSITORY_ENV, "Bad..Name")
    code, _, err, _ = run_cli(capsys, "--project-dir", str(ROOT), "--config", str(SAMPLE), "tags")
    assert code == 2 and "Traceback" not in err
