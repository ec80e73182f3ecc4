"""The platform axis (issue 17, the pure part): cells, ids, filters, the JSON matrix, validation, lock
inputs, tags and publish on tests/unit/data/platforms/versions.toml, a matrix with linux/arm64 enabled
for the CPU variant. No Docker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kerastack import config, contract, layout, lock_plan, matrix, plan, tags
from kerastack.build_report import BuildReport, CellReport
from kerastack.errors import ConfigError
from kerastack.versions import Version
from tests.unit.conftest import DATA

PLATFORMS_FILE = DATA / "platforms" / "versions.toml"
TEXT = PLATFORMS_FILE.read_text(encoding="utf-8")
IDS = [
    "tf2.20.0-py3.11-cpu",
    "tf2.20.0-py3.11-cpu-arm64",
    "tf2.21.0-py3.11-cpu",
    "tf2.21.0-py3.11-cpu-arm64",
    "tf2.21.0-py3.11-gpu-cuda12.5",
]
CPU, CPU_ARM = "tf2.21.0-py3.11-cpu", "tf2.21.0-py3.11-cpu-arm64"
STAMP = tags.BuildStamp("20261202", "abc1234")


@pytest.fixture(scope="module")
def cfg():
    return config.parse(TEXT, "versions.toml")


@pytest.fixture(scope="module")
def cells(cfg):
    return matrix.cells(cfg)


@pytest.fixture(scope="module")
def by_id(cells):
    return {c.id: c for c in cells}


def edit(old: str, new: str, text: str = TEXT) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def expect_error(text: str, key_path: str, problem: str, fix: str = "") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        matrix.cells(config.parse(text, "versions.toml"))
    err = info.value
    assert err.key_path == key_path, f"key path {err.key_path!r} != {key_path!r} ({err})"
    assert problem in err.problem, err.problem
    assert fix in err.fix, err.fix
    assert str(err).startswith(f"versions.toml: {key_path}: ") and "\n  fix: " in str(err)
    return err


# ---------------------------------------------------------------- cells and ids


def test_arm64_cells_join_the_matrix_with_the_platform_in_their_id_only(cells):
    assert [c.id for c in cells] == IDS
    assert [c.platform for c in cells] == ["linux/amd64", "linux/arm64", "linux/amd64", "linux/arm64", "linux/amd64"]
    assert [c.is_default_platform for c in cells] == [True, False, True, False, True]


def test_the_default_platform_keeps_its_ids_and_the_stem_never_names_a_platform(by_id):
    amd, arm = by_id[CPU], by_id[CPU_ARM]
    assert amd.stem == arm.stem == "2.21.0-py3.11-cpu"
    assert matrix.Cell(Version("2.21.0"), Version("3.11"), "cpu").id == CPU  # the default platform needs no name
    assert matrix.Cell(Version("2.21.0"), Version("3.11"), "cpu", None, "linux/arm64").id == CPU_ARM
    assert contract.platform_suffix("linux/amd64") == "" and contract.platform_suffix("linux/arm64") == "-arm64"


def test_the_platform_facts_are_read(cfg):
    release = cfg.tensorflow[Version("2.21.0")]
    arm = release.facts("linux/arm64")
    assert (arm.packages, arm.cuda_build, arm.cuda_wheels) == (("tensorflow",), False, True)
    amd = release.facts("linux/amd64")
    assert (amd.packages, amd.cuda_build, amd.cuda_wheels) == (("tensorflow", "tensorflow-cpu"), True, True)
    assert release.facts("linux/s390x") is None
    cpu = cfg.variants["cpu"]
    assert cpu.platforms == ("linux/amd64", "linux/arm64")
    assert (cpu.tensorflow_package_for("linux/amd64"), cpu.tensorflow_package_for("linux/arm64")) == ("tensorflow-cpu", "tensorflow")


def test_default_cells_and_previous_releases_stay_on_their_platform(cfg, cells, by_id):
    assert [c.id for c in matrix.default_cells(cfg, cells)] == [CPU, "tf2.21.0-py3.11-gpu-cuda12.5"]
    assert matrix.previous_release(by_id[CPU_ARM], cells).id == "tf2.20.0-py3.11-cpu-arm64"
    assert matrix.previous_release(by_id[CPU], cells).id == "tf2.20.0-py3.11-cpu"


def test_lock_folders_are_per_cell_id(tmp_path, by_id):
    assert lock_plan.lock_dir(tmp_path, by_id[CPU_ARM]) == tmp_path / "locks" / CPU_ARM
    assert layout.lock_build_arg(CPU_ARM) == f"locks/{CPU_ARM}"


# ---------------------------------------------------------------- filters


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["platform=linux/arm64"], ["tf2.20.0-py3.11-cpu-arm64", CPU_ARM]),
        (["platform=linux/amd64", "variant=cpu"], ["tf2.20.0-py3.11-cpu", CPU]),
        (["platform=linux/amd64,linux/arm64", "tf=2.21", "variant=cpu"], [CPU, CPU_ARM]),
        ([f"id={CPU_ARM}"], [CPU_ARM]),
        (["tf=2.21", "variant=cpu"], [CPU, CPU_ARM]),
    ],
)
def test_filters_select_by_platform(cells, words, expected):
    assert [c.id for c in matrix.Filter.parse(words).select(cells)] == expected


@pytest.mark.parametrize(
    ("word", "problem", "fix"),
    [
        ("platform=arm64", "'arm64' is an architecture, not a platform", "platform=linux/arm64"),
        ("platform=amd64", "not a platform", "platform=linux/amd64"),
        ("platform=linux/s390x", "unknown platform 'linux/s390x'", "linux/amd64, linux/arm64"),
        ("platform=aarch64", "unknown platform", "linux/amd64, linux/arm64"),
    ],
)
def test_a_filter_names_a_platform_in_full(word, problem, fix):
    with pytest.raises(ConfigError) as info:
        matrix.Filter.parse([word])
    assert info.value.key_path == word and problem in info.value.problem and fix in info.value.fix


def test_a_platform_filter_that_selects_nothing_is_an_error(sample_cells):
    with pytest.raises(ConfigError, match="selects no cell"):
        matrix.Filter.parse(["platform=linux/arm64"]).select(sample_cells)


# ---------------------------------------------------------------- the JSON matrix, tags, plans


def test_the_json_matrix_carries_the_platform(cfg, cells):
    doc = {"include": [plan.plan_cell(cfg, cells, c, STAMP, cfg.python[c.python].base_image, "2026-12-02T00:00:00Z").as_json() for c in cells]}
    entries = {e["id"]: e for e in json.loads(json.dumps(doc))["include"]}
    assert [e["platform"] for e in entries.values()] == [c.platform for c in cells]
    arm = entries[CPU_ARM]
    assert arm["filter"] == f"id={CPU_ARM}" and arm["build_args"]["LOCK_DIR"] == f"locks/{CPU_ARM}"
    assert arm["tags"] == entries[CPU]["tags"]  # one tag serves both platforms


def test_tags_are_equal_across_platforms(cfg, cells, by_id):
    amd, arm = tags.tags_for(cfg, cells, by_id[CPU], STAMP), tags.tags_for(cfg, cells, by_id[CPU_ARM], STAMP)
    assert amd.all() == arm.all() == ("2.21.0-py3.11-cpu-20261202-abc1234", "2.21.0-py3.11-cpu", "2.21-cpu", "latest")
    assert (amd.cell_id, arm.cell_id) == (CPU, CPU_ARM)
    old = tags.tags_for(cfg, cells, by_id["tf2.20.0-py3.11-cpu-arm64"], STAMP)
    assert old.moving == ("2.20-cpu",) and "arm64" not in " ".join(old.all())
    # No tag names a platform, and every moving tag is held by both platforms of its cell.
    owners = tags.moving_tags(cfg, cells)
    assert owners[CPU] == owners[CPU_ARM] == ("2.21-cpu", "latest")
    assert all("arm64" not in t and "amd64" not in t for c in cells for t in tags.tags_for(cfg, cells, c, STAMP).all())


def test_the_moving_tags_of_the_default_matrix_are_unchanged(sample_config, sample_cells):
    """Without a second platform every moving tag still has exactly one cell."""
    owners = tags.moving_tags(sample_config, sample_cells)
    held = [t for ts in owners.values() for t in ts]
    assert len(held) == len(set(held))


# ---------------------------------------------------------------- lock inputs


def test_lock_inputs_resolve_arm64_for_aarch64_with_the_package_that_has_its_wheels(cfg, by_id):
    arm = lock_plan.inputs_for(cfg, by_id[CPU_ARM])
    amd = lock_plan.inputs_for(cfg, by_id[CPU])
    assert (arm.cell_id, arm.platform, arm.python) == (CPU_ARM, "aarch64-manylinux_2_28", "3.11")
    assert (amd.cell_id, amd.platform) == (CPU, "x86_64-manylinux_2_28")
    assert arm.requirements[0] == "tensorflow==2.21.0" and amd.requirements[0] == "tensorflow-cpu==2.21.0"
    assert arm.group_roots == ("tensorflow", "keras") and amd.group_roots == ("tensorflow-cpu", "keras")
    assert arm.requirements[1:] == amd.requirements[1:] and arm.layer_roots == amd.layer_roots
    assert arm.fingerprint() != amd.fingerprint()
    # The group files name no platform (uv lists every wheel's hash), so equal groups are equal files across platforms.
    assert lock_plan.render_group(arm, "science", []) == lock_plan.render_group(amd, "science", [])
    assert "manylinux" not in lock_plan.render_group(arm, "science", [])


def test_every_platform_has_a_uv_target():
    assert set(lock_plan.UV_TARGETS) == set(contract.PLATFORMS)


# ---------------------------------------------------------------- the build report (publish: tests/unit/test_publish_plan_multiplatform.py)


def _built(cell_id: str) -> CellReport:
    suffix = "-arm64" if cell_id.endswith("-arm64") else ""
    tag = cell_id.removeprefix("tf").removesuffix("-arm64")
    refs = [f"ghcr.io/kerastack/keras-jupyter:{tag}-20261202-abc1234{suffix}", f"ghcr.io/kerastack/keras-jupyter:{tag}{suffix}"]
    return CellReport(cell=cell_id, status="built", platform="linux/arm64" if suffix else "linux/amd64", tags=refs, image_id=f"sha256:{cell_id}",
                      base_source="pulled", base_image="docker.io/library/python:3.11-slim-bookworm@sha256:" + "a" * 64)  # fmt: skip


def test_the_build_report_records_and_reads_back_the_platform(tmp_path):
    from kerastack import build_report

    report = BuildReport("abc1234", "now", [CPU_ARM], [_built(CPU_ARM), CellReport.failed(CPU, "x")])
    build_report.write_build_report(report, tmp_path)
    again = build_report.load_build_report(tmp_path)
    assert [c.platform for c in again.cells] == ["linux/arm64", "linux/amd64"]
    assert f"| {CPU_ARM} | linux/arm64 | built |" in build_report.to_markdown(again)
    data = json.loads((tmp_path / "build-report.json").read_text())
    del data["cells"][0]["platform"]  # a report written before cells had a platform: the default
    assert BuildReport.from_data(data).cells[0].platform == "linux/amd64"
    data["cells"][0]["platform"] = 64
    with pytest.raises(Exception, match="platform is not a string"):
        BuildReport.from_data(data)


# ---------------------------------------------------------------- validation


def test_a_platform_a_release_has_no_facts_for_is_refused():
    text = TEXT.replace('[tensorflow."2.20.0".platforms."linux/arm64"]\npackages = ["tensorflow"]\ncuda_build = false\ncuda_wheels = true\n', "")
    problem = "TensorFlow 2.20.0 records no facts for linux/arm64, only for linux/amd64 (cell tf2.20.0-py3.11-cpu-arm64)"
    err = expect_error(text, "variants.cpu.platforms[1]", problem)
    assert '[tensorflow."2.20.0".platforms."linux/arm64"]' in err.fix and 'platform = "linux/arm64"' in err.fix
    # ... and the exclude it suggests is accepted.
    fixed = text + '\n[[matrix.exclude]]\ntensorflow = "2.20.0"\nplatform = "linux/arm64"\n'
    assert "tf2.20.0-py3.11-cpu-arm64" not in [c.id for c in matrix.cells(config.parse(fixed))]


def test_a_package_without_wheels_for_the_platform_is_refused():
    text = edit('tensorflow_package_on = { "linux/arm64" = "tensorflow" }   # tensorflow-cpu has no aarch64 wheels\n', "")
    err = expect_error(text, "variants.cpu.tensorflow_package", "TensorFlow 2.20.0 has no tensorflow-cpu wheels for linux/arm64, only tensorflow")
    assert 'tensorflow."2.20.0".platforms."linux/arm64".packages' in err.problem
    assert 'add tensorflow_package_on = { "linux/arm64" = "NAME" } to [variants.cpu]' in err.fix
    wrong = edit('{ "linux/arm64" = "tensorflow" }', '{ "linux/arm64" = "tensorflow-aarch64" }')
    expect_error(wrong, CPU_ON, "no tensorflow-aarch64 wheels for linux/arm64", f'set {CPU_ON} = "NAME"')


def test_a_release_without_any_wheels_for_the_platform_is_refused():
    text = edit('[tensorflow."2.21.0".platforms."linux/arm64"]\npackages = ["tensorflow"]', '[tensorflow."2.21.0".platforms."linux/arm64"]\npackages = []')
    problem = 'TensorFlow 2.21.0 publishes no wheels for linux/arm64 (tensorflow."2.21.0".platforms."linux/arm64".packages = [])'
    expect_error(text, "variants.cpu.platforms[1]", problem, "remove linux/arm64 from variants.cpu.platforms")


def test_a_gpu_cell_on_a_platform_without_a_cuda_build_is_refused():
    gpu = 'tensorflow_package = "tensorflow[and-cuda]"\nplatforms = ["linux/amd64"]'
    text = edit(gpu, gpu.replace('["linux/amd64"]', '["linux/amd64", "linux/arm64"]'))
    err = expect_error(text, "variants.gpu.platforms[1]", "a GPU cell on linux/arm64, but for TensorFlow 2.21.0 its tensorflow wheel is not built with CUDA")
    assert 'tensorflow."2.21.0".platforms."linux/arm64".cuda_build = false' in err.problem and "tf2.21.0-py3.11-gpu-cuda12.5-arm64" in err.problem
    assert "remove linux/arm64 from variants.gpu.platforms" in err.fix
    # With a CUDA build but no NVIDIA wheels for the platform, the other fact says no.
    no_wheels = edit(
        '[tensorflow."2.21.0".platforms."linux/arm64"]\npackages = ["tensorflow"]\ncuda_build = false\ncuda_wheels = true',
        '[tensorflow."2.21.0".platforms."linux/arm64"]\npackages = ["tensorflow"]\ncuda_build = true\ncuda_wheels = false',
        text,
    )
    problem = 'NVIDIA publishes no CUDA wheels for it (tensorflow."2.21.0".platforms."linux/arm64".cuda_wheels = false)'
    expect_error(no_wheels, "variants.gpu.platforms[1]", problem)


def test_an_include_on_a_platform_its_variant_is_not_built_for_is_refused():
    text = TEXT + '\n[[matrix.include]]\ntensorflow = "2.20.0"\npython = "3.11"\nvariant = "gpu"\ncuda = "12.5"\nplatform = "linux/arm64"\n'
    problem = "a gpu cell on linux/arm64, which variants.gpu.platforms (linux/amd64) does not list"
    expect_error(text, "matrix.include[0].platform", problem, "add linux/arm64 to")
    # Without a platform an include names the default platform's cell, as before.
    plain = TEXT + '\n[[matrix.include]]\ntensorflow = "2.20.0"\npython = "3.11"\nvariant = "gpu"\ncuda = "12.5"\n'
    assert "tf2.20.0-py3.11-gpu-cuda12.5" in [c.id for c in matrix.cells(config.parse(plain))]


ARM_2_20 = 'platforms."linux/arm64"]\npackages = ["tensorflow"]\ncuda_build = false\ncuda_wheels = true\n\n[tensorflow."2.21.0"]'
FACTS_2_20 = 'tensorflow."2.20.0".platforms."linux/arm64"'
CPU_PLATFORMS = 'platforms = ["linux/amd64", "linux/arm64"]'
CPU_ON = 'variants.cpu.tensorflow_package_on."linux/arm64"'


@pytest.mark.parametrize(
    ("old", "new", "key_path", "problem"),
    [
        (CPU_PLATFORMS, 'platforms = ["linux/amd64", "arm64"]', "variants.cpu.platforms[1]", "'arm64' is an architecture, not a platform"),
        (CPU_PLATFORMS, 'platforms = ["linux/amd64", "linux/amd64"]', "variants.cpu.platforms[1]", "linux/amd64 is listed twice"),
        (CPU_PLATFORMS, "platforms = []", "variants.cpu.platforms", "expected a non-empty list of platforms"),
        (CPU_PLATFORMS, 'platforms = ["linux/amd64"]', CPU_ON, "is not one of variants.cpu.platforms"),
        ('{ "linux/arm64" = "tensorflow" }', '{ "linux/arm64" = "tensorflow==2.21.0" }', CPU_ON, "carries a version"),
        ('2.21.0".platforms."linux/arm64"]', '2.21.0".platforms."linux/riscv64"]', 'tensorflow."2.21.0".platforms."linux/riscv64"', "unknown platform"),
        (ARM_2_20, ARM_2_20.replace("cuda_build = false", 'cuda_build = "no"'), f"{FACTS_2_20}.cuda_build", "expected true or false"),
        (ARM_2_20, ARM_2_20.replace('["tensorflow"]', '["tensorflow", "Tensorflow"]'), f"{FACTS_2_20}.packages[1]", "Tensorflow is listed twice"),
        (ARM_2_20, ARM_2_20.replace('["tensorflow"]', '["tensorflow[and-cuda]"]'), f"{FACTS_2_20}.packages[0]", "is not a distribution name"),
        (ARM_2_20, ARM_2_20.replace("cuda_wheels = true\n", ""), f"{FACTS_2_20}.cuda_wheels", "missing"),
    ],
)
def test_malformed_platform_settings_are_refused(old, new, key_path, problem):
    expect_error(edit(old, new), key_path, problem)


def test_a_release_without_platform_facts_is_refused():
    text = TEXT
    for platform in ("linux/amd64", "linux/arm64"):
        start = text.index(f'[tensorflow."2.21.0".platforms."{platform}"]')
        end = text.index("\n\n", start)
        text = text[:start] + text[end + 2 :]
    expect_error(text, 'tensorflow."2.21.0".platforms', "missing", '[tensorflow."X.Y.Z".platforms."linux/amd64"]')


def test_an_exclude_may_name_a_platform(cells):
    text = TEXT + '\n[[matrix.exclude]]\nplatform = "linux/arm64"\ntensorflow = "2.20.0"\n'
    assert [c.id for c in matrix.cells(config.parse(text))] == [i for i in IDS if i != "tf2.20.0-py3.11-cpu-arm64"]
    nothing = TEXT + '\n[[matrix.exclude]]\nplatform = "linux/arm64"\nvariant = "gpu"\n'
    expect_error(nothing, "matrix.exclude[1]", "this exclude matches no cell")
    short = TEXT + '\n[[matrix.exclude]]\nplatform = "arm64"\n'
    expect_error(short, "matrix.exclude[1].platform", "an architecture, not a platform")


def test_the_real_versions_file_builds_cpu_for_arm64_and_gpu_for_amd64_only():
    real = config.load(Path(__file__).resolve().parents[2] / "versions.toml")
    assert real.variants["cpu"].platforms == ("linux/amd64", "linux/arm64")
    assert real.variants["cpu"].tensorflow_package_for("linux/arm64") == "tensorflow", "tensorflow-cpu has no aarch64 wheels"
    assert real.variants["gpu"].platforms == ("linux/amd64",), "PyPI's aarch64 tensorflow is not built with CUDA"
    cells = matrix.cells(real)
    assert {c.stem for c in cells if c.platform == "linux/arm64"} == {c.stem for c in cells if c.variant == "cpu"}
    for release in real.tensorflow.values():
        arm = release.facts("linux/arm64")
        assert arm is not None and arm.packages == ("tensorflow",) and arm.cuda_build is False
        assert release.facts("linux/amd64").cuda_build is True
