"""The smoke suite's report: one SmokeReport file per cell (kerastack.smoke_report), which publish reads.

With --smoke-report-dir (what `nox -s smoke` passes), every check of a cell is recorded with its outcome
and, for a skip, its reason, and whether it needs a GPU; at the end each cell's report is written with
the id of the image that was tested. The state lives in one plugin object, not in the test modules.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kerastack import smoke_report


class SmokeRecorder:
    def __init__(self, report_dir: Path) -> None:
        self.report_dir = report_dir
        self.checks: dict[str, list[smoke_report.Check]] = {}
        self.images: dict[str, tuple[str, str]] = {}  # cell -> (reference, image id) that was tested

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call):
        outcome = yield
        report = outcome.get_result()
        callspec = getattr(item, "callspec", None)
        cell = callspec.params.get("cell_id") if callspec is not None else None
        if not isinstance(cell, str):
            return
        built = item.funcargs.get("built_cell") if hasattr(item, "funcargs") else None
        if built is not None:
            self.images[cell] = (built.ref, built.image_id)
        result = ""
        if report.failed:
            result = "failed"
        elif report.when == "call" and report.passed:
            result = "passed"
        elif report.skipped:
            result = "skipped"
        if result:
            reason = report.longrepr[2] if result == "skipped" and isinstance(report.longrepr, tuple) else ""
            gpu = item.get_closest_marker("gpu") is not None  # needs a GPU to mean anything
            self.checks.setdefault(cell, []).append(smoke_report.Check(item.nodeid, result, reason.removeprefix("Skipped: "), gpu))

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        for cell, checks in self.checks.items():
            ref, image_id = self.images.get(cell, ("", ""))
            smoke_report.write(self.report_dir, smoke_report.SmokeReport(cell, ref, image_id, tuple(checks)))


def pytest_configure(config: pytest.Config) -> None:
    report_dir = config.getoption("--smoke-report-dir")
    if report_dir:
        config.pluginmanager.register(SmokeRecorder(Path(report_dir)), "kerastack-smoke-recorder")
