"""The publish plan: what is pushed, in which order, and what is held back. No Docker."""

from __future__ import annotations

import json

import pytest
from python_on_whales import DockerException

from kerastack import cli, config, matrix, publish, publish_plan
from kerastack.build_report import BuildReport, CellReport
from kerastack.errors import PipelineError
from kerastack.smoke_report import Check, SmokeReport
from tests.conftest import ROOT
from tests.unit.conftest import SAMPLE

CPU311, CPU313, GPU = "tf2.21.0-py3.11-cpu", "tf2.21.0-py3.13-cpu", "tf2.21.0-py3.11-gpu-cuda12.5"


@pytest.fixture(scope="module")
def cfg():
    return config.load(SAMPLE)


@pytest.fixture(scope="module")
def cells(cfg):
    return matrix.cells(cfg)


def select(cells, *ids):
    return [c for c in cells if c.id in ids]


def built(cell_id: str, revision: str = "abc1234") -> CellReport:
    tag = cell_id.removeprefix("tf")  # the cell tag, as tags.cell_tag makes it
    return CellReport(
        cell=cell_id,
        status="built",
        tags=[f"ghcr.io/kerastack/keras-jupyter:{tag}-20261124-{revision}", f"ghcr.io/kerastack/keras-jupyter:{tag}"],
        image_id=f"sha256:{cell_id}",
        base_image="docker.io/library/python:3.11-slim-bookworm@sha256:" + "a" * 64,
        base_source="pulled",
    )


def smoke(*ids: str, failed: tuple[str, ...] = ()) -> dict[str, SmokeReport]:
    result = {c: SmokeReport(c, c, f"sha256:{c}", (Check(f"tests/smoke/test_image.py::x[{c}]", "passed"),)) for c in ids}
    for c in failed:
        result[c] = SmokeReport(c, c, f"sha256:{c}", (Check(f"tests/smoke/test_image.py::x[{c}]", "failed"),))
    return result


def plan_publish(cfg, cells, selected, build, smoked, *, allow_dirty=False, allow_untested_gpu=False, move_tags=True):
    gates = publish_plan.Gates(allow_dirty=allow_dirty, allow_untested_gpu=allow_untested_gpu)
    return publish_plan.plan_publish(cfg, cells, selected, build, smoked, gates=gates, move_tags=move_tags)


def report(*cell_reports: CellReport) -> BuildReport:
    return BuildReport("abc1234", "now", [c.cell for c in cell_reports], list(cell_reports))


def test_all_passed_pushes_immutable_then_cell_then_moving(cfg, cells):
    plan = plan_publish(cfg, cells, select(cells, CPU311, CPU313), report(built(CPU311), built(CPU313)), smoke(CPU311, CPU313))
    kinds = [s.kind for s in plan.steps]
    assert kinds == ["immutable", "immutable", "cell", "cell", "moving", "moving"]
    assert {s.ref.rsplit(":", 1)[1] for s in plan.steps if s.kind == "moving"} == {"latest", "2.21-cpu"}
    assert all(s.cell == CPU311 for s in plan.steps if s.kind == "moving")
    assert plan.held_back == () and plan.moving_held_back == ""


def test_a_cell_that_failed_smoke_is_not_pushed_and_no_tag_moves(cfg, cells):
    plan = plan_publish(cfg, cells, select(cells, CPU311, CPU313), report(built(CPU311), built(CPU313)), smoke(CPU313, failed=(CPU311,)))
    assert {s.cell for s in plan.steps} == {CPU313}
    assert not [s for s in plan.steps if s.kind == "moving"]
    assert dict(plan.held_back)[CPU311].startswith("smoke tests failed")
    assert "not ready" in plan.moving_held_back


@pytest.mark.parametrize(
    "build, smoked, reason",
    [
        (report(), smoke(CPU311), "not built in this run"),
        (report(CellReport.failed(CPU311, "boom")), smoke(CPU311), "build failed: boom"),
        (report(built(CPU311)), {}, "no smoke test result"),
        (report(built(CPU311)), {CPU311: SmokeReport(CPU311, CPU311, "sha256:other", (Check("t", "passed"),))}, "not the built one"),
        (report(built(CPU311, "abc1234-dirty")), smoke(CPU311), "uncommitted changes"),
    ],
)
def test_held_back_with_the_reason(cfg, cells, build, smoked, reason):
    plan = plan_publish(cfg, cells, select(cells, CPU311), build, smoked)
    assert plan.steps == ()
    assert reason in dict(plan.held_back)[CPU311]


def test_dirty_builds_publish_only_when_allowed(cfg, cells):
    plan = plan_publish(cfg, cells, select(cells, CPU311), report(built(CPU311, "abc1234-dirty")), smoke(CPU311), allow_dirty=True)
    assert [s.kind for s in plan.steps] == ["immutable", "cell", "moving", "moving"]


def test_targets_follow_the_configured_registry(cfg, cells):
    local = config.with_registry(cfg, "127.0.0.1:5000", "team/keras")
    plan = plan_publish(local, cells, select(cells, CPU311), report(built(CPU311)), smoke(CPU311))
    assert all(s.ref.startswith("127.0.0.1:5000/team/keras:") for s in plan.steps)
    assert all(s.source == f"sha256:{CPU311}" for s in plan.steps), "publish pushes the tested image by id"


def test_stage_cells_moves_nothing(cfg, cells):
    plan = plan_publish(cfg, cells, select(cells, CPU311), report(built(CPU311)), smoke(CPU311), move_tags=False)
    assert [s.kind for s in plan.steps] == ["immutable", "cell"]


def test_a_filtered_publish_only_moves_tags_its_cells_own(cfg, cells):
    plan = plan_publish(cfg, cells, select(cells, CPU313), report(built(CPU313)), smoke(CPU313))
    assert [s.kind for s in plan.steps] == ["immutable", "cell"], "py3.13 owns no moving tag; latest stays on py3.11"


def test_moving_from_reports_needs_every_selected_cell(cfg, cells):
    reports = [
        publish_plan.PublishResult(cells={CPU311: {"pushed": True, "digest": "sha256:aa"}}),
        publish_plan.PublishResult(cells={GPU: {"pushed": False, "digest": ""}}),
    ]
    held = publish_plan.plan_moving_from_reports(cfg, cells, select(cells, CPU311, GPU), reports)
    assert held.steps == () and GPU in dict(held.held_back)
    reports[1].cells[GPU] = {"pushed": True, "digest": "sha256:bb"}
    plan = publish_plan.plan_moving_from_reports(cfg, cells, select(cells, CPU311, GPU), reports)
    assert {s.ref.rsplit(":", 1)[1]: s.source.rsplit("@", 1)[1] for s in plan.steps} == {
        "latest": "sha256:aa",
        "2.21-cpu": "sha256:aa",
        "latest-gpu": "sha256:bb",
        "2.21-gpu": "sha256:bb",
    }


def test_retries_transient_errors_with_backoff_and_stops_on_auth_errors():
    calls, logs = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise DockerException(["docker", "push"], 1, b"", b"connection reset by peer")

    publish.with_retries(flaky, "pushing x", attempts=4, backoff=0.001, log=logs.append)
    assert len(calls) == 3 and len(logs) == 2 and "retrying" in logs[0]

    def denied():
        calls.append(1)
        raise DockerException(["docker", "push"], 1, b"", b"denied: requested access to the resource is denied")

    calls.clear()
    with pytest.raises(PipelineError, match="after 1 attempt"):
        publish.with_retries(denied, "pushing x", attempts=4, backoff=0.001, log=logs.append)
    assert len(calls) == 1


def test_registry_credentials_must_come_in_pairs(capsys, monkeypatch):
    monkeypatch.setenv("REGISTRY_USER", "me")
    monkeypatch.delenv("REGISTRY_PASSWORD", raising=False)
    assert cli.main(["--project-dir", str(ROOT), "--config", str(SAMPLE), "publish", "--dry-run"]) == 2
    assert "REGISTRY_USER and REGISTRY_PASSWORD" in capsys.readouterr().err


# ---------------------------------------------------------------- fail closed: GPU honesty, unknown revisions, retries

SKIPPED_GPU_OP = {
    "test": "tests/smoke/test_gpu.py::test_an_op_runs_on_the_gpu[x]",
    "outcome": "skipped",
    "reason": "no GPU on this host: Docker has no NVIDIA runtime",
    "gpu": True,
}


def gpu_smoke(outcome: str) -> dict[str, SmokeReport]:
    result = smoke(GPU)
    gpu_check = Check(**{**SKIPPED_GPU_OP, "outcome": outcome, "reason": SKIPPED_GPU_OP["reason"] if outcome == "skipped" else ""})
    result[GPU] = SmokeReport(GPU, GPU, f"sha256:{GPU}", (*result[GPU].checks, gpu_check))
    return result


def test_a_gpu_cell_whose_gpu_op_was_skipped_is_held_back_with_the_reason(cfg, cells):
    plan = plan_publish(cfg, cells, select(cells, GPU), report(built(GPU)), gpu_smoke("skipped"))
    assert plan.steps == ()
    why = dict(plan.held_back)[GPU]
    assert "did not run on a GPU" in why and "no GPU on this host" in why and "--allow-untested-gpu" in why


def test_a_gpu_cell_without_any_recorded_gpu_check_is_held_back(cfg, cells):
    plan = plan_publish(cfg, cells, select(cells, GPU), report(built(GPU)), smoke(GPU))
    assert "records no GPU check" in dict(plan.held_back)[GPU]


def test_allow_untested_gpu_publishes_and_records_that_the_op_did_not_run_on_a_gpu(cfg, cells):
    plan = plan_publish(cfg, cells, select(cells, GPU), report(built(GPU)), gpu_smoke("skipped"), allow_untested_gpu=True)
    assert plan.held_back == () and plan.steps
    assert {s.facts["gpu_op_on_gpu"] for s in plan.steps if s.kind != "moving"} == {False}


def test_a_gpu_cell_whose_gpu_op_passed_is_published_as_tested_on_a_gpu(cfg, cells):
    plan = plan_publish(cfg, cells, select(cells, GPU), report(built(GPU)), gpu_smoke("passed"))
    assert plan.held_back == () and {s.facts["gpu_op_on_gpu"] for s in plan.steps if s.kind != "moving"} == {True}


def test_cpu_cells_need_no_gpu_check(cfg, cells):
    plan = plan_publish(cfg, cells, select(cells, CPU311), report(built(CPU311)), smoke(CPU311))
    assert plan.held_back == () and {s.facts["gpu_op_on_gpu"] for s in plan.steps if s.kind != "moving"} == {None}


def test_an_unknown_revision_is_held_back_unless_allow_dirty(cfg, cells):
    plan = plan_publish(cfg, cells, select(cells, CPU311), report(built(CPU311, "unknown")), smoke(CPU311))
    why = dict(plan.held_back)[CPU311]
    assert "git could not tell the revision" in why and "--allow-dirty" in why
    assert plan_publish(cfg, cells, select(cells, CPU311), report(built(CPU311, "unknown")), smoke(CPU311), allow_dirty=True).held_back == ()


def test_zero_attempts_still_makes_one_attempt():
    calls = []
    publish.with_retries(lambda: calls.append(1), "pushing x", attempts=0, backoff=0, log=print)
    assert calls == [1]


@pytest.mark.parametrize("value", ["-1", "1.5", "x", "\u0663", "99999999999999999999"])
def test_publish_refuses_a_bad_retries_value_with_exit_2(capsys, value):
    with pytest.raises(SystemExit) as info:
        cli.main(["publish", "--retries", value, "--dry-run"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--retries" in err and "whole number" in err and "Traceback" not in err


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_publish_refuses_a_bad_backoff_value_with_exit_2(capsys, value):
    with pytest.raises(SystemExit) as info:
        cli.main(["publish", "--backoff", value, "--dry-run"])
    assert info.value.code == 2


def test_the_release_summary_says_whether_the_gpu_op_ran_on_a_gpu(tmp_path, capsys):
    entry = {"pushed": True, "tags": ["r/i:t"], "digest": "sha256:" + "a" * 64, "size": 10}
    cells_ = {
        GPU: {**entry, "gpu_op_on_gpu": False},
        CPU311: {**entry, "gpu_op_on_gpu": None},
        "tf2.21.0-py3.13-gpu-cuda12.9": {**entry, "gpu_op_on_gpu": True},
    }
    (tmp_path / "publish-report.json").write_text(json.dumps({"cells": cells_, "moved": {}, "held_back": {}, "not_moved": {}, "ok": True}))
    assert cli.main(["summary", "--reports", str(tmp_path)]) == 0
    rows = {line.split("|")[1].strip(): line.split("|")[-2].strip() for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows[GPU].startswith("**no**") and rows["tf2.21.0-py3.13-gpu-cuda12.9"] == "yes" and rows[CPU311].startswith("–")


def bootstrapped_build(cell_id: str) -> CellReport:
    found = built(cell_id)
    found.base_image, found.base_source = "kerastack-base/debian:bookworm-minbase-r2", "bootstrapped"
    found.base_suite, found.base_mirror = "bookworm", "http://deb.debian.org/debian"
    return found


@pytest.mark.parametrize("source", ["bootstrapped", "", "local"])
def test_an_image_on_a_bootstrapped_or_unrecorded_base_is_held_back_and_no_tag_moves(cfg, cells, source):
    other = bootstrapped_build(CPU311)
    other.base_source = source
    plan = plan_publish(cfg, cells, select(cells, CPU311, CPU313), report(other, built(CPU313)), smoke(CPU311, CPU313))
    assert "--allow-bootstrapped-base" in dict(plan.held_back)[CPU311]
    assert {s.cell for s in plan.steps} == {CPU313} and not [s for s in plan.steps if s.kind == "moving"]


def test_allow_bootstrapped_base_publishes_it_and_the_report_says_which_base(cfg, cells):
    gates = publish_plan.Gates(allow_bootstrapped_base=True)
    plan = publish_plan.plan_publish(cfg, cells, select(cells, CPU311), report(bootstrapped_build(CPU311)), smoke(CPU311), gates=gates)
    assert plan.held_back == ()
    (base,) = {json.dumps(s.facts["base"], sort_keys=True) for s in plan.steps if s.kind != "moving"}
    assert json.loads(base) == {
        "source": "bootstrapped",
        "image": "kerastack-base/debian:bookworm-minbase-r2",
        "id": "",
        "suite": "bookworm",
        "mirror": "http://deb.debian.org/debian",
        "created": "",
    }
    dry = publish.execute(plan, None, dry_run=True, log=lambda m: None)
    assert dry.cells[CPU311]["base"]["source"] == "bootstrapped", "the publish report records the base"


def test_the_image_labels_say_where_its_base_came_from(sample_config, sample_cells):
    from kerastack import base_images, plan
    from kerastack.tags import BuildStamp

    base = base_images.BaseImage("kerastack-base/debian:bookworm-minbase-r2", base_images.BOOTSTRAPPED, reused=True)
    record = base_images.BaseRecord("sha256:" + "b" * 64, "bookworm", "http://deb.debian.org/debian", "2026-12-01T21:59:15Z")
    stamp = BuildStamp.at(__import__("datetime").datetime(2026, 11, 24), "abc1234")
    labels = dict(
        plan.plan_cell(sample_config, sample_cells, sample_cells[0], stamp, base.ref, "2026-11-24T00:00:00Z", base_images.labels(base, record)).labels
    )
    assert labels["io.kerastack.base.source"] == "bootstrapped"
    assert labels["io.kerastack.base.suite"] == "bookworm" and labels["io.kerastack.base.mirror"] == "http://deb.debian.org/debian"
    assert labels["io.kerastack.base.id"] == record.image_id and labels["io.kerastack.base.created"] == "2026-12-01T21:59:15Z"
