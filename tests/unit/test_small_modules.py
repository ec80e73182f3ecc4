"""report, layers (pure parts), ca and EngineStatus.problem()."""

from __future__ import annotations

from pathlib import Path

import pytest

from kerastack import build_report as report
from kerastack import ca, layers
from kerastack.build_report import BuildReport, CellReport
from kerastack.engine import EngineStatus
from kerastack.errors import EngineError, PipelineError

# ---------------------------------------------------------------- report


def sample_report() -> BuildReport:
    built = CellReport(
        cell="tf2.21.0-py3.11-cpu",
        status="built",
        tags=["ghcr.io/kerastack/keras-jupyter:2.21.0-py3.11-cpu-20261124-a1b2c3d", "ghcr.io/kerastack/keras-jupyter:2.21.0-py3.11-cpu"],
        moving_tags=["ghcr.io/kerastack/keras-jupyter:latest"],
        image_id="sha256:" + "f" * 64,
        size=1_500_000_000,
        seconds=123.4,
        cached_steps=7,
        total_steps=12,
        base_image="python:3.11-slim",
        base_source="official",
        layers=[("sha256:aa", 100), ("sha256:bb", 2_000_000)],
        shared_bytes=2_000_000,
        shared_with=["tf2.21.0-py3.13-cpu"],
        upgrade_from="tf2.20.0-py3.11-cpu",
        upgrade_download_bytes=350_000_000,
        naive_size=2_000_000_000,
        naive_seconds=300.0,
    )
    failed = CellReport.failed("tf2.21.0-py3.11-gpu-cuda12.5", "base image: pull access denied", seconds=4.26, log_file="logs/x.log")
    return BuildReport(
        revision="a1b2c3d", created="2026-11-24T12:00:00Z", filter_cells=["tf2.21.0-py3.11-cpu", "tf2.21.0-py3.11-gpu-cuda12.5"], cells=[built, failed]
    )


def test_failed_cell_report():
    failed = CellReport.failed("c", "boom", seconds=4.26, log_file="l.log")
    assert (failed.status, failed.error, failed.seconds, failed.log_file, failed.tags) == ("failed", "boom", 4.3, "l.log", [])


def test_build_report_json_round_trip():
    original = sample_report()
    text = original.to_json()
    assert text.endswith("}\n")
    back = BuildReport.from_json(text)
    assert back == original
    assert back.cells[0].layers == [("sha256:aa", 100), ("sha256:bb", 2_000_000)]
    assert isinstance(back.cells[0].layers[0], tuple)
    assert back.to_json() == text


def test_build_report_ok():
    r = sample_report()
    assert r.ok is False
    r.cells = r.cells[:1]
    assert r.ok is True


def test_write_and_load_build_report(tmp_path):
    original = sample_report()
    json_path, md_path = report.write_build_report(original, tmp_path / "out")
    assert (json_path.name, md_path.name) == ("build-report.json", "build-report.md")
    assert report.load_build_report(tmp_path / "out") == original
    assert md_path.read_text() == report.to_markdown(original)


def test_markdown():
    md = report.to_markdown(sample_report())
    assert md.startswith("# Build report (2026-11-24T12:00:00Z, revision a1b2c3d)\n")
    rows = [line for line in md.splitlines() if line.startswith("| tf")]
    assert len(rows) == 2
    built, failed = rows
    assert built == (
        "| tf2.21.0-py3.11-cpu | linux/amd64 | built | 1.50 GB | 2.00 GB (25% saved) | 2.00 MB | 350.00 MB from tf2.20.0-py3.11-cpu | 123 | 7/12 | "
        "`2.21.0-py3.11-cpu-20261124-a1b2c3d`<br>`2.21.0-py3.11-cpu`<br>`latest` |"
    )
    assert failed == "| tf2.21.0-py3.11-gpu-cuda12.5 | linux/amd64 | **failed**: base image: pull access denied | | | | | 4 | | |"


def test_markdown_without_naive_or_upgrade():
    cell = CellReport(cell="tf2.20.0-py3.11-cpu", status="built", size=999)
    md = report.to_markdown(BuildReport("r", "t", [], [cell]))
    assert "| tf2.20.0-py3.11-cpu | linux/amd64 | built | 999 B | – | – | – | 0 | 0/0 |  |" in md
    cell.naive_size = 0  # no division by zero
    assert "| 999 B | 0 B |" in report.to_markdown(BuildReport("r", "t", [], [cell]))


def test_markdown_shows_what_bytecode_adds_to_the_size():
    cell = CellReport(cell="c", status="built", size=1_630_000_000, bytecode_bytes=110_740_000)
    assert "| c | linux/amd64 | built | 1.63 GB (bytecode 110.74 MB) |" in report.to_markdown(BuildReport("r", "t", [], [cell]))


def test_markdown_truncates_long_errors():
    cell = CellReport.failed("c", "x" * 200)
    row = next(line for line in report.to_markdown(BuildReport("r", "t", [], [cell])).splitlines() if line.startswith("| c |"))
    assert "x" * 160 in row and "x" * 161 not in row


def test_markdown_row_of_a_multiline_error_stays_one_row():
    cell = CellReport.failed("c", 'ERROR: failed to solve:\nprocess "/bin/sh -c pip install | tee log" did not complete')
    md = report.to_markdown(BuildReport("r", "t", [], [cell]))
    table = md.split("|---|---|---|---|---|---|---|---|---|---|\n", 1)[1].splitlines()
    assert len(table) == 1
    assert table[0].count("|") - table[0].count("\\|") == 11


@pytest.mark.parametrize(
    ("size", "text"),
    [(None, "–"), (0, "0 B"), (999, "999 B"), (1000, "1.00 kB"), (1_234_567, "1.23 MB"), (2_500_000_000, "2.50 GB")],
)
def test_human(size, text):
    assert report.human(size) == text


# ---------------------------------------------------------------- layers


def test_shared_bytes():
    mine = [("a", 10), ("b", 20), ("c", 40)]
    assert layers.shared_bytes(mine, [[("a", 10)], [("c", 40), ("a", 10)]]) == 50  # "a" counted once
    assert layers.shared_bytes(mine, []) == 0
    assert layers.shared_bytes(mine, [[("x", 10)]]) == 0
    assert layers.shared_bytes([("a", 10), ("a", 10)], [[("a", 10)]]) == 10  # a layer listed twice in one image


def test_download_bytes():
    new = [("base", 100), ("tf", 1000), ("jupyter", 50)]
    assert layers.download_bytes(new, [("base", 100), ("tf-old", 900), ("jupyter", 50)]) == 1000
    assert layers.download_bytes(new, []) == 1150
    assert layers.download_bytes(new, new) == 0
    assert layers.download_bytes([("a", 5), ("a", 5)], []) == 5


def test_previous_release(sample_cells, sample_cells_by_id):
    assert layers.previous_release(sample_cells_by_id["tf2.21.0-py3.11-cpu"], sample_cells) == sample_cells_by_id["tf2.20.0-py3.11-cpu"]
    assert layers.previous_release(sample_cells_by_id["tf2.21.0-py3.13-cpu"], sample_cells) == sample_cells_by_id["tf2.20.0-py3.13-cpu"]
    assert layers.previous_release(sample_cells_by_id["tf2.20.0-py3.11-cpu"], sample_cells) is None
    # The GPU pair that differs only in TensorFlow; the other CUDA/Python lines have no 2.20 GPU cell.
    assert layers.previous_release(sample_cells_by_id["tf2.21.0-py3.11-gpu-cuda12.5"], sample_cells) == sample_cells_by_id["tf2.20.0-py3.11-gpu-cuda12.5"]
    assert layers.previous_release(sample_cells_by_id["tf2.21.0-py3.11-gpu-cuda12.9"], sample_cells) is None


def test_previous_release_is_the_next_lower_one():
    from kerastack.matrix import Cell
    from kerastack.versions import Version

    def c(tf, py="3.11", variant="gpu", cuda="12.5"):
        return Cell(Version(tf), Version(py), variant, Version(cuda) if cuda else None)

    cells = [c("2.19.0"), c("2.20.0"), c("2.21.0"), c("2.20.0", cuda="12.9"), c("2.20.0", py="3.13"), c("2.20.0", variant="cpu", cuda=None)]
    assert layers.previous_release(cells[2], cells) == c("2.20.0")
    assert layers.previous_release(cells[1], cells) == c("2.19.0")
    assert layers.previous_release(c("2.21.0", cuda="12.9"), cells) == c("2.20.0", cuda="12.9")


# ---------------------------------------------------------------- ca


@pytest.fixture
def pems(tmp_path) -> dict[str, Path]:
    files = {}
    for name in ("explicit", "ssl", "requests", "pip"):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_text("-----BEGIN CERTIFICATE-----\n")
    return files


def test_find_bundle_explicit_wins(pems):
    env = {"SSL_CERT_FILE": str(pems["ssl"])}
    assert ca.find_bundle(str(pems["explicit"]), env) == pems["explicit"]


def test_find_bundle_explicit_wins_over_a_broken_env(pems, tmp_path):
    assert ca.find_bundle(str(pems["explicit"]), {"SSL_CERT_FILE": str(tmp_path / "gone.pem")}) == pems["explicit"]


def test_find_bundle_explicit_missing(tmp_path):
    with pytest.raises(PipelineError, match=r"--ca-bundle .*nope\.pem: no such file"):
        ca.find_bundle(str(tmp_path / "nope.pem"), {})


def test_find_bundle_explicit_directory_is_not_a_file(tmp_path):
    with pytest.raises(PipelineError):
        ca.find_bundle(str(tmp_path), {})


def test_find_bundle_env_order(pems):
    all_three = {"PIP_CERT": str(pems["pip"]), "REQUESTS_CA_BUNDLE": str(pems["requests"]), "SSL_CERT_FILE": str(pems["ssl"])}
    assert ca.find_bundle(None, all_three) == pems["ssl"]
    assert ca.find_bundle(None, {k: v for k, v in all_three.items() if k != "SSL_CERT_FILE"}) == pems["requests"]
    assert ca.find_bundle(None, {"PIP_CERT": str(pems["pip"])}) == pems["pip"]
    assert ca.find_bundle(None, {**all_three, "SSL_CERT_FILE": ""}) == pems["requests"]  # an empty variable is unset


def test_find_bundle_env_var_naming_a_missing_file(pems, tmp_path):
    missing = str(tmp_path / "gone.pem")
    with pytest.raises(PipelineError) as info:
        ca.find_bundle(None, {"SSL_CERT_FILE": missing, "PIP_CERT": str(pems["pip"])})
    assert str(info.value).startswith(f"SSL_CERT_FILE={missing} names no file")
    with pytest.raises(PipelineError, match=r"^REQUESTS_CA_BUNDLE="):
        ca.find_bundle(None, {"REQUESTS_CA_BUNDLE": missing})


def test_find_bundle_none():
    assert ca.find_bundle(None, {}) is None
    assert ca.find_bundle("", {"HOME": "/root"}) is None


def test_find_bundle_reads_only_the_environment_it_is_given(monkeypatch, pems):
    monkeypatch.setenv("SSL_CERT_FILE", str(pems["ssl"]))
    assert ca.find_bundle(None, {}) is None
    assert ca.find_bundle(None, {"SSL_CERT_FILE": str(pems["ssl"])}) == pems["ssl"]


def test_secret_spec(pems):
    assert ca.secret_spec(pems["ssl"]) == [f"id=ca,src={pems['ssl']}"]
    assert ca.secret_spec(None) == []


# ---------------------------------------------------------------- engine


def test_engine_missing_cli():
    status = EngineStatus(cli=False, daemon=False, buildx=False)
    assert not status.ready
    assert "docker CLI is not on PATH" in status.problem() and "scripts/install-docker.sh" in status.problem()


def test_engine_missing_daemon():
    status = EngineStatus(cli=True, daemon=False, buildx=False, detail="Cannot connect to the Docker daemon at unix:///var/run/docker.sock")
    problem = status.problem()
    assert problem.startswith("the Docker daemon is not reachable (Cannot connect to the Docker daemon at unix:///var/run/docker.sock): ")
    assert "sudo systemctl start docker" in problem and "DOCKER_HOST" in problem and "install-docker.sh" in problem
    assert "not reachable: start it" in EngineStatus(cli=True, daemon=False, buildx=False).problem()


def test_engine_missing_buildx():
    problem = EngineStatus(cli=True, daemon=True, buildx=False).problem()
    assert "buildx CLI plugin is missing" in problem and "docker-buildx" in problem and "install-docker.sh" in problem


def test_engine_ready_has_no_problem():
    status = EngineStatus(cli=True, daemon=True, buildx=True, server_version="27.0.1")
    assert status.ready and status.problem() == ""


def test_engine_error_exit_code():
    assert EngineError("x").exit_code == 3 and PipelineError("x").exit_code == 2


# ---------------------------------------------------------------- base images and builders


def test_a_bootstrapped_base_is_tagged_per_platform_and_recipe():
    from kerastack import base_images

    recipe = base_images.BOOTSTRAP_RECIPE
    assert base_images.bootstrap_tag("bookworm", "linux/arm64") == f"kerastack-base/debian:bookworm-minbase-r{recipe}-arm64"
    assert base_images.bootstrap_tag("trixie") == f"kerastack-base/debian:trixie-minbase-r{recipe}-amd64"
    assert base_images.architecture("linux/arm64") == "arm64"
    assert base_images.BASE_DOCKERFILE.splitlines()[:2] == ["FROM scratch", "ADD rootfs.tar /"], "one layer: the rootfs, whatever the platform"


def test_markdown_lists_each_base_once_with_its_suite_and_mirror():
    r = sample_report()
    for cell in r.cells:
        cell.base_image, cell.base_image_id = "kerastack-base/debian:bookworm-minbase", "sha256:" + "5" * 64
        cell.base_suite, cell.base_mirror = "bookworm", "http://deb.debian.org/debian"
    md = report.to_markdown(r)
    line = f"- `kerastack-base/debian:bookworm-minbase`: image ID `sha256:{'5' * 64}`; bootstrapped: `debootstrap --arch=amd64 --variant=minbase bookworm` from http://deb.debian.org/debian"
    assert md.count(line) == 1


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("v0.8+unknown", (0, 8)), ("v0.13.2", (0, 13)), ("0.11.0-rc1", (0, 11)), ("v1.0.0", (1, 0)), ("", None), (None, None), ("unknown", None)],
)
def test_parse_buildkit_version(text, parsed):
    from kerastack.docker_client import parse_buildkit_version

    assert parse_buildkit_version(text) == parsed


def test_source_date_epoch_is_the_created_time():
    from kerastack.plan import source_date_epoch

    assert source_date_epoch("1970-01-01T00:00:00Z") == 0
    assert source_date_epoch("2026-11-24T12:00:00Z") == 1795521600


def test_shared_layers_lists_each_layer_two_cells_have_largest_first():
    cpu = CellReport(cell="cpu", status="built", layers=[("sha256:base", 100), ("sha256:empty", 0), ("sha256:jupyter", 150), ("sha256:tf-cpu", 500)])
    gpu = CellReport(cell="gpu", status="built", layers=[("sha256:base", 100), ("sha256:empty", 0), ("sha256:cuda", 4000), ("sha256:jupyter", 150)])
    old = CellReport(cell="old", status="built", layers=[("sha256:base", 100), ("sha256:cuda", 4000)])
    failed = CellReport.failed("broken", "boom")
    assert report.shared_layers([cpu, gpu, old, failed]) == [
        ("sha256:cuda", 4000, ["gpu", "old"]),
        ("sha256:jupyter", 150, ["cpu", "gpu"]),
        ("sha256:base", 100, ["cpu", "gpu", "old"]),
    ]
    md = report.to_markdown(BuildReport("r", "t", [], [cpu, gpu, old, failed]))
    assert "| `sha256:jupyter` | 150 B | cpu, gpu |" in md
    assert "sha256:empty" not in md and "sha256:tf-cpu" not in md


def test_markdown_names_each_layer_and_the_json_keeps_them():
    cell = CellReport(cell="c", status="built", size=3_000_000_000, named_layers=[("os", 170_000_000), ("toolkit", 900_000_000), ("venv", 20_000_000)])
    md = report.to_markdown(BuildReport("r", "t", [], [cell]))
    assert "- c: os 170.00 MB, toolkit 900.00 MB, venv 20.00 MB" in md
    back = BuildReport.from_json(BuildReport("r", "t", [], [cell]).to_json())
    assert back.cells[0].named_layers == [("os", 170_000_000), ("toolkit", 900_000_000), ("venv", 20_000_000)]


def test_the_layer_names_follow_the_dockerfile():
    from kerastack import contract

    toolkit = ("science", "data", "visualisation")
    assert contract.image_layers("cpu") == ("os", "toolkit", "venv", "tensorflow", *toolkit, "jupyter", "font-cache", "manifest", "image files")
    assert contract.image_layers("gpu") == ("os", "toolkit", "venv", "cuda", "tensorflow", *toolkit, "jupyter", "font-cache", "manifest", "image files")
    assert contract.image_layers("gpu")[3:5] == ("cuda", "tensorflow")
    dockerfile = (Path(__file__).resolve().parents[2] / "images" / "Dockerfile").read_text()
    image_stage = dockerfile[dockerfile.index("FROM ${VARIANT}-libs AS image") :]
    # One RUN per layer in the image stage: the three upper lock groups, the font cache, the manifest, the image files.
    assert image_stage.count("\nRUN ") == len(contract.image_layers("cpu")) - 3
