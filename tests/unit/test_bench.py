"""The pure parts of `nox -s bench`: alternation, medians, ratios and the report (no Docker)."""

from __future__ import annotations

import json

import pytest

from kerastack.bench import BenchReport, Comparison, alternate
from tests.conftest import ROOT
from tests.unit.conftest import SAMPLE


def test_alternate_swaps_the_order_every_round():
    calls = []
    a, b = alternate(4, lambda: calls.append("a") or 1.0, lambda: calls.append("b") or 2.0)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert (a, b) == ([1.0] * 4, [2.0] * 4)


def test_comparison_uses_medians():
    c = Comparison("start", "launcher", "floor", [2.6, 2.5, 9.0, 2.4, 2.55], [2.3, 2.2, 2.25, 8.0, 2.4], 1.15)
    assert c.measured_median == 2.55 and c.floor_median == 2.3
    assert c.ratio == pytest.approx(2.55 / 2.3)
    assert c.within_target


def test_report_markdown_and_json():
    report = BenchReport("img:1", 5, "2026-11-25T12:00:00Z")
    report.comparisons = [
        Comparison("start to URL", "launcher", "docker run", [2.5] * 5, [2.4] * 5, 1.15),
        Comparison("import", "fresh", "compiled", [3.0] * 5, [2.4] * 5, 1.1),
    ]
    assert not report.ok
    md = report.to_markdown()
    assert "| start to URL | launcher | 2.50 | docker run | 2.40 | 1.04× | ≤ 1.15× | ✓ |" in md
    assert "| import | fresh | 3.00 | compiled | 2.40 | 1.25× | ≤ 1.10× | ✗ over target |" in md
    data = json.loads(report.to_json())
    assert [c["within_target"] for c in data["comparisons"]] == [True, False]
    assert data["comparisons"][1]["ratio"] == 1.25


def test_fewer_than_five_runs_is_refused_before_touching_docker(tmp_path, capsys, monkeypatch):
    from kerastack import cli

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")  # the engine is never asked
    assert cli.main(["--project-dir", str(ROOT), "--config", str(SAMPLE), "bench", "--runs", "3"]) == 2
    assert "at least 5" in capsys.readouterr().err
