"""Images per platform, the parts that need no Docker: local tags, choosing a platform's manifest from an
index, the QEMU check on recorded binfmt_misc folders, the `image` command's platform option, and the
default cell of a platform. On tests/unit/data/platforms/versions.toml (linux/arm64 enabled for cpu)."""

from __future__ import annotations

import argparse

import pytest

from kerastack import config, contract, emulation, matrix, oci_index, options, plan, tags
from kerastack.errors import ConfigError, PipelineError
from tests.unit.conftest import DATA

TEXT = (DATA / "platforms" / "versions.toml").read_text(encoding="utf-8")
STAMP = tags.BuildStamp("20261207", "abc1234")
AMD, ARM = "sha256:" + "a" * 64, "sha256:" + "b" * 64
INDEX = {
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [
        {"digest": AMD, "platform": {"os": "linux", "architecture": "amd64"}},
        {"digest": ARM, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"digest": "sha256:" + "c" * 64, "platform": {"os": "unknown", "architecture": "unknown"}},  # an attestation
    ],
}


@pytest.fixture(scope="module")
def cfg():
    return config.parse(TEXT, "versions.toml")


@pytest.fixture(scope="module")
def cells(cfg):
    return matrix.cells(cfg)


def cell(cells, cell_id):
    (found,) = [c for c in cells if c.id == cell_id]
    return found


# ---------------------------------------------------------------- local tags
def test_another_platforms_local_tags_carry_its_suffix_and_the_published_ones_do_not(cfg, cells):
    amd, arm = cell(cells, "tf2.21.0-py3.11-cpu"), cell(cells, "tf2.21.0-py3.11-cpu-arm64")
    p_amd, p_arm = (plan.plan_cell(cfg, cells, c, STAMP, "base", "2026-12-07T00:00:00Z") for c in (amd, arm))
    assert p_amd.tags.all() == p_arm.tags.all(), "one tag serves both platforms"
    assert p_amd.local_refs == [f"{cfg.image}:2.21.0-py3.11-cpu-20261207-abc1234", f"{cfg.image}:2.21.0-py3.11-cpu"]
    assert p_arm.local_refs == [f"{cfg.image}:2.21.0-py3.11-cpu-20261207-abc1234-arm64", f"{cfg.image}:2.21.0-py3.11-cpu-arm64"]
    assert tags.local_ref(cfg.image, arm) == p_arm.cell_ref
    assert dict(p_arm.build_args)["LOCK_DIR"].endswith("tf2.21.0-py3.11-cpu-arm64")


# ---------------------------------------------------------------- indexes
def test_a_platforms_manifest_is_chosen_from_the_index_and_attestations_are_skipped():
    assert oci_index.is_index(INDEX)
    assert oci_index.platforms(INDEX) == {"linux/amd64": AMD, "linux/arm64": ARM}
    assert oci_index.platform_manifest(INDEX, "linux/arm64", "img:tag") == ARM


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"schemaVersion": 2, "config": {}, "layers": []}, "not a usable multi-platform index (not an index"),
        ({"manifests": [{"digest": "sha256:short", "platform": {"os": "linux", "architecture": "arm64"}}]}, "without a platform or a sha256 digest"),
        ({"manifests": [INDEX["manifests"][0], INDEX["manifests"][0]]}, "linux/amd64 is listed twice"),
        ({"manifests": [INDEX["manifests"][0]]}, "has no linux/arm64 image (it lists linux/amd64)"),
        ([], "not an index"),
    ],
)
def test_an_index_without_exactly_one_such_image_is_refused(document, message):
    with pytest.raises(PipelineError, match=r"^img:tag ") as info:
        oci_index.platform_manifest(document, "linux/arm64", "img:tag")
    assert message in str(info.value)


# ---------------------------------------------------------------- QEMU
def binfmt(tmp_path, handler: str | None, *, mounted: bool = True):
    folder = tmp_path / "binfmt_misc"
    folder.mkdir()
    if mounted:
        (folder / "status").write_text("enabled\n")
    if handler is not None:
        (folder / "qemu-aarch64").write_text(handler)
    return folder


REGISTERED = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\noffset 0\nmagic 7f454c46\nmask ffffffff\n"


def test_a_registered_enabled_handler_with_the_f_flag_is_enough(tmp_path):
    assert emulation.problem("linux/arm64", binfmt(tmp_path, REGISTERED)) == ""
    emulation.require("linux/arm64", tmp_path / "binfmt_misc")


@pytest.mark.parametrize(
    ("handler", "mounted", "said"),
    [
        (None, False, "is not mounted (as root: mount -t binfmt_misc"),
        (None, True, "no qemu-aarch64 handler is registered"),
        (REGISTERED.replace("enabled", "disabled", 1), True, "registered but disabled (as root: update-binfmts --enable qemu-aarch64)"),
        (REGISTERED.replace("flags: PF", "flags: P"), True, "lacks the F flag (flags P)"),
    ],
)
def test_what_stops_emulation_is_named_with_its_fix(tmp_path, handler, mounted, said):
    folder = binfmt(tmp_path, handler, mounted=mounted)
    assert said in emulation.problem("linux/arm64", folder)
    with pytest.raises(PipelineError, match="cannot build or run linux/arm64 images on this machine") as info:
        emulation.require("linux/arm64", folder)
    assert "install-test-deps.sh" in str(info.value)


def test_a_platform_without_a_known_emulator_is_said_so(tmp_path):
    assert emulation.problem("linux/s390x", binfmt(tmp_path, REGISTERED)) == "no emulator is known for linux/s390x"


# ---------------------------------------------------------------- the `image` command's platform
def resolved(words: dict, environ: dict) -> options.Options:
    args = argparse.Namespace(command="image", project_dir=str(DATA.parent.parent.parent), config=None, registry=None, repository=None, **words)
    return options.resolve(args, environ, is_root=False)


def test_the_platform_comes_from_the_option_then_the_environment():
    assert resolved({"platform": None}, {}).platform is None, "unset: the engine's own"
    assert resolved({"platform": None}, {options.PLATFORM_ENV: ""}).platform is None, "the Makefile passes an unset PLATFORM as empty"
    assert resolved({"platform": None}, {options.PLATFORM_ENV: "linux/arm64"}).platform == "linux/arm64"
    assert resolved({"platform": "linux/amd64"}, {options.PLATFORM_ENV: "linux/arm64"}).platform == "linux/amd64"


@pytest.mark.parametrize(("value", "fix"), [("arm64", "write it in full: linux/arm64"), ("linux/riscv64", "use one of: linux/amd64, linux/arm64")])
def test_a_platform_that_is_not_built_is_refused_with_the_fix(value, fix):
    with pytest.raises(PipelineError, match=f"KERASTACK_PLATFORM '{value}' is not a platform images are built for: {fix}"):
        resolved({"platform": None}, {options.PLATFORM_ENV: value})


def test_the_default_cell_of_a_platform(cfg, cells):
    assert matrix.default_cell(cfg, "cpu", cells, "linux/arm64").id == "tf2.21.0-py3.11-cpu-arm64"
    assert matrix.default_cell(cfg, "cpu", cells).platform == contract.DEFAULT_PLATFORM
    with pytest.raises(ConfigError, match=r"the gpu variant is not built for linux/arm64 \(only linux/amd64\)"):
        matrix.default_cell(cfg, "gpu", cells, "linux/arm64")


# ---------------------------------------------------------------- reproduce's cells
def test_a_filter_of_platforms_only_reproduces_each_platforms_default_cpu_cell(cfg, cells):
    for words, expected in (
        ([], ["tf2.21.0-py3.11-cpu", "tf2.21.0-py3.11-cpu-arm64"]),
        (["platform=linux/arm64"], ["tf2.21.0-py3.11-cpu-arm64"]),
        (["platform=linux/amd64,linux/arm64"], ["tf2.21.0-py3.11-cpu", "tf2.21.0-py3.11-cpu-arm64"]),
    ):
        f = matrix.Filter.parse(words)
        assert f.names_only_platforms
        assert [c.id for c in matrix.default_cpu_cells(cfg, f.select(cells), cells)] == expected
    assert not matrix.Filter.parse(["platform=linux/arm64", "tf=2.20"]).names_only_platforms, "a named cell is built as named"


def test_a_cross_build_installs_the_venv_on_the_build_platforms_base(cfg, cells):
    arm = cell(cells, "tf2.21.0-py3.11-cpu-arm64")
    cross = dict(plan.plan_cell(cfg, cells, arm, STAMP, "arm-base", "2026-12-07T00:00:00Z", build_base_image="amd-base").build_args)
    assert (cross["BASE_IMAGE"], cross["BUILD_BASE_IMAGE"], cross["PYTHON_STAGE"]) == ("arm-base", "amd-base", "cross-python")
    native = dict(plan.plan_cell(cfg, cells, arm, STAMP, "arm-base", "2026-12-07T00:00:00Z").build_args)
    assert native["BUILD_BASE_IMAGE"] == native["BASE_IMAGE"] == "arm-base", "a native build installs on its own base"
    assert native["PYTHON_STAGE"] == "base", "... in the image's own base stage, which it references once"


# ---------------------------------------------------------------- one build day for a release's platform jobs
def test_the_build_day_comes_from_the_environment_and_must_be_a_day():
    assert resolved({"platform": None}, {}).build_day is None, "unset: the day of the build"
    assert resolved({"platform": None}, {options.BUILD_DAY_ENV: ""}).build_day is None
    assert resolved({"platform": None}, {options.BUILD_DAY_ENV: "20261231"}).build_day == "20261231"
    for bad in ("2026-12-31", "20261301", "20260230", "2026123", "tomorrow"):
        with pytest.raises(PipelineError, match=f"KERASTACK_BUILD_DAY='{bad}' is not a day: write it as YYYYMMDD"):
            resolved({"platform": None}, {options.BUILD_DAY_ENV: bad})


def test_a_given_build_day_stamps_the_immutable_tags_whatever_the_clock(tmp_path):
    import subprocess
    from datetime import UTC, datetime

    from kerastack import git

    repo = tmp_path / "repo"
    repo.mkdir()
    for command in (["init", "-q"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x"]):
        subprocess.run(["git", *command], cwd=repo, check=True)
    after_midnight = datetime(2027, 1, 1, 0, 1, tzinfo=UTC)
    assert git.current_stamp(repo, now=after_midnight)[0].date == "20270101"
    assert git.current_stamp(repo, now=after_midnight, day="20261231")[0].date == "20261231"
