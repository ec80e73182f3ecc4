"""The publish plan: what is pushed, in which order, and what is held back. No Docker."""

from __future__ import annotations

import pytest
from python_on_whales import DockerException

from kerastack import config, matrix, publish
from kerastack.errors import PipelineError
from kerastack.report import BuildReport, CellReport
from tests.conftest import ROOT

CPU311, CPU313, GPU = "tf2.21.0-py3.11-cpu", "tf2.21.0-py3.13-cpu", "tf2.21.0-py3.11-gpu-cuda12.5"


@pytest.fixture(scope="module")
def cfg():
    return config.load(ROOT / "versions.toml")


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
    )


def smoke(*ids: str, failed: tuple[str, ...] = ()) -> dict:
    result = {c: {"ok": True, "image_id": f"sha256:{c}", "failed": []} for c in ids}
    for c in failed:
        result[c] = {"ok": False, "image_id": f"sha256:{c}", "failed": [f"tests/smoke/test_image.py::x[{c}]"]}
    return {"cells": result}


def report(*cell_reports: CellReport) -> BuildReport:
    return BuildReport("abc1234", "now", [c.cell for c in cell_reports], list(cell_reports))


def test_all_passed_pushes_immutable_then_cell_then_moving(cfg, cells):
    plan = publish.plan_publish(cfg, cells, select(cells, CPU311, CPU313), report(built(CPU311), built(CPU313)), smoke(CPU311, CPU313))
    kinds = [s.kind for s in plan.steps]
    assert kinds == ["immutable", "immutable", "cell", "cell", "moving", "moving"]
    assert {s.ref.rsplit(":", 1)[1] for s in plan.steps if s.kind == "moving"} == {"latest", "2.21-cpu"}
    assert all(s.cell == CPU311 for s in plan.steps if s.kind == "moving")
    assert plan.held_back == () and plan.moving_held_back == ""


def test_a_cell_that_failed_smoke_is_not_pushed_and_no_tag_moves(cfg, cells):
    plan = publish.plan_publish(cfg, cells, select(cells, CPU311, CPU313), report(built(CPU311), built(CPU313)), smoke(CPU313, failed=(CPU311,)))
    assert {s.cell for s in plan.steps} == {CPU313}
    assert not [s for s in plan.steps if s.kind == "moving"]
    assert dict(plan.held_back)[CPU311].startswith("smoke tests failed")
    assert "not ready" in plan.moving_held_back


@pytest.mark.parametrize(
    "build, smoked, reason",
    [
        (report(), smoke(CPU311), "not built in this run"),
        (report(CellReport.failed(CPU311, "boom")), smoke(CPU311), "build failed: boom"),
        (report(built(CPU311)), {"cells": {}}, "no smoke test result"),
        (report(built(CPU311)), {"cells": {CPU311: {"ok": True, "image_id": "sha256:other"}}}, "not the built one"),
        (report(built(CPU311, "abc1234-dirty")), smoke(CPU311), "uncommitted changes"),
    ],
)
def test_held_back_with_the_reason(cfg, cells, build, smoked, reason):
    plan = publish.plan_publish(cfg, cells, select(cells, CPU311), build, smoked)
    assert plan.steps == ()
    assert reason in dict(plan.held_back)[CPU311]


def test_dirty_builds_publish_only_when_allowed(cfg, cells):
    plan = publish.plan_publish(cfg, cells, select(cells, CPU311), report(built(CPU311, "abc1234-dirty")), smoke(CPU311), allow_dirty=True)
    assert [s.kind for s in plan.steps] == ["immutable", "cell", "moving", "moving"]


def test_targets_follow_the_configured_registry(cfg, cells):
    local = config.with_registry(cfg, "127.0.0.1:5000", "team/keras")
    plan = publish.plan_publish(local, cells, select(cells, CPU311), report(built(CPU311)), smoke(CPU311))
    assert all(s.ref.startswith("127.0.0.1:5000/team/keras:") for s in plan.steps)
    assert all(s.source == f"sha256:{CPU311}" for s in plan.steps), "publish pushes the tested image by id"


def test_stage_cells_moves_nothing(cfg, cells):
    plan = publish.plan_publish(cfg, cells, select(cells, CPU311), report(built(CPU311)), smoke(CPU311), move_tags=False)
    assert [s.kind for s in plan.steps] == ["immutable", "cell"]


def test_a_filtered_publish_only_moves_tags_its_cells_own(cfg, cells):
    plan = publish.plan_publish(cfg, cells, select(cells, CPU313), report(built(CPU313)), smoke(CPU313))
    assert [s.kind for s in plan.steps] == ["immutable", "cell"], "py3.13 owns no moving tag; latest stays on py3.11"


def test_moving_from_reports_needs_every_selected_cell(cfg, cells):
    reports = [{"cells": {CPU311: {"pushed": True, "digest": "sha256:aa"}}}, {"cells": {GPU: {"pushed": False, "digest": ""}}}]
    held = publish.plan_moving_from_reports(cfg, cells, select(cells, CPU311, GPU), reports)
    assert held.steps == () and GPU in dict(held.held_back)
    reports[1]["cells"][GPU] = {"pushed": True, "digest": "sha256:bb"}
    plan = publish.plan_moving_from_reports(cfg, cells, select(cells, CPU311, GPU), reports)
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


def test_registry_credentials_must_come_in_pairs():
    with pytest.raises(PipelineError, match="REGISTRY_USER and REGISTRY_PASSWORD"), publish.registry_client("127.0.0.1:5000", {"REGISTRY_USER": "me"}):
        pass
