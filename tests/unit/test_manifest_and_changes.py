"""Manifests (JSON, Markdown, CycloneDX) and `changes`: pure logic, no Docker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kerastack import changes, cli, contract, manifest
from kerastack.changes import Change
from kerastack.errors import PipelineError

ROOT = Path(__file__).resolve().parents[2]


def sample_manifest(**image) -> dict:
    in_image = {
        "manifest_format": 1,
        "cell": "tf2.21.0-py3.11-cpu",
        "variant": "cpu",
        "base_image": "kerastack-base/debian:bookworm-minbase",
        "versions": {
            "python": "3.11.2",
            "tensorflow": "2.21.0",
            "keras": "3.12.4",
            "cuda": None,
            "cuda_runtime": None,
            "cudnn": None,
            "tensorflow_built_with": {"cuda": "12.5", "cudnn": "9.3"},
        },
        "python_packages": [
            {"name": "pip", "version": "23.0.1", "group": "venv"},
            {"name": "tensorflow-cpu", "version": "2.21.0", "group": "tensorflow"},
            {"name": "numpy", "version": "2.4.6", "group": "tensorflow"},
            {"name": "pandas", "version": "3.1.1", "group": "science"},
            {"name": "jupyterlab", "version": "4.6.6", "group": "jupyter"},
        ],
        "debian_packages": [{"name": "git", "version": "1:2.39.5-0+deb12u2", "architecture": "amd64"}],
        "locks": "/usr/share/kerastack/locks",
    }
    if not image:
        return in_image
    defaults = {"image_id": "sha256:" + "ab" * 32, "tags": ["r/x:2.21.0-py3.11-cpu-20261125-abc1234", "r/x:2.21.0-py3.11-cpu"], "size": 1_700_000_000}
    defaults |= {"os_layer_size": 90_000_000, "revision": "abc1234", "created": "2026-11-25T12:00:00Z"}
    return manifest.with_image(in_image, **(defaults | image))


# ---------------------------------------------------------------- manifest


def test_facts_of_a_gpu_cell(sample_config, sample_cells_by_id):
    facts = manifest.facts(sample_config, sample_cells_by_id["tf2.21.0-py3.13-gpu-cuda12.9"], "base@sha256:x")
    assert facts["expected"] == {"tensorflow": "2.21.0", "keras": "3.12.4", "cuda_runtime": "12.9.79"}
    assert facts["cuda"] == {"version": "12.9", "cudnn": "9.10"} and facts["base_image"] == "base@sha256:x"


def test_facts_of_a_cpu_cell_have_no_cuda(sample_config, sample_cells_by_id):
    facts = manifest.facts(sample_config, sample_cells_by_id["tf2.20.0-py3.11-cpu"], "b")
    assert facts["cuda"] is None and "cuda_runtime" not in facts["expected"]
    assert facts["expected"]["keras"] == "3.11.3"


def test_markdown_lists_versions_packages_and_size():
    md = manifest.to_markdown(sample_manifest(image_id="sha256:1"))
    assert md.startswith("# tf2.21.0-py3.11-cpu\n")
    for row in ("| Python | 3.11.2 |", "| TensorFlow | 2.21.0 |", "| Keras | 3.12.4 |", "| CUDA | – (CPU) |", "| size | 1.70 GB |"):
        assert row in md
    assert "| pandas | 3.1.1 | science |" in md and "| git | 1:2.39.5-0+deb12u2 | amd64 |" in md
    assert contract.MANIFEST_PATH in md


def test_cyclonedx_sbom_has_every_package_with_a_purl_and_is_deterministic():
    m = sample_manifest(image_id="sha256:1")
    text = manifest.to_cyclonedx(m)
    assert text == manifest.to_cyclonedx(m)  # same image, same bytes (serial number included)
    bom = json.loads(text)
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"
    purls = {c["purl"] for c in bom["components"]}
    assert "pkg:pypi/pandas@3.1.1" in purls and "pkg:deb/debian/git@1:2.39.5-0%2Bdeb12u2?arch=amd64" in purls
    assert len(bom["components"]) == len(m["python_packages"]) + len(m["debian_packages"])
    meta = bom["metadata"]
    assert meta["component"]["type"] == "container" and meta["component"]["name"] == "r/x"
    assert meta["component"]["version"] == "2.21.0-py3.11-cpu-20261125-abc1234"
    assert meta["timestamp"].startswith("2026-11-25T12:00:00")
    assert manifest.to_cyclonedx(sample_manifest(image_id="sha256:2")) != text


def test_rendered_files_are_named_after_the_cell():
    files = manifest.rendered(sample_manifest(image_id="sha256:1"))
    assert sorted(files) == ["tf2.21.0-py3.11-cpu.cdx.json", "tf2.21.0-py3.11-cpu.json", "tf2.21.0-py3.11-cpu.md"]
    assert json.loads(files["tf2.21.0-py3.11-cpu.json"])["image"]["size"] == 1_700_000_000


def test_write_manifest_script_is_deterministic_python(tmp_path):
    """images/builder/write-manifest on this machine's Python: groups, facts check, locks copied."""
    site = tmp_path / "groups" / "science" / "lib" / "python3.11" / "site-packages" / "pandas-3.1.1.dist-info"
    site.mkdir(parents=True)
    (site / "METADATA").write_text("Metadata-Version: 2.1\nName: pandas\nVersion: 3.1.1\n")
    locks = tmp_path / "lock"
    locks.mkdir()
    (locks / "science.txt").write_text("pandas==3.1.1\n")
    facts = {"cell": "c", "variant": "cpu", "base_image": "b", "cuda": None, "tensorflow_built_with": {"cuda": "12.5", "cudnn": "9.3"}}
    script = ROOT / "images" / "builder" / "write-manifest"

    def run(expected: dict, out: Path) -> subprocess.CompletedProcess:
        env = {"MANIFEST_FACTS": json.dumps(facts | {"expected": expected}), "PATH": "/usr/bin:/bin", "LOCK_GROUPS": " ".join(contract.LOCK_GROUPS)}
        return subprocess.run([sys.executable, str(script), str(out), str(tmp_path / "groups"), str(locks)], env=env, capture_output=True, text=True)

    if run({}, tmp_path / "out1").returncode != 0 and "dpkg-query" in run({}, tmp_path / "out1").stderr:
        pytest.skip("dpkg-query is not installed (not a Debian host)")
    assert run({}, tmp_path / "out2").returncode == 0
    first, second = ((tmp_path / d / "manifest.json").read_text() for d in ("out1", "out2"))
    assert first == second
    data = json.loads(first)
    assert {"name": "pandas", "version": "3.1.1", "group": "science"} in data["python_packages"]
    assert (tmp_path / "out1" / "locks" / "science.txt").read_text() == "pandas==3.1.1\n"
    refused = run({"tensorflow": "2.21.0"}, tmp_path / "out3")
    assert refused.returncode != 0 and "does not hold what versions.toml says" in refused.stderr


# ---------------------------------------------------------------- changes


def test_change_kinds():
    assert Change("a", None, "1").kind == "added"
    assert Change("a", "1", None).kind == "removed"
    assert Change("a", "1.9", "1.10").kind == "upgraded"  # by PEP 440, not by string
    assert Change("a", "2.0", "2.0rc1").kind == "downgraded"
    assert Change("a", "1:2.3-1", "1:2.4-1").kind == "changed"  # not PEP 440: no direction guessed


def test_diff_leaves_out_unchanged_and_orders_by_kind_then_name():
    result = changes.diff({"keep": "1", "old": "1", "up": "1", "down": "2"}, {"keep": "1", "new": "1", "up": "2", "down": "1", "another": "3"})
    assert [(c.kind, c.name) for c in result] == [("added", "another"), ("added", "new"), ("removed", "old"), ("upgraded", "up"), ("downgraded", "down")]
    assert changes.diff({"a": "1"}, {"a": "1"}) == ()


def test_comparisons_against_the_previous_release_and_a_manifest(sample_cells, sample_cells_by_id):
    locks = {"tf2.20.0-py3.11-cpu": {"tensorflow-cpu": "2.20.0", "tensorboard": "2.20.0"}, "tf2.21.0-py3.11-cpu": {"tensorflow-cpu": "2.21.0"}}
    selected = [sample_cells_by_id["tf2.20.0-py3.11-cpu"], sample_cells_by_id["tf2.21.0-py3.11-cpu"]]
    result = changes.comparisons(selected, sample_cells, lambda cell: locks[cell.id], ("m.json", "tf2.21.0-py3.11-cpu", {"tensorflow-cpu": "2.21.0"}))
    first, first_manifest, second, second_manifest = result
    assert first.changes is None and "no earlier TensorFlow release of Python 3.11 cpu" in first.note
    assert changes.summary_line(first).startswith("tf2.20.0-py3.11-cpu: no earlier")
    assert second.baseline == "tf2.20.0-py3.11-cpu"
    assert [(c.kind, c.name, c.old, c.new) for c in second.changes] == [
        ("removed", "tensorboard", "2.20.0", None),
        ("upgraded", "tensorflow-cpu", "2.20.0", "2.21.0"),
    ]
    assert changes.summary_line(second) == "tf2.21.0-py3.11-cpu vs tf2.20.0-py3.11-cpu: 1 removed, 1 upgraded"
    assert second_manifest.changes == () and "m.json" in second_manifest.baseline
    assert changes.summary_line(second_manifest).endswith("no package changed")
    assert [(c.kind, c.name) for c in first_manifest.changes] == [("added", "tensorboard"), ("downgraded", "tensorflow-cpu")]


def test_gpu_cell_without_an_older_gpu_release_says_so(sample_cells, sample_cells_by_id):
    (result,) = changes.comparisons([sample_cells_by_id["tf2.21.0-py3.11-gpu-cuda12.9"]], sample_cells, lambda cell: {})
    assert result.changes is None and "Python 3.11 gpu CUDA 12.9" in result.note


def test_the_gpu_pair_compares_with_the_older_release_of_the_same_cuda(sample_cells, sample_cells_by_id):
    (result,) = changes.comparisons([sample_cells_by_id["tf2.21.0-py3.11-gpu-cuda12.5"]], sample_cells, lambda cell: {})
    assert result.baseline == "tf2.20.0-py3.11-gpu-cuda12.5" and result.changes == ()


def test_markdown_summary():
    comparison = changes.Comparison("c2", "c1", (Change("a", "1", "2"),))
    md = changes.to_markdown([comparison, changes.Comparison("c1", "", None, "no earlier release")])
    assert "### c2 vs c1: 1 upgraded\n\n| change | package | from | to |\n|---|---|---|---|\n| upgraded | a | 1 | 2 |" in md
    assert "### c1: no earlier release" in md


def test_manifest_packages_skip_the_venv_tools():
    cell, packages = changes.manifest_packages(sample_manifest(), "m.json")
    assert cell == "tf2.21.0-py3.11-cpu" and "pip" not in packages and packages["pandas"] == "3.1.1"


@pytest.mark.parametrize("text", ["not json", "{}", '{"cell": "c", "python_packages": [{"name": "x"}]}', "[]", "\xff\xfe", "[" * 100_000])
def test_a_bad_manifest_is_one_clear_error(text, tmp_path):
    path = tmp_path / "m.json"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(PipelineError, match="m.json: .*not"):
        changes.read_manifest(path)


# ---------------------------------------------------------------- the command


def test_changes_command_prints_the_2_20_to_2_21_diff(locked_project, capsys):
    assert cli.main(["--project-dir", str(locked_project), "changes", "variant=cpu", "python=3.11"]) == 0
    out = capsys.readouterr().out
    assert "tf2.20.0-py3.11-cpu: no earlier TensorFlow release" in out
    assert "tf2.21.0-py3.11-cpu vs tf2.20.0-py3.11-cpu:" in out
    assert "tensorflow-cpu" in out and "2.20.0" in out and "2.21.0" in out and "upgraded" in out


def test_changes_command_against_a_manifest_file(locked_project, tmp_path, capsys):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(sample_manifest()))
    assert cli.main(["--project-dir", str(locked_project), "changes", "id=tf2.21.0-py3.11-cpu", "--manifest", str(path), "--markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("## What changed\n")
    assert f"### tf2.21.0-py3.11-cpu vs the manifest of tf2.21.0-py3.11-cpu ({path})" in out


def test_changes_command_refuses_a_missing_manifest(locked_project, tmp_path, capsys):
    assert cli.main(["--project-dir", str(locked_project), "changes", "id=tf2.21.0-py3.11-cpu", "--manifest", str(tmp_path / "nope.json")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "cannot read a kerastack manifest" in captured.err


def test_sboms_command_pairs_digests_with_sboms_and_refuses_a_missing_one(tmp_path, capsys):
    cell_dir = tmp_path / "publish-tf2.21.0-py3.11-cpu"
    (cell_dir / "manifests").mkdir(parents=True)
    entry = {"pushed": True, "tags": ["ghcr.io/o/k:2.21.0-py3.11-cpu-20261125-abc1234"], "digest": "sha256:" + "cd" * 32, "size": 1}
    (cell_dir / "publish-report.json").write_text(json.dumps({"cells": {"tf2.21.0-py3.11-cpu": entry}}))
    assert cli.main(["sboms", "--reports", str(tmp_path)]) == 2
    assert "tf2.21.0-py3.11-cpu.cdx.json does not exist" in capsys.readouterr().err
    (cell_dir / "manifests" / "tf2.21.0-py3.11-cpu.cdx.json").write_text("{}")
    assert cli.main(["sboms", "--reports", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"ghcr.io/o/k@sha256:{'cd' * 32} {cell_dir / 'manifests' / 'tf2.21.0-py3.11-cpu.cdx.json'}\n"


# ---------------------------------------------------------------- README's package list
def test_the_readme_package_list_is_the_default_cpu_cells_lock():
    """README.md's generated block equals what `python -m kerastack readme` renders from the committed lock."""
    from kerastack import config as config_module
    from kerastack import lock_plan, matrix

    root = Path(__file__).resolve().parents[2]
    cfg = config_module.load(root / "versions.toml")
    cell = matrix.default_cell(cfg, "cpu", matrix.cells(cfg))
    block = manifest.packages_markdown(cell.id, lock_plan.read_meta(lock_plan.lock_dir(root, cell)))
    readme = (root / "README.md").read_text()
    assert manifest.with_readme_block(readme, block) == readme, "README.md's package list is stale: run `python -m kerastack readme`"


def test_the_package_list_bolds_what_versions_toml_asks_for_in_layer_order():
    record = {
        "inputs": {"requirements": ["tensorflow-cpu==2.21.0", "pandas>=2.2,<4", "pip"]},
        "groups": {
            "jupyter": {},
            "science": {"pandas": "3.0.1", "six": "1.17.0"},
            "tensorflow": {"tensorflow-cpu": "2.21.0"},
            "venv": {"pip": "26.3"},
            "cuda": {},
        },
    }
    block = manifest.packages_markdown("c", record)
    lines = [line for line in block.splitlines() if line.startswith("- ")]
    assert [line.split("(`")[1].split("`")[0] for line in lines] == ["venv", "tensorflow", "science"]
    assert "**pandas** 3.0.1, six 1.17.0" in block
    with pytest.raises(PipelineError, match="no generated package block"):
        manifest.with_readme_block("no markers", block)
