"""Publishing a stem with several platforms (issue 17): one index of every platform's smoke-tested image, or
nothing. The plan, the join's plan from the platform jobs' reports, the moving tags' plan and the publish
report's shape, on tests/unit/data/platforms/versions.toml (the CPU variant on linux/amd64 and linux/arm64,
the GPU variant on amd64 only). No Docker."""

from __future__ import annotations

import copy
import json

import pytest

from kerastack import config, matrix, publish, publish_plan, tags
from kerastack.build_report import BuildReport, CellReport
from kerastack.errors import PipelineError
from kerastack.smoke_report import Check, SmokeReport
from tests.unit.conftest import DATA

CPU, CPU_ARM, GPU = "tf2.21.0-py3.11-cpu", "tf2.21.0-py3.11-cpu-arm64", "tf2.21.0-py3.11-gpu-cuda12.5"
STEM = "2.21.0-py3.11-cpu"
IMAGE = "ghcr.io/kerastack/keras-jupyter"


def digest(name: str) -> str:
    return "sha256:" + (name.encode().hex() * 64)[:64]


@pytest.fixture(scope="module")
def cfg():
    return config.parse((DATA / "platforms" / "versions.toml").read_text(encoding="utf-8"), "versions.toml")


@pytest.fixture(scope="module")
def cells(cfg):
    return matrix.cells(cfg)


def select(cells, *ids):
    return [c for c in cells if c.id in ids]


def built(cell_id: str, revision: str = "abc1234", image_id: str = "") -> CellReport:
    suffix = "-arm64" if cell_id.endswith("-arm64") else ""
    tag = cell_id.removeprefix("tf").removesuffix("-arm64")
    return CellReport(
        cell=cell_id,
        status="built",
        platform="linux/arm64" if suffix else "linux/amd64",
        tags=[f"{IMAGE}:{tag}-20261202-{revision}{suffix}", f"{IMAGE}:{tag}{suffix}"],  # the local refs: tags.local_tag
        image_id=image_id or digest(cell_id),
        base_source="pulled",
        base_image="docker.io/library/python:3.11-slim-bookworm@sha256:" + "a" * 64,
    )


def smoke(*ids: str, failed: tuple[str, ...] = (), tested: dict[str, str] | None = None) -> dict[str, SmokeReport]:
    tested = tested or {}
    result = {}
    for c in (*ids, *failed):
        check = Check(f"tests/smoke/test_image.py::x[{c}]", "failed" if c in failed else "passed")
        result[c] = SmokeReport(c, c, tested.get(c, digest(c)), (check,))
    return result


def report(*cell_reports: CellReport) -> BuildReport:
    return BuildReport("abc1234", "now", [c.cell for c in cell_reports], list(cell_reports))


def plan(cfg, cells, selected, build, smoked, **options):
    gates = publish_plan.Gates(allow_untested_gpu=True)
    return publish_plan.plan_publish(cfg, cells, select(cells, *selected), build, smoked, gates=gates, **options)


# ---------------------------------------------------------------- the tags


def test_local_tags_lose_their_platform_suffix_in_the_registry_and_staging_tags_name_every_platform():
    assert tags.published_tag("2.21.0-py3.11-cpu-arm64", "linux/arm64") == "2.21.0-py3.11-cpu"
    assert tags.published_tag("2.21.0-py3.11-cpu", "linux/amd64") == "2.21.0-py3.11-cpu"
    with pytest.raises(ValueError, match="does not end in '-arm64'"):
        tags.published_tag("2.21.0-py3.11-cpu", "linux/arm64")
    assert tags.staging_tag("2.21.0-py3.11-cpu-20261202-abc1234", "linux/amd64") == "2.21.0-py3.11-cpu-20261202-abc1234-amd64"
    assert tags.staging_tag("2.21.0-py3.11-cpu-20261202-abc1234", "linux/arm64") == "2.21.0-py3.11-cpu-20261202-abc1234-arm64"


# ---------------------------------------------------------------- the plan


def test_every_platform_ready_stages_each_then_one_index_under_the_immutable_then_the_cell_then_moving_tags(cfg, cells):
    result = plan(cfg, cells, [CPU, CPU_ARM], report(built(CPU), built(CPU_ARM)), smoke(CPU, CPU_ARM))
    assert result.held_back == () and result.moving_held_back == ""
    assert [(s.kind, s.ref.rsplit(":", 1)[1]) for s in result.steps] == [
        ("staging", f"{STEM}-20261202-abc1234-amd64"),
        ("staging", f"{STEM}-20261202-abc1234-arm64"),
        ("immutable", f"{STEM}-20261202-abc1234"),
        ("cell", STEM),
        ("moving", "2.21-cpu"),
        ("moving", "latest"),
    ]
    staging = result.steps[:2]
    assert [s.source for s in staging] == [digest(CPU), digest(CPU_ARM)], "each platform's tested image, by id"
    assert [s.facts["platform"] for s in staging] == ["linux/amd64", "linux/arm64"]
    assert {json.dumps(s.facts["index_tags"]) for s in staging} == {json.dumps([f"{IMAGE}:{STEM}-20261202-abc1234", f"{IMAGE}:{STEM}"])}
    index = result.steps[2]
    assert index.stem == STEM and index.source == ""
    assert [(p.platform, p.cell, p.source, p.image_id, p.digest) for p in index.parts] == [
        ("linux/amd64", CPU, f"{IMAGE}:{STEM}-20261202-abc1234-amd64", digest(CPU), ""),
        ("linux/arm64", CPU_ARM, f"{IMAGE}:{STEM}-20261202-abc1234-arm64", digest(CPU_ARM), ""),
    ]
    assert all(s.stem == STEM for s in result.steps[3:]), "the cell tag and the moving tags follow the index, once per stem"


def test_a_single_platform_stem_keeps_the_direct_push(cfg, cells):
    result = plan(cfg, cells, [GPU], report(built(GPU)), smoke(GPU))
    assert [s.kind for s in result.steps] == ["immutable", "cell", "moving", "moving"]
    assert {s.source for s in result.steps} == {digest(GPU)} and not [s for s in result.steps if s.parts or s.stem]


@pytest.mark.parametrize(
    "build, smoked, selected, reason",
    [
        (report(built(CPU), built(CPU_ARM)), smoke(CPU, failed=(CPU_ARM,)), [CPU, CPU_ARM], f"{CPU_ARM} is not: smoke tests failed"),
        (report(built(CPU)), smoke(CPU), [CPU, CPU_ARM], f"{CPU_ARM} is not: not built in this run"),
        (report(built(CPU), CellReport.failed(CPU_ARM, "boom")), smoke(CPU), [CPU, CPU_ARM], f"{CPU_ARM} is not: build failed: boom"),
        (report(built(CPU), built(CPU_ARM)), smoke(CPU), [CPU, CPU_ARM], f"{CPU_ARM} is not: no smoke test result"),
        (
            report(built(CPU), built(CPU_ARM)),
            smoke(CPU, CPU_ARM, tested={CPU_ARM: digest("another image")}),
            [CPU, CPU_ARM],
            f"{CPU_ARM} is not: the smoke-tested image is not the built one",
        ),
        (report(built(CPU), built(CPU_ARM)), smoke(CPU, CPU_ARM), [CPU], f"{CPU_ARM} is not selected in this run"),
        (report(built(CPU), built(CPU_ARM, "def5678")), smoke(CPU, CPU_ARM), [CPU, CPU_ARM], "different build stamps"),
    ],
    ids=["arm64-failed-smoke", "arm64-missing", "arm64-build-failed", "arm64-untested", "arm64-tested-another-image", "arm64-not-selected", "two-stamps"],
)
def test_a_stem_is_held_back_whole_when_one_platform_is_not_ready(cfg, cells, build, smoked, selected, reason):
    result = plan(cfg, cells, selected, build, smoked)
    assert not [s for s in result.steps if s.cell in (CPU, CPU_ARM, STEM)], "nothing of the stem, not even a staging tag"
    held = dict(result.held_back)
    assert CPU in held and reason in held[CPU] and "published only when all of them are ready" in held[CPU]
    assert "not ready" in result.moving_held_back


def test_a_held_back_stem_does_not_stop_another_stem(cfg, cells):
    result = plan(cfg, cells, [CPU, CPU_ARM, GPU], report(built(CPU), built(CPU_ARM), built(GPU)), smoke(CPU, GPU, failed=(CPU_ARM,)))
    assert {s.cell for s in result.steps} == {GPU} and not [s for s in result.steps if s.kind == "moving"]
    assert set(dict(result.held_back)) == {CPU, CPU_ARM}


def test_an_arm64_build_report_without_the_local_platform_suffix_is_held_back(cfg, cells):
    odd = built(CPU_ARM)
    odd.tags = [t.removesuffix("-arm64") for t in odd.tags]
    result = plan(cfg, cells, [CPU, CPU_ARM], report(built(CPU), odd), smoke(CPU, CPU_ARM))
    assert result.steps == () and "ending in -arm64" in dict(result.held_back)[CPU_ARM]


def test_the_staging_stage_pushes_each_ready_platform_alone_and_leaves_the_index_to_the_join(cfg, cells):
    """A release's arm64 job: only its own cell was built there; its stem's index is the join's."""
    result = plan(cfg, cells, [CPU_ARM], report(built(CPU_ARM)), smoke(CPU_ARM), staging_only=True)
    assert [(s.kind, s.ref.rsplit(":", 1)[1]) for s in result.steps] == [("staging", f"{STEM}-20261202-abc1234-arm64")]
    assert result.moving_held_back == "not asked to move tags"
    gpu = plan(cfg, cells, [GPU], report(built(GPU)), smoke(GPU), staging_only=True)
    assert [s.kind for s in gpu.steps] == ["immutable", "cell"], "a single-platform cell's job pushes its tags directly"
    failed = plan(cfg, cells, [CPU_ARM], report(built(CPU_ARM)), smoke(failed=(CPU_ARM,)), staging_only=True)
    assert failed.steps == () and "smoke tests failed" in dict(failed.held_back)[CPU_ARM]


def test_a_dry_run_says_which_index_it_would_make(cfg, cells):
    result = plan(cfg, cells, [CPU, CPU_ARM], report(built(CPU), built(CPU_ARM)), smoke(CPU, CPU_ARM))
    lines = []
    publish.execute(result, None, dry_run=True, log=lines.append)
    assert f"would create the index {IMAGE}:{STEM}-20261202-abc1234  (immutable, of linux/amd64, linux/arm64)" in lines


# ---------------------------------------------------------------- the join and the moving tags, from reports


def staged(cell_id: str, revision: str = "abc1234", pushed: bool = True) -> dict:
    platform = "linux/arm64" if cell_id.endswith("-arm64") else "linux/amd64"
    immutable = f"{IMAGE}:{STEM}-20261202-{revision}"
    return {
        "pushed": pushed,
        "tags": [f"{immutable}-{platform.split('/')[1]}"] if pushed else [],
        "not_pushed": {},
        "digest": digest("manifest " + cell_id) if pushed else "",
        "size": 10,
        "gpu_op_on_gpu": None,
        "platform": platform,
        "stem": STEM,
        "index_tags": [immutable, f"{IMAGE}:{STEM}"],
        "image_id": digest(cell_id),
    }


def job_reports(*entries: tuple[str, dict]) -> list[publish_plan.PublishResult]:
    """One publish report per platform job, read back through the validated reader."""
    results = []
    for cell_id, entry in entries:
        data = json.loads(publish_plan.PublishResult(cells={cell_id: entry}, ok=entry["pushed"]).to_json())
        results.append(publish_plan.PublishResult.from_data(data, f"publish-{cell_id}/publish-report.json"))
    return results


def test_the_join_makes_one_index_from_every_platform_jobs_digest(cfg, cells):
    reports = job_reports((CPU, staged(CPU)), (CPU_ARM, staged(CPU_ARM)))
    result = publish_plan.plan_index_from_reports(cfg, cells, select(cells, CPU, CPU_ARM, GPU), reports)
    assert result.held_back == ()
    assert [(s.kind, s.ref, s.stem) for s in result.steps] == [
        ("immutable", f"{IMAGE}:{STEM}-20261202-abc1234", STEM),
        ("cell", f"{IMAGE}:{STEM}", STEM),
    ], "the GPU cell (one platform) is not the join's: its job pushed it"
    assert [(p.platform, p.digest, p.image_id) for p in result.steps[0].parts] == [
        ("linux/amd64", digest("manifest " + CPU), digest(CPU)),
        ("linux/arm64", digest("manifest " + CPU_ARM), digest(CPU_ARM)),
    ]


@pytest.mark.parametrize(
    "entries, reason",
    [
        (((CPU, staged(CPU)),), f"no publish report says {CPU_ARM} was pushed"),
        (((CPU, staged(CPU)), (CPU_ARM, staged(CPU_ARM, pushed=False))), f"no publish report says {CPU_ARM} was pushed"),
        (((CPU, staged(CPU)), (CPU_ARM, staged(CPU_ARM, "def5678"))), "different build stamps"),
        (((CPU, staged(CPU)), (CPU_ARM, staged(CPU_ARM)), (CPU_ARM, {**staged(CPU_ARM), "digest": digest("other")})), "name different images"),
    ],
    ids=["arm64-job-missing", "arm64-held-back", "two-stamps", "two-reports-disagree"],
)
def test_the_join_refuses_a_stem_unless_every_platform_was_pushed(cfg, cells, entries, reason):
    result = publish_plan.plan_index_from_reports(cfg, cells, select(cells, CPU, CPU_ARM), job_reports(*entries))
    assert result.steps == ()
    assert reason in dict(result.held_back)[CPU] and set(dict(result.held_back)) == {CPU, CPU_ARM}


def index_entry(platforms=(CPU, CPU_ARM)) -> dict:
    return {
        "pushed": True,
        "tags": [f"{IMAGE}:{STEM}-20261202-abc1234", f"{IMAGE}:{STEM}"],
        "not_pushed": {},
        "digest": digest("index"),
        "platforms": {
            ("linux/arm64" if c.endswith("-arm64") else "linux/amd64"): {"cell": c, "digest": digest("manifest " + c), "image_id": digest(c)} for c in platforms
        },
    }


def test_moving_tags_move_to_the_index_once_per_stem_and_only_when_it_lists_every_platform(cfg, cells):
    reports = [*job_reports((CPU, staged(CPU)), (CPU_ARM, staged(CPU_ARM))), publish_plan.PublishResult(stems={STEM: index_entry()})]
    result = publish_plan.plan_moving_from_reports(cfg, cells, select(cells, CPU, CPU_ARM), reports)
    assert {s.ref.rsplit(":", 1)[1]: s.source for s in result.steps} == {"latest": f"{IMAGE}@{digest('index')}", "2.21-cpu": f"{IMAGE}@{digest('index')}"}
    assert len(result.steps) == 2, "one move per tag, not one per platform"
    staged_only = publish_plan.plan_moving_from_reports(cfg, cells, select(cells, CPU, CPU_ARM), reports[:2])
    assert staged_only.steps == () and "no publish report says the index of 2.21.0-py3.11-cpu" in dict(staged_only.held_back)[CPU]
    half = publish_plan.PublishResult(stems={STEM: {**index_entry(), "platforms": index_entry()["platforms"] | {}}})
    del half.stems[STEM]["platforms"]["linux/arm64"]
    short = publish_plan.plan_moving_from_reports(cfg, cells, select(cells, CPU), [half])
    assert short.steps == () and "not every configured platform" in dict(short.held_back)[CPU]


# ---------------------------------------------------------------- the report's shape


def test_the_report_round_trips_with_each_platforms_digest_and_the_index(tmp_path):
    result = publish_plan.PublishResult(
        cells={CPU: staged(CPU), CPU_ARM: staged(CPU_ARM)}, stems={STEM: index_entry()}, moved={f"{IMAGE}:latest": digest("index")}
    )
    (tmp_path / "publish-report.json").write_text(result.to_json())
    ((path, again),) = publish_plan.load_publish_reports(tmp_path)
    assert again == result
    assert again.pushed_stems() == [(STEM, index_entry())]
    assert again.stems[STEM]["platforms"]["linux/arm64"]["digest"] == digest("manifest " + CPU_ARM)


def _broken(change) -> dict:
    data = json.loads(publish_plan.PublishResult(cells={CPU: staged(CPU), CPU_ARM: staged(CPU_ARM)}, stems={STEM: index_entry()}).to_json())
    change(data)
    return data


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda d: d.update(stems=[]), "cells or stems is not an object"),
        (lambda d: d["stems"][STEM].update(platforms=[]), "platforms that are not an object"),
        (lambda d: d["stems"][STEM]["platforms"].update({"linux/s390x": d["stems"][STEM]["platforms"]["linux/amd64"]}), "names platform 'linux/s390x'"),
        (lambda d: d["stems"][STEM]["platforms"]["linux/arm64"].update(digest="sha256:short"), "digest or image_id is not sha256"),
        (lambda d: d["stems"][STEM]["platforms"]["linux/arm64"].pop("image_id"), "not {cell, digest, image_id}"),
        (lambda d: d["stems"][STEM]["platforms"].pop("linux/arm64"), "fewer than two platforms"),
        (lambda d: d["stems"][STEM].update(digest=""), "says pushed but has no tags or digest"),
        (lambda d: d["stems"].update({"Bad Stem": d["stems"][STEM]}), "is not named by a stem"),
        (lambda d: d["cells"][CPU_ARM].pop("index_tags"), "some but not all of platform, stem and index_tags"),
        (lambda d: d["cells"][CPU_ARM].update(platform="arm64"), "has a platform that is not one of"),
        (lambda d: d["cells"][CPU_ARM].update(index_tags=["only-one"]), "index_tags that are not [IMMUTABLE_REF, CELL_REF]"),
        (lambda d: d["cells"][CPU_ARM].update(image_id="sha256:tf"), "names no image_id"),
    ],
)
def test_a_report_of_another_shape_is_refused_with_one_clear_error(change, problem):
    with pytest.raises(PipelineError) as info:
        publish_plan.PublishResult.from_data(_broken(change), "publish-x/publish-report.json")
    message = str(info.value)
    assert message.startswith("publish-x/publish-report.json: not a kerastack publish report (") and problem in message, message
    assert "download the cell jobs' publish reports again" in message


def test_an_old_report_without_stems_still_reads():
    data = json.loads(publish_plan.PublishResult(cells={GPU: {"pushed": True, "tags": ["r/i:t"], "digest": digest("g"), "size": 1}}).to_json())
    del data["stems"]
    assert publish_plan.PublishResult.from_data(copy.deepcopy(data), "old").stems == {}


# ---------------------------------------------------------------- reading the registry (a recorded client, no Docker)


class RecordedRegistry:
    """Answers `imagetools inspect` like buildx does, from {ref: raw manifest}."""

    def __init__(self, manifests: dict[str, dict]):
        self.manifests = manifests

    def imagetools_inspect(self, ref: str, *args: str) -> str:
        raw = self.manifests[ref]
        if args == ("--raw",):
            return json.dumps(raw)
        return json.dumps({"digest": raw["digest_of_this"]})


def image_manifest(name: str) -> dict:
    return {"digest_of_this": digest("manifest " + name), "config": {"digest": digest(name)}}


INDEX = {
    "digest_of_this": digest("index"),
    "manifests": [
        {"digest": digest("manifest " + CPU), "platform": {"os": "linux", "architecture": "amd64"}},
        {"digest": digest("manifest " + CPU_ARM), "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
    ],
}


def test_remote_image_reads_the_asked_platform_of_an_index():
    client = RecordedRegistry(
        {
            f"{IMAGE}:{STEM}": INDEX,
            f"{IMAGE}@{digest('manifest ' + CPU)}": image_manifest(CPU),
            f"{IMAGE}@{digest('manifest ' + CPU_ARM)}": image_manifest(CPU_ARM),
        }
    )
    assert publish.remote_image(client, f"{IMAGE}:{STEM}").config_digest == digest(CPU), "the default platform"
    assert publish.remote_image(client, f"{IMAGE}:{STEM}", "linux/arm64") == publish.RemoteImage(digest("index"), digest(CPU_ARM))
    index = publish.remote_index(client, f"{IMAGE}:{STEM}")
    assert index.platforms == {"linux/amd64": digest("manifest " + CPU), "linux/arm64": digest("manifest " + CPU_ARM)} and index.digest == digest("index")
    amd_only = {**INDEX, "manifests": INDEX["manifests"][:1]}
    with pytest.raises(PipelineError, match="lists 0 linux/arm64 images, not one"):
        publish.remote_image(RecordedRegistry({f"{IMAGE}:{STEM}": amd_only}), f"{IMAGE}:{STEM}", "linux/arm64")


def test_an_index_with_a_platform_twice_or_a_single_image_is_not_exactly_the_expected_index():
    expected = {"linux/amd64": digest("manifest " + CPU), "linux/arm64": digest("manifest " + CPU_ARM)}
    twice = {**INDEX, "manifests": [*INDEX["manifests"], INDEX["manifests"][1]]}
    single = image_manifest(CPU)
    assert publish._exactly(publish.remote_index(RecordedRegistry({"r:t": INDEX}), "r:t"), expected)
    assert not publish._exactly(publish.remote_index(RecordedRegistry({"r:t": twice}), "r:t"), expected)
    assert not publish._exactly(publish.remote_index(RecordedRegistry({"r:t": single}), "r:t"), expected)
    assert not publish._exactly(None, expected)


def test_the_release_commands_list_each_index_with_its_platforms(tmp_path, capsys):
    from kerastack import cli

    (tmp_path / "publish-arm").mkdir()
    (tmp_path / "publish-arm" / "publish-report.json").write_text(publish_plan.PublishResult(cells={CPU_ARM: staged(CPU_ARM)}).to_json())
    (tmp_path / "index-report.json").write_text(publish_plan.PublishResult(stems={STEM: index_entry()}).to_json())
    assert cli.main(["digests", "--report-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{IMAGE}@{digest('manifest ' + CPU_ARM)}", f"{IMAGE}@{digest('index')}"]
    assert cli.main(["summary", "--report-dir", str(tmp_path)]) == 0
    (row,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {STEM} (index)")]
    assert f"linux/arm64: {CPU_ARM} `{digest('manifest ' + CPU_ARM)}`" in row
