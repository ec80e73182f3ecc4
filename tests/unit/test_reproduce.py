"""The layer-by-layer comparison of two builds, on small tar files made here (no Docker)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kerastack import image_compare as reproduce
from kerastack import reproduce as reproduce_stage
from kerastack.image_compare import MemberDifference, compare_configs, compare_images, compare_layer_tars, load_saved


@dataclass
class Entry:
    name: str
    data: bytes | None = b"hello\n"  # None: a directory
    mode: int = 0o644
    mtime: int = 1_700_000_000
    uid: int = 0
    gid: int = 0
    linkname: str = ""
    pax: dict[str, str] = field(default_factory=dict)


def layer_bytes(entries: list[Entry]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.mode, info.mtime, info.uid, info.gid, info.pax_headers = e.mode, e.mtime, e.uid, e.gid, dict(e.pax)
            if e.linkname:
                info.type, info.linkname = tarfile.SYMTYPE, e.linkname
                tar.addfile(info)
            elif e.data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
    return buffer.getvalue()


def open_layer(entries: list[Entry]) -> tarfile.TarFile:
    return tarfile.open(fileobj=io.BytesIO(layer_bytes(entries)))


def diff(a: list[Entry], b: list[Entry]) -> list[MemberDifference]:
    with open_layer(a) as first, open_layer(b) as second:
        return compare_layer_tars(first, second)


def saved_image(path: Path, layers: list[list[Entry]], history: list[dict] | None = None, created: str = "2026-11-25T10:00:00Z") -> Path:
    """A `docker save` archive as Engine 20.10 writes it: <id>/layer.tar, <config>.json, manifest.json."""
    blobs = [layer_bytes(entries) for entries in layers]
    diff_ids = ["sha256:" + hashlib.sha256(b).hexdigest() for b in blobs]
    config = {
        "architecture": "amd64",
        "created": created,
        "config": {"Labels": {"a": "1"}},
        "history": history if history is not None else [{"created": created, "created_by": f"RUN step {i}"} for i in range(len(layers))],
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_bytes = json.dumps(config).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    members = {f"{d[7:19]}/layer.tar": b for d, b in zip(diff_ids, blobs, strict=True)}
    members[config_name] = config_bytes
    members["manifest.json"] = json.dumps([{"Config": config_name, "RepoTags": ["x:1"], "Layers": [f"{d[7:19]}/layer.tar" for d in diff_ids]}]).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


BASE = [Entry("etc/", None, 0o755), Entry("etc/os-release", b"Debian\n")]
VENV = [Entry("opt/", None, 0o755), Entry("opt/venv/", None, 0o755), Entry("opt/venv/bin/python", b"", linkname="/usr/bin/python3")]


# ---------------------------------------------------------------- one layer


def test_identical_layers_have_no_difference():
    assert diff(VENV, VENV) == []


@pytest.mark.parametrize(
    ("change", "field_name", "first", "second"),
    [
        ({"mtime": 1_700_000_001}, "mtime", "1700000000", "1700000001"),
        ({"mode": 0o600}, "mode", "0o644", "0o600"),
        ({"uid": 1000}, "uid", "0", "1000"),
        ({"gid": 1000}, "gid", "0", "1000"),
        ({"pax": {"SCHILY.xattr.security.capability": "x"}}, "pax_headers", "", '{"SCHILY.xattr.security.capability": "x"}'),
    ],
)
def test_a_changed_field_is_named_with_both_values(change, field_name, first, second):
    before = [Entry("usr/local/bin/start-jupyter", b"#!/bin/sh\n")]
    after = [Entry("usr/local/bin/start-jupyter", b"#!/bin/sh\n", **{**{"mode": 0o644}, **change})]
    assert diff(before, after) == [MemberDifference("/usr/local/bin/start-jupyter", field_name, first, second)]


def test_content_and_size_differences_are_both_reported():
    found = diff([Entry("a.pyc", b"one")], [Entry("a.pyc", b"three")])
    assert [d.field for d in found] == ["size", "content"]
    assert found[1].first == "sha256:" + hashlib.sha256(b"one").hexdigest()


def test_same_size_different_content_is_caught():
    assert [d.field for d in diff([Entry("f", b"abc")], [Entry("f", b"abd")])] == ["content"]


def test_link_target_difference():
    found = diff([Entry("l", linkname="/a")], [Entry("l", linkname="/b")])
    assert found == [MemberDifference("/l", "linkname", "/a", "/b")]


def test_members_present_in_only_one_build():
    found = diff(VENV, [*VENV, Entry("run/secrets/", None)])
    assert found == [MemberDifference("/run/secrets", "presence", "missing", "present")]


def test_names_are_normalised_but_whiteouts_keep_their_dots():
    found = diff([Entry("./var/log/.wh.dpkg.log", b"")], [Entry("var/log/.wh.dpkg.log", b"", mtime=5)])
    assert [(d.path, d.field) for d in found] == [("/var/log/.wh.dpkg.log", "mtime")]


def test_same_members_in_another_order_is_an_order_difference():
    found = diff(VENV, list(reversed(VENV)))
    assert [d.field for d in found] == ["order"]


def test_every_difference_of_a_member_is_listed():
    found = diff([Entry("f", b"a", mtime=1, mode=0o644)], [Entry("f", b"a", mtime=2, mode=0o755)])
    assert {d.field for d in found} == {"mode", "mtime"}


# ---------------------------------------------------------------- the config


def test_config_differences_are_flattened_paths():
    a = {"created": "t1", "history": [{"created": "t1"}, {"created": "t0"}], "config": {"Labels": {"x": "1"}}}
    b = {"created": "t2", "history": [{"created": "t2"}, {"created": "t0"}], "config": {"Labels": {"x": "1", "y": "2"}}}
    assert [d.path for d in compare_configs(a, b)] == ["config.Labels.y", "created", "history[0].created"]


# ---------------------------------------------------------------- two saved images


def test_two_identical_saves_are_identical(tmp_path):
    first = load_saved(saved_image(tmp_path / "1.tar", [BASE, VENV]))
    second = load_saved(saved_image(tmp_path / "2.tar", [BASE, VENV]))
    result = compare_images("cell", first, second, base_layers=1)
    assert result.ok and result.same_image_id
    assert (result.identical_layers, len(result.layers_above_base)) == (1, 1)
    assert result.layers[1].created_by == "RUN step 1"


def test_a_layer_that_differs_names_its_files_and_fields(tmp_path):
    later = [Entry("opt/", None, 0o755, mtime=1_800_000_000), *VENV[1:]]
    first = load_saved(saved_image(tmp_path / "1.tar", [BASE, VENV, [Entry("usr/local/bin/x")]]))
    second = load_saved(saved_image(tmp_path / "2.tar", [BASE, later, [Entry("usr/local/bin/x")]]))
    result = compare_images("cell", first, second, base_layers=1)
    assert not result.ok
    assert (result.identical_layers, len(result.layers_above_base)) == (1, 2)
    changed = result.layers[1]
    assert not changed.identical
    assert changed.fields == {"mtime": 1}
    assert changed.differences == [MemberDifference("/opt", "mtime", "1700000000", "1800000000")]


def test_base_layer_differences_fail_the_verdict_too(tmp_path):
    """Both builds start from one base: a base layer that differs is a difference (nothing is dropped)."""
    first = load_saved(saved_image(tmp_path / "1.tar", [BASE, VENV]))
    second = load_saved(saved_image(tmp_path / "2.tar", [[*BASE[:1], Entry("etc/os-release", b"Debian 12\n")], VENV]))
    result = compare_images("cell", first, second, base_layers=1)
    assert not result.layers[0].identical
    assert not result.ok


def test_a_missing_layer_is_a_difference(tmp_path):
    first = load_saved(saved_image(tmp_path / "1.tar", [BASE, VENV]))
    second = load_saved(saved_image(tmp_path / "2.tar", [BASE]))
    result = compare_images("cell", first, second, base_layers=1)
    assert not result.ok
    assert result.layers[1].differences[0].field == "presence"


def test_created_times_fail_unless_the_engine_cannot_set_them(tmp_path):
    first = load_saved(saved_image(tmp_path / "1.tar", [BASE, VENV], created="2026-11-25T10:00:00Z"))
    second = load_saved(saved_image(tmp_path / "2.tar", [BASE, VENV], created="2026-11-25T10:05:00Z"))
    strict = compare_images("cell", first, second, base_layers=1)
    assert not strict.ok and not strict.same_image_id
    assert {d.path for d in strict.unexplained_config_differences} == {"created", "history[0].created", "history[1].created"}
    lenient = compare_images("cell", first, second, base_layers=1, tolerated_config_fields=("created", "history[*].created"))
    assert lenient.ok and not lenient.same_image_id


def test_a_tolerated_time_does_not_excuse_a_label(tmp_path):
    first = load_saved(saved_image(tmp_path / "1.tar", [BASE, VENV]))
    second_path = saved_image(tmp_path / "2.tar", [BASE, VENV])
    second = load_saved(second_path)
    second.config["config"]["Labels"]["a"] = "2"
    result = compare_images("cell", first, second, base_layers=1, tolerated_config_fields=("created", "history[*].created"))
    assert not result.ok
    assert [d.path for d in result.unexplained_config_differences] == ["config.Labels.a"]


def test_a_manifest_that_disagrees_with_its_config_is_refused(tmp_path):
    path = saved_image(tmp_path / "1.tar", [BASE, VENV])
    with tarfile.open(path) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    manifest = json.loads(members["manifest.json"])
    manifest[0]["Layers"] = manifest[0]["Layers"][:1]
    members["manifest.json"] = json.dumps(manifest).encode()
    broken = tmp_path / "broken.tar"
    with tarfile.open(broken, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ValueError, match="manifest lists 1 layers, the config 2"):
        load_saved(broken)


class Pipe(io.RawIOBase):
    """A stream that cannot seek (like `docker save`'s stdout), in small reads."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self.data[self.at : self.at + min(len(buffer), 7000)]
        buffer[: len(chunk)] = chunk
        self.at += len(chunk)
        return len(chunk)


@pytest.mark.parametrize("small_member", [reproduce.SMALL_MEMBER, 0], ids=["layers-in-memory", "layers-streamed"])
def test_a_pipe_read_once_gives_the_same_comparison_as_the_file(tmp_path, monkeypatch, small_member):
    """Layers bigger than SMALL_MEMBER are parsed while they stream past (0: every layer is)."""
    monkeypatch.setattr(reproduce, "SMALL_MEMBER", small_member)
    later = [Entry("opt/", None, 0o755, mtime=1_800_000_000), *VENV[1:]]
    one, two = saved_image(tmp_path / "1.tar", [BASE, VENV]), saved_image(tmp_path / "2.tar", [BASE, later])
    from_files = compare_images("cell", load_saved(one), load_saved(two), base_layers=1)
    piped = [reproduce.read_saved(Pipe(path.read_bytes()), f"docker save {path.name}") for path in (one, two)]
    from_pipes = compare_images("cell", *piped, base_layers=1)
    assert dataclasses.asdict(from_pipes) == dataclasses.asdict(from_files)
    assert from_pipes.layers[1].differences == [MemberDifference("/opt", "mtime", "1700000000", "1800000000")]


@pytest.mark.parametrize("small_member", [reproduce.SMALL_MEMBER, 0], ids=["layers-in-memory", "layers-streamed"])
def test_only_layers_not_known_identical_are_kept(tmp_path, monkeypatch, small_member):
    monkeypatch.setattr(reproduce, "SMALL_MEMBER", small_member)
    path = saved_image(tmp_path / "1.tar", [BASE, VENV])
    everything = reproduce.read_saved(Pipe(path.read_bytes()), "a")
    base_id = everything.diff_ids[0]
    assert len(everything.contents) == 2
    kept = reproduce.read_saved(Pipe(path.read_bytes()), "a", known_identical={base_id})
    assert list(kept.contents) == [kept.layer_members[1]]
    with pytest.raises(ValueError, match="layer 0 .* was not read"):
        kept.layer(0)
    config_only = reproduce.read_saved(Pipe(path.read_bytes()), "a", look_inside=False)
    assert config_only.contents == {} and config_only.image_id == everything.image_id and config_only.diff_ids == everything.diff_ids


def test_a_layer_identical_at_one_position_and_compared_at_another_is_kept(tmp_path):
    """The same digest (e.g. BuildKit's empty layer) where the builds agree and where they differ."""
    one = saved_image(tmp_path / "1.tar", [BASE, VENV, BASE])
    two = saved_image(tmp_path / "2.tar", [BASE, VENV, [Entry("usr/local/bin/z")]])
    ids = [load_saved(path, look_inside=False).diff_ids for path in (one, two)]
    look_inside, known_identical = reproduce.layers_to_read(*ids)
    assert look_inside and ids[0][0] not in known_identical and ids[0][1] in known_identical
    piped = [reproduce.read_saved(Pipe(path.read_bytes()), path.name, look_inside, known_identical) for path in (one, two)]
    result = compare_images("cell", *piped, base_layers=1)
    assert [layer.identical for layer in result.layers] == [True, True, False]
    assert {d.path for d in result.layers[2].differences} >= {"/usr/local/bin/z"}


def test_a_cut_short_archive_is_refused(tmp_path):
    data = saved_image(tmp_path / "1.tar", [BASE, VENV]).read_bytes()
    with pytest.raises(ValueError, match="docker save x"):
        reproduce.read_saved(Pipe(data[: len(data) // 3]), "docker save x")


# ---------------------------------------------------------------- reports


def test_reports_name_the_layer_the_file_and_the_field(tmp_path):
    later = [Entry("opt/", None, 0o755, mtime=1_800_000_000), *VENV[1:]]
    first = load_saved(saved_image(tmp_path / "1.tar", [BASE, VENV]))
    second = load_saved(saved_image(tmp_path / "2.tar", [BASE, later]))
    comparison = compare_images("tf2.21.0-py3.11-cpu", first, second, base_layers=1)
    report = reproduce.ReproduceReport("a1b2c3d", 1_764_000_000, "default builder, BuildKit v0.8", [comparison], ["a note"])
    json_path, md_path = reproduce.write_reproduce_report(report, tmp_path / "reports")
    data = json.loads(json_path.read_text())
    assert data["ok"] is False
    cell = data["cells"][0]
    assert (cell["identical_layers"], cell["layers_above_base"], cell["ok"]) == (0, 1, False)
    assert cell["layers"][1]["differences"] == [{"path": "/opt", "field": "mtime", "first": "1700000000", "second": "1800000000"}]
    text = md_path.read_text()
    assert "| tf2.21.0-py3.11-cpu | **differs** | 0/1 |" in text
    assert "### layer 1: RUN step 1" in text
    assert "/opt: mtime: 1700000000 != 1800000000" in text
    assert "- a note" in text


def test_long_lists_are_cut_but_counted():
    many = [MemberDifference(f"/f{i}", "mtime", "1", "2") for i in range(reproduce.LISTED_PER_LAYER + 7)]
    layer = reproduce.summarise(3, "sha256:a", "sha256:b", many)
    assert len(layer.differences) == reproduce.LISTED_PER_LAYER
    assert layer.difference_count == reproduce.LISTED_PER_LAYER + 7
    assert layer.fields == {"mtime": reproduce.LISTED_PER_LAYER + 7}


def test_an_empty_report_is_not_a_success():
    assert not reproduce.ReproduceReport("a1b2c3d", 0, "", []).ok


# ---------------------------------------------------------------- the command


def test_reproduce_outside_a_git_checkout_fails_before_building(tmp_path):
    import shutil
    import subprocess
    import sys

    from tests.unit.conftest import SAMPLE

    shutil.copy(SAMPLE, tmp_path / "versions.toml")
    result = subprocess.run(
        [sys.executable, "-m", "kerastack", "--project-dir", str(tmp_path), "reproduce", "id=tf2.21.0-py3.11-cpu"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "GIT_CEILING_DIRECTORIES": str(tmp_path.parent)},
    )
    assert result.returncode == 2, result.stderr
    assert "not a git checkout" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


# ---------------------------------------------------------------- a strict verdict


@pytest.mark.parametrize(
    ("key", "first", "second"),
    [
        ("ExposedPorts", {"8888/tcp": {}}, {}),
        ("ExposedPorts", {"8888/tcp": {}}, None),
        ("Volumes", [], None),
        ("ArgsEscaped", True, 1),
        ("StopTimeout", 1, 1.0),
        ("Labels", {"a": ""}, {}),
    ],
)
def test_empty_containers_and_json_types_are_differences(tmp_path, key, first, second):
    one = load_saved(saved_image(tmp_path / "1.tar", [BASE, VENV]))
    two = load_saved(saved_image(tmp_path / "2.tar", [BASE, VENV]))
    one.config["config"][key] = first
    if second is None:
        two.config["config"].pop(key, None)
    else:
        two.config["config"][key] = second
    for tolerated in ((), reproduce_stage.ENGINE_TIMES):
        result = compare_images("cell", one, two, base_layers=1, tolerated_config_fields=tolerated)
        assert not result.ok, f"{key}: {first!r} against {second!r} passed"
        assert {d.path.split(".")[1] for d in result.config_differences} == {key}


def test_where_the_builder_can_set_the_times_the_image_ids_must_match(tmp_path):
    first = load_saved(saved_image(tmp_path / "1.tar", [BASE, VENV]))
    other_bytes = dataclasses.replace(first, image_id="sha256:" + "e" * 64)  # same parsed config, other bytes (key order, spacing)
    assert not compare_images("cell", first, other_bytes, base_layers=1).ok
    assert compare_images("cell", first, first, base_layers=1).ok


@pytest.mark.parametrize(
    ("version", "tolerated"), [("v0.8+unknown", True), ("v0.10.6", True), ("v0.11.0", False), ("v0.13.2", False), ("", False), ("weird", False)]
)
def test_only_a_known_builder_that_cannot_set_the_times_tolerates_them(version, tolerated):
    assert bool(reproduce_stage.tolerated_for(version)) is tolerated
