"""The release gate end to end: `python -m kerastack smoke` writes a typed smoke report per cell, and
`publish` decides from that file alone (here a dry run: nothing is pushed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from kerastack import smoke_report
from kerastack.build_report import BuildReport, write_build_report
from tests.conftest import ROOT
from tests.unit.conftest import SAMPLE

pytestmark = [pytest.mark.docker]
DEFAULT_CPU_CELL = "tf2.21.0-py3.11-cpu"


def kerastack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kerastack", *args], cwd=ROOT, capture_output=True, text=True, env=dict(os.environ), timeout=900)


def dry_run_publish(report_dir) -> subprocess.CompletedProcess[str]:
    """`publish --dry-run` of the default CPU cell from report_dir's build and smoke reports (no registry answers at 127.0.0.1:1).
    The matrix is the amd64-only copy (tests/unit/data/versions.toml): in the real one the cell's tags are shared with
    its arm64 twin, whose publish test_arm64.py walks; here one platform's gate is the point."""
    return kerastack(
        "--config",
        str(SAMPLE),
        "--registry",
        "127.0.0.1:1",
        "publish",
        f"id={DEFAULT_CPU_CELL}",
        "--report-dir",
        str(report_dir),
        "--dry-run",
        "--allow-dirty",
        "--allow-bootstrapped-base",
    )


@pytest.mark.parametrize("cell_id", [DEFAULT_CPU_CELL], scope="session")
def test_smoke_writes_the_report_publish_reads(built_cell, tmp_path):
    # One quick check of the suite is enough to walk the gate: the report names the tested image.
    result = kerastack("smoke", f"id={DEFAULT_CPU_CELL}", "--report-dir", str(tmp_path), "--pytest-args", "-q", "-k", "test_image_default_user")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == "", "pytest's progress belongs on stderr"
    (report,) = smoke_report.load(tmp_path, [DEFAULT_CPU_CELL]).values()
    assert report.ok and report.image_id == built_cell.image_id and report.count("passed") == 1
    assert json.loads(smoke_report.report_path(tmp_path, DEFAULT_CPU_CELL).read_text())["format"] == smoke_report.SMOKE_FORMAT

    write_build_report(BuildReport("test", "test", [DEFAULT_CPU_CELL], [built_cell.report]), tmp_path)
    planned = dry_run_publish(tmp_path)
    assert planned.returncode == 0, planned.stderr
    assert "would push 127.0.0.1:1/" in planned.stderr and "held back" not in planned.stderr

    # The same build with a failed check in its smoke report is held back, with the test's name.
    failed = smoke_report.SmokeReport(DEFAULT_CPU_CELL, report.image, report.image_id, (smoke_report.Check("tests/smoke/x.py::broken", "failed"),))
    smoke_report.write(tmp_path, failed)
    held = dry_run_publish(tmp_path)
    assert held.returncode == 1 and "held back tf2.21.0-py3.11-cpu: smoke tests failed: tests/smoke/x.py::broken" in held.stderr
