"""Every file the pipeline reads back (a published manifest, lock.json, the build, smoke and publish
reports) is validated like versions.toml: random JSON and random bytes give a result or one clear error,
exit 2, never a traceback. Each command runs in-process through `cli.main`, as a user would run it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kerastack import cli
from kerastack.build_report import BuildReport, CellReport, write_build_report
from tests.unit.conftest import LOCKED, SAMPLE

CELL = "tf2.21.0-py3.11-cpu"
PROPERTY = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

_KEYS = st.sampled_from(["cell", "cells", "python_packages", "name", "version", "group", "groups", "files", "fingerprint", "pushed", "tags",
                         "digest", "image_id", "status", "checks", "outcome", "ok", "moved", "held_back", "not_moved", CELL, "base", "x"])  # fmt: skip
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**20), max_value=10**20), st.floats(allow_nan=False), st.text(max_size=20),
                     st.sampled_from(["sha256:" + "a" * 64, "venv", "built", "passed", CELL, "2.21.0"]))  # fmt: skip
JSON = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS | st.text(max_size=8), inner, max_size=5), max_leaves=25)
CONTENT = st.one_of(JSON.map(lambda doc: json.dumps(doc).encode()), st.binary(max_size=400), st.just(b"[" * 50_000), st.just(b"\xff\xfe{}"))


def run(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    if code == 2:
        assert "error:" in err, err
    return code, err


def fresh(tmp_path_factory, name: str) -> Path:
    return tmp_path_factory.mktemp(name)


@PROPERTY
@given(CONTENT)
def test_changes_manifest(tmp_path_factory, capsys, content):
    manifest = fresh(tmp_path_factory, "manifest") / "manifest.json"
    manifest.write_bytes(content)
    code, _ = run(capsys, "--project-dir", str(LOCKED), "changes", "--manifest", str(manifest), f"id={CELL}")
    assert code in (0, 2)


@PROPERTY
@given(CONTENT)
def test_lock_json(tmp_path_factory, capsys, content):
    project = fresh(tmp_path_factory, "locked") / "p"
    shutil.copytree(LOCKED, project, symlinks=True)  # shared lock groups are relative links
    (project / "locks" / CELL / "lock.json").write_bytes(content)
    code, err = run(capsys, "--project-dir", str(project), "lock", "--check")
    assert code == 2 and CELL in err
    code, _ = run(capsys, "--project-dir", str(project), "changes", f"id={CELL}")
    assert code in (0, 2)


@PROPERTY
@given(CONTENT)
def test_build_report(tmp_path_factory, capsys, content):
    reports = fresh(tmp_path_factory, "reports")
    (reports / "build-report.json").write_bytes(content)
    code, _ = run(capsys, "--project-dir", str(LOCKED), "--config", str(SAMPLE), "publish", "--report-dir", str(reports), "--dry-run")
    assert code in (1, 2)


@PROPERTY
@given(CONTENT)
def test_smoke_report(tmp_path_factory, capsys, content):
    reports = fresh(tmp_path_factory, "reports")
    cell = CellReport(CELL, "built", tags=[f"ghcr.io/kerastack/keras-jupyter:{CELL[2:]}-20261124-abc1234"], image_id="sha256:" + "a" * 64)
    write_build_report(BuildReport("abc1234", "now", [CELL], [cell]), reports)
    (reports / "smoke").mkdir()
    (reports / "smoke" / f"{CELL}.json").write_bytes(content)
    code, _ = run(capsys, "--project-dir", str(LOCKED), "--config", str(SAMPLE), "publish", "--report-dir", str(reports), "--dry-run", f"id={CELL}")
    assert code in (1, 2)


@PROPERTY
@given(CONTENT)
def test_publish_report(tmp_path_factory, capsys, content):
    reports = fresh(tmp_path_factory, "reports")
    (reports / "publish-report.json").write_bytes(content)
    for command in ("summary", "digests", "sboms"):
        code, _ = run(capsys, "--project-dir", str(LOCKED), "--config", str(SAMPLE), command, "--report-dir", str(reports))
        assert code in (0, 2)
    code, _ = run(capsys, "--project-dir", str(LOCKED), "--config", str(SAMPLE), "publish", "--stage", "moving", "--report-dir", str(reports), "--dry-run")
    assert code in (0, 1, 2)


@pytest.mark.parametrize(
    "report",
    [
        {"cells": {CELL: {"pushed": True, "tags": ["[bold]x[/]"], "digest": "sha256:" + "a" * 64, "size": "big"}}},
        {"cells": {CELL: {"pushed": True, "tags": ["x"], "digest": "sha256:" + "a" * 64, "gpu_op_on_gpu": []}}},
        {"cells": {CELL: {"pushed": True, "tags": ["x"], "digest": "sha256:zz"}}},
        {"cells": {"": {"pushed": True, "tags": ["x"], "digest": "sha256:" + "a" * 64}}},
    ],
)
def test_publish_reports_with_odd_fields_are_refused_or_summarised(tmp_path, capsys, report):
    (tmp_path / "publish-report.json").write_text(json.dumps(report))
    for command in ("summary", "digests"):
        code, _ = run(capsys, "--project-dir", str(LOCKED), "--config", str(SAMPLE), command, "--report-dir", str(tmp_path))
        assert code in (0, 2)


def _cell(**fields) -> dict:
    return {
        "cell": CELL,
        "status": "built",
        "tags": [f"ghcr.io/kerastack/keras-jupyter:{CELL[2:]}-20261124-abc1234"],
        "image_id": "sha256:" + "a" * 64,
    } | fields


@pytest.mark.parametrize(
    "cell",
    [
        _cell(tags="ghcr.io/x:y"),
        _cell(tags=[1]),
        _cell(image_id=5),
        _cell(status=True),
        _cell(layers=[["sha256:a"]]),
        _cell(layers="x"),
        _cell(size="big"),
        _cell(base_source=["pulled"]),
        _cell(cell=["x"]),
        _cell(seconds="fast"),
        _cell(moving_tags={"a": 1}),
    ],
)
def test_build_reports_with_fields_of_the_wrong_type_are_one_clear_error(tmp_path, capsys, cell):
    (tmp_path / "build-report.json").write_text(json.dumps({"revision": "abc1234", "created": "now", "filter_cells": [CELL], "cells": [cell]}))
    code, err = run(capsys, "--project-dir", str(LOCKED), "--config", str(SAMPLE), "publish", "--report-dir", str(tmp_path), "--dry-run", f"id={CELL}")
    assert code == 2 and "build report" in err
