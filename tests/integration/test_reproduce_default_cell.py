"""Bit-identical rebuilds, for real: `python -m kerastack reproduce` builds the default CPU cell twice
from scratch (clean `git archive` exports, no layer cache) and every layer above the base must match.
Costs about two CPU builds; the two images it makes are removed by the command itself (checked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from python_on_whales import docker

from tests.conftest import ROOT

pytestmark = pytest.mark.docker
DEFAULT_CPU = "tf2.21.0-py3.11-cpu"


def test_two_clean_builds_of_the_default_cell_have_identical_layers(tmp_path, docker_engine, project_config):
    throwaway = [f"{project_config.image}:reproduce-{DEFAULT_CPU}-{n}" for n in (1, 2)]
    result = subprocess.run(
        [sys.executable, "-m", "kerastack", "reproduce", "--report-dir", str(tmp_path), f"id={DEFAULT_CPU}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ),
    )
    report = json.loads((tmp_path / "reproduce.json").read_text())
    (cell,) = report["cells"]
    differing = [(layer["index"], layer["created_by"], layer["fields"], layer["differences"][:5]) for layer in cell["layers"] if not layer["identical"]]
    assert result.returncode == 0, f"layers differ: {differing}\n{result.stderr[-3000:]}"
    assert report["ok"] is True and cell["ok"] is True and cell["error"] == ""
    # Every layer the Dockerfile makes (OS packages, venv, TensorFlow, Jupyter, images/bin) is compared.
    assert cell["layers_above_base"] >= 5 and cell["identical_layers"] == cell["layers_above_base"]
    # On BuildKit < 0.11 only the config's times may differ; on newer builders nothing may.
    for difference in cell["config_differences"]:
        assert difference["path"] == "created" or difference["path"].endswith("].created"), difference
    # stdout is the result alone: one line for the cell; progress went to stderr.
    assert result.stdout.splitlines() == [line for line in result.stdout.splitlines() if line.startswith(f"{DEFAULT_CPU}: identical")]
    assert len(result.stdout.splitlines()) == 1
    assert "two builds from scratch" in result.stderr
    assert (tmp_path / "reproduce.md").read_text().count(f"| {DEFAULT_CPU} | identical |") == 1
    assert not [ref for ref in throwaway if docker.image.exists(ref)], "the command left its two images behind"
