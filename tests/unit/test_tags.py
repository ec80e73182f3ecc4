"""The tag scheme: on the real matrix, and as properties of random valid matrices (hypothesis)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kerastack import config, matrix, plan, tags
from kerastack.matrix import Filter
from kerastack.tags import BuildStamp

DOCKER_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
STAMP = BuildStamp("20261124", "a1b2c3d")
JSON_KEYS = {"id", "tensorflow", "python", "variant", "cuda", "platform", "target", "filter", "image", "tags", "build_args"}


# ---------------------------------------------------------------- the real matrix


def test_cell_and_immutable_tags(sample_cells_by_id):
    gpu = sample_cells_by_id["tf2.21.0-py3.11-gpu-cuda12.5"]
    cpu = sample_cells_by_id["tf2.20.0-py3.13-cpu"]
    assert tags.cell_tag(gpu) == "2.21.0-py3.11-gpu-cuda12.5"
    assert tags.cell_tag(cpu) == "2.20.0-py3.13-cpu"
    assert tags.immutable_tag(gpu, STAMP) == "2.21.0-py3.11-gpu-cuda12.5-20261124-a1b2c3d"
    assert tags.immutable_tag(cpu, BuildStamp("20250101", "0123456789abcdef0123456789abcdef01234567-dirty")) == (
        "2.20.0-py3.13-cpu-20250101-0123456789abcdef0123456789abcdef01234567-dirty"
    )


def test_moving_tag_owners_on_the_real_matrix(sample_config, sample_cells):
    assert tags.moving_tags(sample_config, sample_cells) == {
        "tf2.21.0-py3.11-cpu": ("2.21-cpu", "latest"),
        "tf2.21.0-py3.11-gpu-cuda12.5": ("2.21-gpu", "latest-gpu"),
        "tf2.20.0-py3.11-cpu": ("2.20-cpu",),
        "tf2.20.0-py3.11-gpu-cuda12.5": ("2.20-gpu",),
    }


def test_tags_for_every_real_cell(sample_config, sample_cells):
    got = {c.id: tags.tags_for(sample_config, sample_cells, c, STAMP) for c in sample_cells}
    for cell_id, t in got.items():
        assert t.cell_id == cell_id
        assert t.cell == cell_id.removeprefix("tf")
        assert t.immutable == f"{t.cell}-20261124-a1b2c3d"
    assert got["tf2.21.0-py3.13-gpu-cuda12.9"].moving == ()
    assert got["tf2.21.0-py3.11-cpu"].all() == ("2.21.0-py3.11-cpu-20261124-a1b2c3d", "2.21.0-py3.11-cpu", "2.21-cpu", "latest")
    assert got["tf2.21.0-py3.11-gpu-cuda12.5"].kinds() == [
        ("2.21.0-py3.11-gpu-cuda12.5-20261124-a1b2c3d", tags.IMMUTABLE),
        ("2.21.0-py3.11-gpu-cuda12.5", tags.CELL),
        ("2.21-gpu", tags.MOVING),
        ("latest-gpu", tags.MOVING),
    ]


def test_moving_tags_follow_the_defaults(sample_text):
    text = sample_text.replace('python = "3.11"\ncuda = "12.5"', 'python = "3.13"\ncuda = "12.9"', 1)
    assert text != sample_text
    c = config.parse(text, "versions.toml")
    assert tags.moving_tags(c, matrix.cells(c)) == {
        "tf2.21.0-py3.13-cpu": ("2.21-cpu", "latest"),
        "tf2.21.0-py3.13-gpu-cuda12.9": ("2.21-gpu", "latest-gpu"),
        "tf2.20.0-py3.13-cpu": ("2.20-cpu",),
        "tf2.20.0-py3.11-gpu-cuda12.5": ("2.20-gpu",),  # the only 2.20 GPU cell
    }


def test_a_filtered_selection_does_not_steal_moving_tags(sample_config, sample_cells):
    selected = Filter.parse(["tf=2.20"]).select(sample_cells)
    assert [c.id for c in selected] == ["tf2.20.0-py3.11-cpu", "tf2.20.0-py3.11-gpu-cuda12.5", "tf2.20.0-py3.13-cpu"]
    # Tags are computed against the whole matrix: the 2.20 cells keep only their own line's tag.
    assert [tags.tags_for(sample_config, sample_cells, c, STAMP).moving for c in selected] == [("2.20-cpu",), ("2.20-gpu",), ()]
    plans = [plan.plan_cell(sample_config, sample_cells, c, STAMP, "base", "2026-11-24T00:00:00Z") for c in selected]
    assert [p.tags.moving for p in plans] == [("2.20-cpu",), ("2.20-gpu",), ()]
    # What would go wrong if the selection were used: 2.20 would take `latest`.
    assert "latest" in tags.moving_tags(sample_config, selected)["tf2.20.0-py3.11-cpu"]


@pytest.mark.parametrize(
    ("date", "revision"),
    [
        ("2026-11-24", "a1b2c3d"),
        ("2026112", "a1b2c3d"),
        ("202611240", "a1b2c3d"),
        ("", "a1b2c3d"),
        ("20261124", "A1B2C3D"),
        ("20261124", "a1b2c3"),
        ("20261124", "a" * 41),
        ("20261124", "main"),
        ("20261124", "a1b2c3d-Dirty"),
        ("20261124", "a1b2c3d-dirty-dirty"),
        ("20261124", ""),
    ],
)
def test_build_stamp_rejects(date, revision):
    with pytest.raises(ValueError):
        BuildStamp(date, revision)


@pytest.mark.parametrize("revision", ["a1b2c3d", "a1b2c3d-dirty", "0" * 40, "unknown"])
def test_build_stamp_accepts(revision):
    assert BuildStamp("20261124", revision).suffix == f"20261124-{revision}"


def test_build_stamp_at_uses_utc_date():
    local = datetime(2026, 11, 25, 2, 0, tzinfo=timezone(timedelta(hours=5)))  # 2026-11-24 21:00 UTC
    assert BuildStamp.at(local, "abcdef0") == BuildStamp("20261124", "abcdef0")


# ---------------------------------------------------------------- random valid matrices

BASE = "docker.io/library/python:3-slim@sha256:" + "0" * 64


@st.composite
def random_configs(draw):
    """A valid versions.toml text with random releases, Pythons, CUDAs, variants, defaults and excludes."""
    tfs = draw(st.lists(st.tuples(st.integers(1, 3), st.integers(0, 25), st.integers(0, 12)), min_size=1, max_size=5, unique=True))
    pys = draw(st.lists(st.integers(6, 14), min_size=1, max_size=3, unique=True))
    cudas = draw(st.lists(st.tuples(st.integers(11, 13), st.integers(0, 9)), min_size=1, max_size=3, unique=True))
    variants = draw(st.sampled_from([["cpu"], ["gpu"], ["cpu", "gpu"], ["gpu", "cpu"]]))
    tf_s = [f"{a}.{b}.{c}" for a, b, c in tfs]
    py_s = [f"3.{m}" for m in pys]
    cuda_s = [f"{a}.{b}" for a, b in cudas]
    defaults = (draw(st.sampled_from(tf_s)), draw(st.sampled_from(py_s)), draw(st.sampled_from(cuda_s)))
    excludes = []
    if len(tf_s) > 1 and draw(st.booleans()):  # never the default cell: that is an error of its own
        excludes.append((draw(st.sampled_from([t for t in tf_s if t != defaults[0]])), draw(st.sampled_from(variants))))

    def q(values):
        return "[" + ", ".join(f'"{v}"' for v in values) + "]"

    lines = [
        "schema = 1",
        '[registry]\nhost = "registry.example:5000"\nrepository = "org/keras-jupyter"',
        f'[defaults]\ntensorflow = "{defaults[0]}"\npython = "{defaults[1]}"\ncuda = "{defaults[2]}"',
        '[jupyter]\npackages = ["jupyterlab>=4.4,<5"]',
    ]
    for tf in tf_s:
        lines.append(
            f'[tensorflow."{tf}"]\npython = {{ min = "3.0", max = "3.99" }}\nbuilt_with = {{ cuda = "12.5", cudnn = "9.3" }}\n'
            f'cuda = {{ min = "1", below = "99" }}\nkeras = "3.{tfs[tf_s.index(tf)][1]}.0"\n'
            f'[tensorflow."{tf}".platforms."linux/amd64"]\npackages = ["tensorflow", "tensorflow-cpu"]\ncuda_build = true\ncuda_wheels = true'
        )
    for py in py_s:
        lines.append(f'[python."{py}"]\nbase_image = "{BASE}"\noffline = {{ debian = "trixie" }}')
    for cuda in cuda_s:
        lines.append(
            f'[cuda."{cuda}"]\ncudnn = "9.3"\nmin_driver = "555.42"\n'
            f'wheels = {{ "nvidia-cuda-runtime-cu12" = "{cuda}.1", "nvidia-cublas-cu12" = "{cuda}.2.1" }}'
        )
    lines.append(
        '[variants.cpu]\ntensorflow_package = "tensorflow-cpu"\nplatforms = ["linux/amd64"]\n'
        '[variants.gpu]\ntensorflow_package = "tensorflow[and-cuda]"\nplatforms = ["linux/amd64"]\nneeds_cuda = true'
    )
    lines.append(f"[matrix]\ntensorflow = {q(tf_s)}\npython = {q(py_s)}\nvariant = {q(variants)}\ncuda = {q(cuda_s)}")
    for tf, variant in excludes:
        lines.append(f'[[matrix.exclude]]\ntensorflow = "{tf}"\nvariant = "{variant}"')
    text = "\n\n".join(lines) + "\n"
    date = draw(st.dates(min_value=datetime(2000, 1, 1).date(), max_value=datetime(2099, 12, 31).date())).strftime("%Y%m%d")
    revision = draw(st.text("0123456789abcdef", min_size=7, max_size=40) | st.just("unknown"))
    if revision != "unknown" and draw(st.booleans()):
        revision += "-dirty"
    return text, BuildStamp(date, revision)


RANDOM = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def _load(text):
    c = config.parse(text, "random.toml")
    return c, matrix.cells(c)


@RANDOM
@given(random_configs())
def test_all_tags_are_unique_across_cells(case):
    text, stamp = case
    c, cells = _load(text)
    every = [tag for cell in cells for tag in tags.tags_for(c, cells, cell, stamp).all()]
    assert len(every) == len(set(every)), sorted(every)
    assert len({cell.id for cell in cells}) == len(cells)


@RANDOM
@given(random_configs())
def test_moving_tags_belong_to_the_newest_release(case):
    text, stamp = case
    c, cells = _load(text)
    owners: dict[str, matrix.Cell] = {}
    for cell in cells:
        for tag in tags.tags_for(c, cells, cell, stamp).moving:
            assert tag not in owners, f"{tag} owned twice"
            owners[tag] = cell
    variants = {cell.variant for cell in cells}
    expected_tags = {"latest" if v == "cpu" else f"latest-{v}" for v in variants}
    expected_tags |= {f"{cell.tensorflow.major_minor}-{cell.variant}" for cell in cells}
    assert set(owners) == expected_tags
    for tag, owner in owners.items():
        same_variant = [x for x in cells if x.variant == owner.variant]
        if tag.startswith("latest"):
            assert tag == ("latest" if owner.variant == "cpu" else f"latest-{owner.variant}")
            assert owner.tensorflow == max(x.tensorflow for x in same_variant)
        else:
            line, variant = tag.rsplit("-", 1)
            assert variant == owner.variant and owner.tensorflow.major_minor == line
            assert owner.tensorflow == max(x.tensorflow for x in same_variant if x.tensorflow.major_minor == line)
        # among the cells of that release, the default Python wins when it is there
        rivals = [x for x in same_variant if x.tensorflow == owner.tensorflow]
        if any(x.python == c.defaults.python for x in rivals):
            assert owner.python == c.defaults.python


@RANDOM
@given(random_configs())
def test_every_tag_matches_docker_grammar(case):
    text, stamp = case
    c, cells = _load(text)
    for cell in cells:
        for tag in tags.tags_for(c, cells, cell, stamp).all():
            assert DOCKER_TAG.fullmatch(tag), tag


@RANDOM
@given(random_configs())
def test_matrix_json_round_trips(case):
    text, stamp = case
    c, cells = _load(text)
    doc = {"include": [plan.plan_cell(c, cells, cell, stamp, c.python[cell.python].base_image, "2026-11-24T00:00:00Z").as_json() for cell in cells]}
    assert json.loads(json.dumps(doc)) == doc
    assert [e["id"] for e in doc["include"]] == [cell.id for cell in cells]
    for entry, cell in zip(doc["include"], cells, strict=True):
        assert set(entry) == JSON_KEYS
        assert entry["cuda"] == (str(cell.cuda) if cell.cuda else "")
        assert entry["platform"] == cell.platform == "linux/amd64"
        assert entry["variant"] == cell.variant and entry["build_args"]["VARIANT"] == cell.variant  # the one switch
        assert entry["target"] == "image"
        assert entry["image"] == "registry.example:5000/org/keras-jupyter"
        assert entry["tags"]["cell"] == tags.cell_tag(cell)
        assert entry["tags"]["immutable"] == f"{tags.cell_tag(cell)}-{stamp.suffix}"
        assert entry["build_args"]["LOCK_DIR"] == f"locks/{cell.id}"
        # the filter the workflow passes back selects exactly this cell
        assert Filter.parse([entry["filter"]]).select(cells) == [cell]
