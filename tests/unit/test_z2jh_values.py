"""deploy/jupyterhub/config.yaml, the zero-to-jupyterhub values file, checked offline.

No cluster runs here, so the Helm path is checked two ways: against the keys, types and allowed values of
the chart's values schema that the file uses (written down in tests/unit/data/z2jh-4.4.0-values-subset.json,
naming the chart version), and against the image contract and versions.toml (image names, UID, home).
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from kerastack import config, contract, matrix, tags

ROOT = Path(__file__).resolve().parents[2]
VALUES = ROOT / "deploy" / "jupyterhub" / "config.yaml"
SCHEMA = Path(__file__).resolve().parent / "data" / "z2jh-4.4.0-values-subset.json"


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load(VALUES.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def schema() -> dict:
    loaded = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(loaded)
    assert "4.4.0" in loaded["$comment"], "the schema subset must name the chart version it comes from"
    return loaded


def errors(schema: dict, values: dict) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(values)]


def test_config_yaml_uses_only_what_the_chart_accepts(schema, values):
    assert errors(schema, values) == []


@pytest.mark.parametrize(
    "path, bad, expected",
    [
        (("singleuser", "storage", "type"), "persistent", "is not one of"),
        (("singleuser", "uid"), "1000", "is not of type"),
        (("singleuser", "notebookDir"), "/home/keras", "Additional properties"),  # not a key of the 4.4.0 chart
        (("singleuser", "image", "pullPolicy"), "Sometimes", "is not one of"),
        (("hub", "config", "kubeSpawner"), {}, "does not match any of the regexes"),
    ],
)
def test_the_check_fails_on_what_the_chart_refuses(schema, values, path, bad, expected):
    edited = json.loads(json.dumps(values))
    node = edited
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = bad
    found = errors(schema, edited)
    assert any(expected in e for e in found), found


def test_images_and_user_match_the_project(values):
    project = config.load(ROOT / "versions.toml")
    cells = matrix.cells(project)
    single = values["singleuser"]
    cpu, gpu = (matrix.default_cell(project, variant, cells) for variant in ("cpu", "gpu"))
    assert single["image"]["name"] == project.image
    assert single["image"]["tag"] == tags.cell_tag(cpu), "the CPU choice is the default CPU cell, by its cell tag"
    assert (single["uid"], single["fsGid"]) == (contract.UID, contract.GID)
    assert single["storage"]["homeMountPath"] == contract.HOME
    assert values["hub"]["config"]["KubeSpawner"]["notebook_dir"] == contract.HOME, "notebook root = the persisted home, as under DockerSpawner"
    assert single["cmd"] == "jupyterhub-singleuser"
    profiles = {p["slug"]: p for p in single["profileList"]}
    assert set(profiles) == {"cpu", "gpu"} and profiles["cpu"].get("default") is True
    override = profiles["gpu"]["kubespawner_override"]
    assert override["image"] == f"{project.image}:{tags.cell_tag(gpu)}"
    assert override["extra_resource_limits"] == {"nvidia.com/gpu": "1"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in override["tolerations"]
