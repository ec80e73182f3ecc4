"""No error becomes a value: each git, docker, uv and registry call site, run against a fake tool on PATH
(a shell script in a temporary folder) that fails, refuses with an error; none reads the failure as an
empty, clean or default answer. The fake tools hand every other command to the real one, where needed."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kerastack import base_images, git, lock, publish
from kerastack.config import load
from kerastack.docker_client import CacheRecord, Docker, DockerException
from kerastack.errors import PipelineError
from kerastack.image_compare import read_saved
from kerastack.matrix import Filter, cells

REAL_GIT = shutil.which("git")


@pytest.fixture
def fake_tools(tmp_path, monkeypatch):
    """fake(name, script): `name` on PATH runs the shell `script` (with "$@" the arguments)."""
    folder = tmp_path / "fake-bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")

    def fake(name: str, script: str) -> Path:
        tool = folder / name
        tool.write_text(f"#!/bin/sh\n{script}\n")
        tool.chmod(0o755)
        return tool

    return fake


@pytest.fixture
def repo(tmp_path) -> Path:
    root = tmp_path / "repo"
    (root / "images").mkdir(parents=True)
    (root / "images" / "Dockerfile").write_text("FROM scratch\n")
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "init"]):
        subprocess.run([REAL_GIT, *args], cwd=root, check=True, capture_output=True)
    return root


# ---------------------------------------------------------------- git
def failing_git(fake_tools, subcommand: str, message: str) -> None:
    """git on PATH fails `subcommand` with `message` and exit 128 (as git does); every other one is the real git."""
    fake_tools("git", f'[ "$1" = {subcommand} ] && {{ echo "{message}" >&2; exit 128; }}\nexec {REAL_GIT} "$@"')


def test_a_broken_index_is_an_error_not_a_clean_tree(repo, fake_tools):
    failing_git(fake_tools, "status", "fatal: index file corrupt")
    with pytest.raises(PipelineError, match="index file corrupt"):
        git.current_stamp(repo)
    with pytest.raises(PipelineError, match="index file corrupt"):
        git.has_uncommitted_changes(repo)


def test_a_failing_git_log_is_an_error_not_a_commit_time(repo, fake_tools):
    failing_git(fake_tools, "log", "fatal: bad object HEAD")
    with pytest.raises(PipelineError, match="bad object HEAD"):
        git.current_stamp(repo)
    with pytest.raises(PipelineError, match="bad object HEAD"):
        git.head(repo)


def test_a_failing_git_archive_is_an_error_not_an_empty_export(repo, fake_tools, tmp_path):
    failing_git(fake_tools, "archive", "fatal: archive failed")
    with pytest.raises(PipelineError, match="archive failed"):
        git.export_head(repo, tmp_path / "export")


def test_a_failing_rev_parse_is_an_error_not_unknown(repo, fake_tools):
    failing_git(fake_tools, "rev-parse", "fatal: cannot lock ref")
    with pytest.raises(PipelineError, match="cannot lock ref"):
        git.current_stamp(repo)


# ---------------------------------------------------------------- docker
DAEMON_ERROR = 'echo "Error response from daemon: layer store is corrupt" >&2; exit 1'
NO_SUCH_IMAGE = 'echo "Error: No such image: $3" >&2; exit 1'


def test_a_failing_inspect_is_an_error_not_a_missing_image(fake_tools):
    fake_tools("docker", DAEMON_ERROR)
    with pytest.raises(DockerException, match="corrupt"):
        Docker().image_id("example/image:tag")
    with pytest.raises(DockerException, match="corrupt"):
        Docker().exists("example/image:tag")


def test_an_image_the_engine_does_not_have_is_none(fake_tools):
    fake_tools("docker", NO_SUCH_IMAGE)
    assert Docker().image_id("example/image:tag") is None
    assert Docker().exists("example/image:tag") is False


def test_a_failing_history_is_an_error_not_no_layers(fake_tools):
    fake_tools("docker", DAEMON_ERROR)
    with pytest.raises(DockerException):
        Docker().layers("example/image:tag")


def _python(sample_config):
    return next(iter(sample_config.python.values()))


@pytest.mark.parametrize(
    "answer",
    [
        "toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading",
        "pull access denied for python, repository does not exist or may require 'docker login': denied: requested access to the resource is denied",
        'Head "https://registry-1.docker.io/v2/library/python/manifests/sha256:x": unauthorized: incorrect username or password',
        "manifest for python@sha256:x not found: manifest unknown: manifest unknown",
        "received unexpected HTTP status: 500 Internal Server Error",
    ],
)
@pytest.mark.parametrize("step", ["index", "pull"])
def test_a_registry_that_answers_is_an_error_never_the_offline_base(fake_tools, sample_config, answer, step):
    """Rate limits, auth errors and any other registry answer, to the index read or to the pull of the
    platform's manifest, say what happened; nothing is bootstrapped."""
    index = json.dumps({"manifests": [{"digest": "sha256:" + "a" * 64, "platform": {"os": "linux", "architecture": "amd64"}}]})
    inspect = f'echo "ERROR: {answer}" >&2; exit 1' if step == "index" else f"echo '{index}'; exit 0"
    fake_tools(
        "docker",
        f'case "$*" in *"imagetools inspect"*) {inspect};; *"image inspect"*) {NO_SUCH_IMAGE};; '
        f'*"image pull"*) echo "Error response from daemon: {answer}" >&2; exit 1;; esac\nexit 99',
    )
    with pytest.raises(PipelineError, match="registry answered") as refused:
        base_images.resolve(Docker(), _python(sample_config), offline=False, mirror="http://deb.debian.org/debian")
    assert answer.split()[-1] in str(refused.value), f"the error says what the registry answered: {refused.value}"


@pytest.mark.parametrize(
    "offline",
    [
        'Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io on 10.255.255.53:53: no such host',
        'Get "https://registry-1.docker.io/v2/": dial tcp 1.2.3.4:443: connect: network is unreachable',
        'Get "https://registry-1.docker.io/v2/": net/http: TLS handshake timeout',
        'Get "https://registry-1.docker.io/v2/": dial tcp 1.2.3.4:443: i/o timeout',
    ],
)
def test_only_an_unreachable_registry_reads_as_offline(offline):
    assert base_images.registry_unreachable(offline)


@pytest.mark.parametrize("answer", ["toomanyrequests: rate limit", "unauthorized: authentication required", "503 Service Unavailable", "denied"])
def test_a_registry_answer_never_reads_as_offline(answer):
    assert not base_images.registry_unreachable(f'Get "https://registry-1.docker.io/v2/": {answer}')


def test_a_failing_registry_read_is_an_error_not_a_free_tag(fake_tools):
    fake_tools("docker", 'echo "ERROR: failed to do request: Head \\"https://r/v2/x/manifests/y\\": 500 Internal Server Error" >&2; exit 1')
    with pytest.raises(PipelineError, match="500 Internal Server Error"):
        publish.remote_image(Docker(), "registry.example/x:y")


# ---------------------------------------------------------------- uv
@pytest.fixture
def locked_cell(locked_project):
    config = load(locked_project / "versions.toml")
    (cell,) = Filter.parse(["id=tf2.21.0-py3.11-cpu"]).select(cells(config))
    return locked_project, config, cell


@pytest.mark.parametrize(
    ("script", "why"),
    [
        ('echo "error: network unreachable" >&2; exit 2', "the resolver failed"),
        ("exit 0", "wrote no compiled.txt"),
        (': > "$(pwd)/compiled.txt"; exit 0', "pinned nothing"),
    ],
)
def test_a_failing_or_silent_resolver_is_an_error_and_the_lock_stays(fake_tools, locked_cell, script, why):
    root, config, cell = locked_cell
    before = {p.name: p.read_bytes() for p in (root / "locks" / cell.id).iterdir()}
    fake_tools("uv", script)
    with pytest.raises(PipelineError, match=why):
        lock.lock_cell(root, config, cell)
    assert {p.name: p.read_bytes() for p in (root / "locks" / cell.id).iterdir()} == before, "a failed resolve changed the lock"


# ---------------------------------------------------------------- docker save as a stream
def test_a_docker_save_that_fails_midway_is_an_error_not_a_short_archive(fake_tools):
    """reproduce reads `docker save` as a pipe: the tar that stops early, with a failing exit, raises."""
    fake_tools("docker", 'printf "%0512d" 0; echo "Error response from daemon: layer does not exist" >&2; exit 1')
    with pytest.raises(DockerException, match="layer does not exist"), Docker().save_stream("img:1") as stream:
        stream.read()


def test_a_reader_that_stops_early_is_an_error(fake_tools):
    fake_tools("docker", "head -c 5000000 /dev/zero")
    with pytest.raises(DockerException, match="after the end of the archive"), Docker().save_stream("img:1") as stream:
        stream.read(10)


def test_build_cache_records_go_children_first_one_prune_each(fake_tools, tmp_path):
    calls = tmp_path / "calls"
    fake_tools("docker", f'echo "$*" >> {calls}')
    made = datetime(2026, 12, 2, tzinfo=UTC)
    records = {i: CacheRecord(i, parents, "regular", made) for i, parents in
               {"child": ("parent",), "parent": ("root",), "merge": ("root", "other"), "root": (), "other": ()}.items()}  # fmt: skip
    Docker().remove_build_cache(records)
    pruned = [line.rsplit("id=", 1)[1] for line in calls.read_text().splitlines()]
    assert sorted(pruned) == sorted(records)
    for record in records.values():  # each parent goes after every record that builds on it
        assert all(pruned.index(parent) > pruned.index(record.id) for parent in record.parents)


# Recorded from `docker system df -v --format '{{json .BuildCache}}'` on this machine (Engine 20.10, CLI 28.2),
# trimmed to three records; the second one's Parent is how the CLI joins several parents.
RECORDED_CACHE = (
    '[{"CacheType":"regular","CreatedAt":"2026-12-02 05:46:37.22157997 +0000 UTC","CreatedSince":"About a minute ago",'
    '"Description":"fileop target","ID":"36gfa07uryv0jd4wuv23gfu47*","InUse":"true","LastUsedAt":"","LastUsedSince":"",'
    '"Parent":"qf2f7fctdorkx08mte7h1fgro","Shared":"false","Size":"103B","UsageCount":"0"},'
    '{"CacheType":"regular","CreatedAt":"2026-12-02 05:47:15 +0000 UTC","ID":"92v7b1yd9wssnt0n8rttzx90e",'
    '"Parent":"qcixd8caov718imn1j5uswvjt, 36gfa07uryv0jd4wuv23gfu47","Size":"1.21GB"},'
    '{"CacheType":"exec.cachemount","CreatedAt":"2026-12-02 05:40:00.1 +0000 UTC","ID":"pipcache","Parent":"","Size":"2GB"}]'
)


def test_a_recorded_build_cache_listing_is_read_with_times_and_every_parent(fake_tools, tmp_path):
    (tmp_path / "listing.json").write_text(RECORDED_CACHE)
    fake_tools("docker", f"cat {tmp_path / 'listing.json'}")
    records = Docker().build_cache_records()
    assert set(records) == {"36gfa07uryv0jd4wuv23gfu47", "92v7b1yd9wssnt0n8rttzx90e"}  # the cache mount is left out, the * dropped
    assert records["92v7b1yd9wssnt0n8rttzx90e"].parents == ("qcixd8caov718imn1j5uswvjt", "36gfa07uryv0jd4wuv23gfu47")
    assert records["36gfa07uryv0jd4wuv23gfu47"].created == datetime(2026, 12, 2, 5, 46, 37, 221579, tzinfo=UTC)


@pytest.mark.parametrize(
    "output",
    ['{"ID": "x"}', "[1, 2]", "not json", '[{"ID": "x", "CreatedAt": "yesterday"}]', '[{"CreatedAt": "2026-12-02 05:47:15 +0000 UTC"}]'],
    ids=["object", "not-records", "not-json", "no-time", "no-id"],
)
def test_a_build_cache_listing_of_the_wrong_shape_is_an_error(fake_tools, tmp_path, output):
    (tmp_path / "listing").write_text(output)
    fake_tools("docker", f"cat {tmp_path / 'listing'}")
    with pytest.raises(DockerException, match="build cache"):
        Docker().build_cache_records()


def test_an_engine_with_no_build_cache_lists_none(fake_tools):
    fake_tools("docker", "echo null")
    assert Docker().build_cache_records() == {}


def test_a_save_the_reader_meets_cut_short_raises_dockers_own_error(fake_tools, tmp_path):
    """The reader sees the short archive before docker's exit: docker's message still wins."""
    whole = tmp_path / "whole.tar"
    with tarfile.open(whole, "w") as tar:
        info = tarfile.TarInfo("abc/layer.tar")
        info.size = 300_000
        tar.addfile(info, io.BytesIO(b"x" * 300_000))
    fake_tools("docker", f'head -c 100000 {whole}; echo "Error response from daemon: layer abc does not exist" >&2; exit 1')
    with pytest.raises(DockerException, match="layer abc does not exist"), Docker().save_stream("img:1") as stream:
        read_saved(stream, "docker save img:1")


@pytest.mark.parametrize(
    ("info", "platform"), [('{"OSType":"linux","Architecture":"x86_64"}', "linux/amd64"), ('{"OSType":"linux","Architecture":"aarch64"}', "linux/arm64")]
)
def test_the_engine_platform_comes_from_docker_info(fake_tools, info, platform):
    fake_tools("docker", f"echo '{info}'")
    assert Docker().engine_platform() == platform


def test_an_engine_that_does_not_say_its_platform_is_an_error_not_amd64(fake_tools):
    fake_tools("docker", """echo '{"OSType":"linux","Architecture":"riscv64"}'""")
    with pytest.raises(DockerException, match="platform is unknown"):
        Docker().engine_platform()


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        ("ERROR: failed to solve: rpc error: code = Internal desc = unexpected EOF", True),
        ("ERROR: failed to receive status: rpc error: code = Unavailable desc = error reading from server: EOF", True),
        ("ERROR: failed to solve: executor failed running [/bin/sh -c false]: exit code: 1", False),
        ('ERROR: failed to solve: process "/bin/sh -c pip install" did not complete successfully: exit code: 1', False),
        ("ERROR: failed to solve: rpc error: code = Unknown desc = failed to compute cache key", False),
    ],
)
def test_only_a_broken_buildkit_connection_is_built_again(error, transient):
    from kerastack.docker_client import transient_build_error

    assert transient_build_error(error) is transient


def test_a_build_whose_buildkit_connection_broke_runs_once_more_and_a_failed_step_does_not(fake_tools, tmp_path):
    """The real adapter against a fake docker: the first build ends with BuildKit's EOF, the second succeeds."""
    counter = tmp_path / "builds"
    fake_tools(
        "docker",
        f'case "$*" in *"buildx build"*) n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter};\n'
        '  if [ "$n" = 0 ]; then echo "ERROR: failed to solve: rpc error: code = Internal desc = unexpected EOF" >&2; exit 1; fi;\n'
        '  echo "#1 [stage 1/1] RUN true"; exit 0;;\n'
        f'*"image inspect"*) echo \'[{{"Id": "sha256:{"1" * 64}"}}]\'; exit 0;; esac\nexit 99',
    )
    outcome = Docker().build("example/image:tag", context_path=tmp_path, tags=["example/image:tag"])
    assert outcome.ok and counter.read_text().strip() == "2", outcome
    assert any("built once more" in line for line in outcome.log)
    counter.write_text("5")
    fake_tools("docker", 'case "$*" in *"buildx build"*) echo "ERROR: failed to solve: executor failed running [x]: exit code: 1" >&2; exit 1;; esac\nexit 99')
    failed = Docker().build("example/image:tag", context_path=tmp_path, tags=["example/image:tag"])
    assert not failed.ok and "executor failed running" in failed.error
