"""scripts/launch on the hosts arm64 users have: Docker Desktop on macOS, and Windows (Docker Desktop with
its WSL 2 backend), besides a Docker engine on Linux.

- The folder goes to `docker run` as `--mount type=bind,source=...,target=/src`. The docker CLI reads that
  value as one CSV record with Go's encoding/csv (docker/cli opts/mount.go: csv.NewReader(value).Read(),
  then each field is cut at its first '='), so `go_csv_record` below reads it back the same way and
  the tests check that every path comes back as it went in: ':' ',' '=' spaces '"', Windows drive paths.
- Docker Desktop is known from `docker info`; there nothing is remapped and no root note is said. The
  recorded `docker info` / `docker version` outputs are in tests/unit/data/docker-hosts/ (the Docker
  Desktop ones are written by hand from Docker's documentation, and say so in their `_about` key).
- The platform: the engine's from `docker info` / `docker version` (aarch64 and arm64 alike; Docker Desktop
  on Apple silicon is linux/arm64), the image's from `docker image inspect` (image-linux-*.inspect.json),
  --platform's checks, the pull/run command lines that carry it, and the --check lines and warnings when
  the two differ, with the binfmt handlers of a Linux host read from a folder shaped like /proc/sys/fs/binfmt_misc.
- Windows paths are checked with ntpath / PureWindowsPath on any OS; the tests that resolve a real
  folder, or run a dry run, use this machine's own paths, so on ci.yml's Windows runner they check
  real Windows paths (and a Python without os.getuid).

Everything here needs only the standard library and pytest, and no Docker (marker `hosts`): ci.yml's
launcher-hosts job runs this file and the `hosts` tests of tests/unit/test_launch.py on GitHub's macOS
and Windows runners.
"""

from __future__ import annotations

import csv
import json
import ntpath
import os
import pathlib
import posixpath
import shlex
import types

import pytest

from tests.unit.test_launch import TOKEN, clean_env, run_launch

pytestmark = pytest.mark.hosts

HOSTS = pathlib.Path(__file__).resolve().parent / "data" / "docker-hosts"
DESKTOPS = ["desktop-macos-arm64", "desktop-windows-amd64"]
ENGINES = ["engine-linux-amd64"]


def recorded(name: str, what: str) -> dict:
    """tests/unit/data/docker-hosts/NAME.WHAT.json, without its `_about` note."""
    data = json.loads((HOSTS / f"{name}.{what}.json").read_text(encoding="utf-8"))
    data.pop("_about")
    return data


def path_module(version: dict):
    """The path rules of the host the docker CLI runs on, from `docker version`'s Client.Os."""
    return ntpath if version["Client"]["Os"] == "windows" else posixpath


# ----------------------------------------------------------------------------- the docker CLI's reading of --mount


def go_csv_record(text: str) -> list[str]:
    """The fields of `text` as Go's csv.Reader.Read returns them (Comma ',', LazyQuotes and TrimLeadingSpace
    false): a field that starts with '"' is quoted, '""' inside it is one '"', and the closing quote must
    end the field; a '"' anywhere in an unquoted field is an error. ValueError for what Go refuses. (Line
    breaks, which the launcher refuses, are not modelled.)"""
    fields: list[str] = []
    i, n = 0, len(text)
    while True:
        if i < n and text[i] == '"':
            i += 1
            parts = []
            while True:
                close = text.find('"', i)
                if close < 0:
                    raise ValueError('extraneous or missing " in quoted-field')
                parts.append(text[i:close])
                if text[close + 1 : close + 2] == '"':
                    parts.append('"')
                    i = close + 2
                    continue
                i = close + 1
                break
            if i < n and text[i] != ",":
                raise ValueError('extraneous or missing " in quoted-field')
            fields.append("".join(parts))
        else:
            comma = text.find(",", i)
            end = n if comma < 0 else comma
            if '"' in text[i:end]:
                raise ValueError('bare " in non-quoted-field')
            fields.append(text[i:end])
            i = end
        if i >= n:
            return fields
        i += 1  # past the comma


def docker_mount(value: str) -> dict[str, str]:
    """What `docker run --mount VALUE` mounts: opts.mount.go's loop over the CSV fields, for the keys a
    bind mount uses. ValueError where the CLI refuses the value."""
    aliases = {"src": "source", "dst": "target", "destination": "target"}
    mount = {"type": "volume"}
    for field in go_csv_record(value):
        key, equals, val = field.partition("=")
        if not equals:
            raise ValueError(f"invalid field '{field}' must be a key=value pair")
        key = aliases.get(key, key)
        if key not in ("type", "source", "target"):
            raise ValueError(f"unexpected key '{key}' in '{field}'")
        mount[key] = val.lower() if key == "type" else val
    return mount


def mount_value(cmd: list[str]) -> str:
    (value,) = [cmd[i + 1] for i, word in enumerate(cmd[:-1]) if word == "--mount"]
    return value


def test_the_reader_refuses_what_the_docker_cli_refuses():
    """So that the mount tests can fail: unquoted, these paths do not come back (or not at all)."""
    with pytest.raises(ValueError, match="bare"):
        docker_mount('type=bind,source=/say "hi",target=/src')
    with pytest.raises(ValueError, match="invalid field"):
        docker_mount("type=bind,source=/a,b,target=/src")  # the comma splits the path: 'b' is no key=value
    with pytest.raises(ValueError, match="extraneous"):
        go_csv_record('"source=/a"b",target=/src')
    assert docker_mount('type=bind,"source=/a,b",target=/src') == {"type": "bind", "source": "/a,b", "target": "/src"}
    assert docker_mount('type=bind,"source=/say ""hi""",target=/src')["source"] == '/say "hi"'


POSIX_FOLDERS = [
    "/Users/me/work",
    "/Users/me/ml:keras",  # `-v` would split here
    "/Users/me/a,b",
    "/Users/me/x=1",
    "/Users/me/My Notebooks",
    '/Users/me/say "hi"',
    '/Volumes/USB, 2/ch 1:"keras"=ok',
    '/"quoted"',
]
WINDOWS_FOLDERS = [
    str(pathlib.PureWindowsPath("C:/Users/me/work")),
    str(pathlib.PureWindowsPath("C:/Users/me/My Notebooks")),
    str(pathlib.PureWindowsPath("D:/data/chapter 1, keras=3")),
    str(pathlib.PureWindowsPath("//server/share/notebooks")),
    "C:\\",
]


@pytest.mark.parametrize("folder", POSIX_FOLDERS + WINDOWS_FOLDERS)
def test_every_folder_comes_back_from_the_mount_value_as_it_went_in(launch, folder):
    value = launch.mount_arg(folder)
    assert docker_mount(value) == {"type": "bind", "source": folder, "target": "/src"}
    # Python's csv, strict, reads the fields the same way (it is laxer about bare quotes, not stricter).
    (fields,) = list(csv.reader([value], strict=True))
    assert fields == go_csv_record(value)


@pytest.mark.parametrize("folder", ["/Users/me/work", "/Users/me/ml:keras", "/Users/me/x=1", "/Users/me/My Notebooks", "C:\\Users\\me\\work"])
def test_a_field_is_quoted_only_when_csv_needs_it(launch, folder):
    assert launch.mount_arg(folder) == f"type=bind,source={folder},target=/src"


@pytest.mark.parametrize("folder", ["/Users/me/line\nbreak", "/Users/me/cr\rhere", "C:\\Users\\me\\a\r\nb"])
def test_a_folder_with_a_line_break_is_refused_with_the_reason(launch, folder):
    with pytest.raises(launch.LaunchError, match="line break") as refused:
        launch.mount_arg(folder)
    assert refused.value.code == launch.EXIT_USAGE


# ----------------------------------------------------------------------------- Windows paths, on any OS


@pytest.mark.parametrize("folder", WINDOWS_FOLDERS[:3])
def test_a_windows_folder_goes_to_docker_run_as_it_is(launch, opts, folder):
    opts.dir = folder
    cmd = launch.build_run_command(opts, "example/img:1", 8888, remap=None, gpu_method=None)
    source = docker_mount(mount_value(cmd))["source"]
    assert source == folder and ntpath.isabs(source)
    assert pathlib.PureWindowsPath(source).drive in ("C:", "D:")
    assert "-v" not in cmd
    # The dry run's line, read back by a POSIX shell, gives the same words (backslashes included).
    shown = launch.format_run_for_display(cmd)
    assert shlex.split(shown)[1:] == cmd


def test_a_windows_path_is_absolute_by_ntpath_rules_only():
    """Why the launcher leaves the path to os.path: the same text is absolute on Windows, relative on POSIX."""
    folder = "C:\\Users\\me\\work"
    assert ntpath.isabs(folder) and not posixpath.isabs(folder)
    assert ntpath.abspath(folder) == folder
    assert pathlib.PureWindowsPath(folder).parts == ("C:\\", "Users", "me", "work")


# ----------------------------------------------------------------------------- this machine's own folders


def awkward_names() -> list[str]:
    """Folder names with what --mount must carry; Windows allows neither ':' nor '"' in a name."""
    if os.name == "nt":
        return ["chapter 1, keras=3", "a,b", "x=1"]
    return ['ch 1:"keras", v=3', "a:b", "a,b", "x=1", 'say "hi"']


@pytest.mark.parametrize("name", awkward_names())
def test_a_folder_of_this_machine_resolves_and_mounts_as_it_is(launch, tmp_path, name):
    folder = tmp_path / name
    folder.mkdir()
    opts = launch.parse_args(["--dir", str(folder)], environ={}, token_factory=lambda: TOKEN)
    assert opts.dir == os.path.abspath(str(folder)) and pathlib.PurePath(opts.dir).is_absolute()
    if os.name == "nt":
        assert pathlib.PureWindowsPath(opts.dir).drive, opts.dir
    cmd = launch.build_run_command(opts, "example/img:1", 8888, remap=None, gpu_method=None)
    assert docker_mount(mount_value(cmd))["source"] == opts.dir


def test_a_dry_run_without_docker_shows_the_mount_of_this_machines_folder(tmp_path):
    """The launcher as a command on this OS's Python, with no docker on PATH: it warns and still prints the
    `docker run` it would use. On Windows, with no UID to give: no --user and no KERAS_UID either."""
    folder = tmp_path / awkward_names()[0]
    folder.mkdir()
    empty = tmp_path / "no-docker-here"
    empty.mkdir()
    r = run_launch("--dry-run", "--image", "example/img:1", "--dir", str(folder), "--token", TOKEN, env=clean_env(PATH=str(empty)), cwd=str(empty))
    assert r.returncode == 0, r.stderr
    assert "docker command was not found" in r.stderr and "Traceback" not in r.stderr
    (line,) = [x for x in r.stdout.splitlines() if "docker run" in x]
    words = shlex.split(line)
    assert docker_mount(mount_value(words))["source"] == os.path.abspath(str(folder))
    if os.name == "nt":
        assert "--user" not in words and not any(w.startswith("KERAS_UID") for w in words)


def test_host_ids_without_getuid_are_none(launch):
    assert launch.host_ids(types.SimpleNamespace()) == (None, None)  # Windows' os module has no getuid
    assert launch.host_ids(types.SimpleNamespace(getuid=lambda: 501, getgid=lambda: 20)) == (501, 20)
    if hasattr(os, "getuid"):
        assert launch.host_ids() == (os.getuid(), os.getgid())
    else:
        assert launch.host_ids() == (None, None)


# ----------------------------------------------------------------------------- Docker Desktop, from docker info


@pytest.mark.parametrize("name", DESKTOPS + ENGINES)
def test_the_recordings_are_what_they_say(name):
    info, version = recorded(name, "info"), recorded(name, "version")
    assert info["ServerVersion"] == version["Server"]["Version"]
    assert info["ClientInfo"]["Os"] == version["Client"]["Os"]
    assert info["OSType"] == version["Server"]["Os"] == "linux"  # Linux containers, whatever the host
    platform = version["Server"]["Platform"]["Name"]
    assert platform.startswith("Docker Desktop ") == (name in DESKTOPS), platform
    if name in DESKTOPS:
        assert info["Name"] == "docker-desktop" and info["ClientInfo"]["Context"] == version["Client"]["Context"] == "desktop-linux"
        assert path_module(version) is (ntpath if "windows" in name else posixpath)


@pytest.mark.parametrize("name, desktop", [(n, True) for n in DESKTOPS] + [(n, False) for n in ENGINES])
def test_docker_desktop_is_known_from_docker_info(launch, name, desktop):
    assert launch.is_docker_desktop(recorded(name, "info")) is desktop


@pytest.mark.parametrize("name", DESKTOPS)
def test_either_sign_of_docker_desktop_is_enough_and_the_vm_name_alone_is_not(launch, name):
    info = recorded(name, "info")
    assert launch.is_docker_desktop(dict(info, Labels=[]))
    assert launch.is_docker_desktop(dict(info, OperatingSystem="Ubuntu 24.04.1 LTS"))
    assert not launch.is_docker_desktop(dict(info, Labels=None, OperatingSystem="Ubuntu 24.04.1 LTS"))  # Name is still docker-desktop
    assert not launch.is_docker_desktop({})


USERS = [
    (501, 20, (501, 20)),  # a macOS user and their folder
    (1000, 1000, (1000, 1000)),
    (0, 0, (0, 0)),  # root, a folder of root's
    (0, 0, (501, 20)),  # root (sudo), a folder of the user's
    (1001, 0, (1001, 0)),  # primary group root's
    (None, None, (0, 0)),  # Windows: no UIDs, os.stat says 0
]


@pytest.mark.parametrize("name", DESKTOPS)
@pytest.mark.parametrize("uid, gid, owner", USERS)
def test_on_docker_desktop_nothing_is_remapped_and_nothing_is_said(launch, opts, name, uid, gid, owner):
    info = recorded(name, "info")
    remap, note = launch.remap_decision(uid, gid, False, rootless=launch.is_rootless(info), folder_owner=owner, desktop=launch.is_docker_desktop(info))
    assert (remap, note) == (None, None)
    cmd = launch.build_run_command(opts, "img", 8888, remap=remap, gpu_method=None)
    assert "--user" not in cmd and not any(w.startswith(("KERAS_UID", "KERAS_GID")) for w in cmd)


def test_on_a_linux_engine_the_uid_dance_and_the_root_note_stay(launch):
    info = recorded("engine-linux-amd64", "info")
    desktop = launch.is_docker_desktop(info)
    assert launch.remap_decision(1001, 1002, False, folder_owner=(1001, 1002), desktop=desktop) == ((1001, 1002), None)
    remap, note = launch.remap_decision(0, 0, False, folder_owner=(0, 0), desktop=desktop)
    assert remap is None and "owned by UID 1000" in note


@pytest.mark.parametrize("name, remapped", [(n, False) for n in DESKTOPS] + [(n, True) for n in ENGINES])
def test_a_dry_run_on_a_recorded_engine(launch, tmp_path, monkeypatch, capsys, name, remapped):
    """main() as a user runs it, `docker info` answered by the recording; the user is root, as with sudo."""
    monkeypatch.setattr(launch, "docker_info", lambda: recorded(name, "info"))
    monkeypatch.setattr(launch, "container_exists", lambda name: False)
    monkeypatch.setattr(launch, "host_ids", lambda: (0, 0))
    folder = tmp_path / "nb"
    folder.mkdir()
    assert launch.main(["--dry-run", "--image", "example/img:1", "--dir", str(folder), "--token", TOKEN]) == 0
    out, err = capsys.readouterr()
    (line,) = [x for x in out.splitlines() if "docker run" in x]
    words = shlex.split(line)
    assert docker_mount(mount_value(words))["source"] == str(folder)
    assert ("you are root" in err) is remapped and TOKEN not in out + err
    if os.name != "nt" and remapped:  # a POSIX folder has an owner; tmp_path is this user's, not root's
        assert ("--user" in words) is (os.stat(folder).st_uid != 0)
    if not remapped:
        assert "--user" not in words and not any(w.startswith("KERAS_UID") for w in words)


def test_a_folder_docker_desktop_does_not_share_gets_the_setting_to_change(launch, opts):
    said = (
        "docker: Error response from daemon: Mounts denied: \n"
        "The path /Volumes/data/nb is not shared from the host and is not known to Docker.\n"
        "You can configure shared paths from Docker -> Preferences... -> Resources -> File Sharing.\n"
    )
    message = launch.explain_run_failure(said, opts, 8888)
    assert "File sharing" in message and opts.dir in message and "Mounts denied" in message


def test_the_help_says_how_the_folder_is_mounted_and_owned(launch):
    text = launch.build_parser().format_help()
    assert "--mount type=bind" in text and "C:\\Users\\me\\work" in text and "Docker Desktop" in text


# ----------------------------------------------------------------------------- the platform: the engine's, the image's, --platform

HOST_PLATFORMS = {"desktop-macos-arm64": "linux/arm64", "desktop-windows-amd64": "linux/amd64", "engine-linux-amd64": "linux/amd64"}


def image_inspect(arch: str) -> dict:
    """tests/unit/data/docker-hosts/image-linux-ARCH.inspect.json: `docker image inspect` of a kerastack image."""
    return recorded(f"image-linux-{arch}", "inspect")


@pytest.mark.parametrize("name", DESKTOPS + ENGINES)
def test_the_engines_platform_from_docker_info_and_docker_version_agree(launch, name):
    """docker info says uname -m (aarch64, x86_64), docker version Docker's own names (arm64, amd64): the same platform."""
    info, version = recorded(name, "info"), recorded(name, "version")
    assert launch.engine_platform(info) == launch.engine_platform({}, version) == launch.engine_platform(info, version) == HOST_PLATFORMS[name]


@pytest.mark.parametrize(
    "machine, platform",
    [("aarch64", "linux/arm64"), ("arm64", "linux/arm64"), ("x86_64", "linux/amd64"), ("armv7l", "linux/arm/v7"), ("sparc64", None), ("", None)],
)
def test_the_engines_architecture_in_either_naming(launch, machine, platform):
    info = dict(recorded("engine-linux-amd64", "info"), Architecture=machine)  # e.g. a Graviton or Grace machine's engine
    assert launch.engine_platform(info) == platform
    assert launch.engine_platform({}) is None


def test_docker_desktop_on_apple_silicon_is_an_arm64_host(launch, tmp_path):
    info = recorded("desktop-macos-arm64", "info")
    opts = launch.parse_args(["--dir", str(tmp_path)], environ={}, token_factory=lambda: TOKEN)
    plan = launch.plan_platform(opts, info)
    assert (plan.wanted, plan.host, plan.explicit, plan.args()) == ("linux/arm64", "linux/arm64", False, ["--platform", "linux/arm64"])


def test_the_image_platform_comes_from_docker_image_inspect(launch):
    assert launch.image_platform(image_inspect("amd64")) == "linux/amd64"
    assert launch.image_platform(image_inspect("arm64")) == "linux/arm64/v8"
    assert launch.image_platform({}) is None and launch.image_platform(None) is None
    assert launch.same_platform("linux/arm64/v8", "linux/arm64") and launch.same_platform("linux/amd64", "linux/amd64/v3")
    assert not launch.same_platform("linux/amd64", "linux/arm64") and not launch.same_platform("linux/arm/v6", "linux/arm/v7")


@pytest.mark.parametrize("value", ["linux/arm64", "linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux/amd64/v2", " linux/arm64 "])
def test_a_platform_docker_takes_is_accepted(launch, value, tmp_path):
    assert launch.parse_platform(value) == value.strip()
    opts = launch.parse_args(["--dir", str(tmp_path), "--platform", value], environ={}, token_factory=lambda: TOKEN)
    assert (opts.platform, opts.platform_source) == (value.strip(), "--platform")


@pytest.mark.parametrize(
    "value, words",
    [
        ("arm64", "names no operating system: write it as linux/arm64"),
        ("aarch64", "write it as linux/arm64"),
        ("linux/aarch64", "Docker calls aarch64 arm64: write linux/arm64"),
        ("linux/x86_64", "write linux/amd64"),
        ("Linux/ARM64", "lower case: linux/arm64"),
        ("darwin/arm64", "Linux images"),
        ("windows/amd64", "use linux/amd64"),
        ("linux/sparc", "known: linux/amd64, linux/arm64"),
        ("linux/amd64/v9", "the variants v1, v2, v3, v4"),
        ("linux/386/v1", "no variants: write linux/386"),
        ("linux/", "is not OS/ARCH[/VARIANT]"),
        ("linux/arm/v7/x", "is not OS/ARCH[/VARIANT]"),
        ("  ", "is empty"),
    ],
)
def test_a_bad_platform_is_refused_with_the_fix(launch, tmp_path, value, words):
    with pytest.raises(launch.LaunchError) as refused:
        launch.parse_args(["--dir", str(tmp_path), "--platform", value], environ={}, token_factory=lambda: TOKEN)
    assert refused.value.code == launch.EXIT_USAGE and words in refused.value.message, refused.value.message


def test_the_platform_from_the_environment_as_the_makefile_passes_it(launch, tmp_path):
    parse = lambda env, *args: launch.parse_args(["--dir", str(tmp_path), *args], environ=env, token_factory=lambda: TOKEN)  # noqa: E731
    assert parse({"KERASTACK_PLATFORM": "linux/amd64"}).platform == "linux/amd64"
    assert parse({"KERASTACK_PLATFORM": ""}).platform is None  # make run without PLATFORM=
    assert parse({"KERASTACK_PLATFORM": "linux/amd64"}, "--platform", "linux/arm64").platform == "linux/arm64"
    with pytest.raises(launch.LaunchError, match="KERASTACK_PLATFORM 'arm64' names no operating system") as refused:
        parse({"KERASTACK_PLATFORM": "arm64"})
    assert refused.value.code == launch.EXIT_USAGE


def test_a_bad_platform_as_a_command_exits_2(tmp_path):
    r = run_launch("--dry-run", "--image", "example/img:1", "--dir", str(tmp_path), "--platform", "linux/aarch64")
    assert r.returncode == 2 and "write linux/arm64" in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_pull_run_check_resolve_and_build_carry_the_platform(launch, opts):
    args = launch.PlatformPlan("linux/arm64", "linux/arm64", False, flag=True).args()
    assert args == ["--platform", "linux/arm64"]
    run = launch.build_run_command(opts, "example/img:1", 8888, remap=None, gpu_method=None, platform_args=args)
    assert run[:6] == ["docker", "run", "-d", "--rm", "--platform", "linux/arm64"] and run[-1] == "example/img:1"
    assert launch.pull_commands("always", "example/img:1", args) == ["docker pull --platform linux/arm64 example/img:1"]
    assert launch.pull_commands("missing", "example/img:1", args)[0].startswith("docker pull --platform linux/arm64 example/img:1    # only if")
    check = launch.check_command("example/img:1", None, [], "c1", args)
    assert check[3:5] == args and check.index("--platform") < check.index("example/img:1")
    resolve = launch.resolve_command("example/img:1", args)
    assert resolve[resolve.index("--platform") + 1] == "linux/arm64" and resolve.index("--platform") < resolve.index("example/img:1")
    lock = launch.parse_lock("# kerastack-lock: 1\n")
    build = launch.build_command("t:x", "/ctx", "example/img:1", "sha256:1", "keras", lock, {}, None, platform_args=args)
    assert build[build.index("--platform") + 1] == "linux/arm64" and build[-1] == "/ctx"
    # Without a platform (a dry run without an engine), none of them carries the flag.
    assert "--platform" not in launch.build_run_command(opts, "example/img:1", 8888, remap=None, gpu_method=None) + launch.check_command("i", None, [])
    assert launch.PlatformPlan().args() == []


def test_an_engine_too_old_for_the_flag(launch, tmp_path):
    old = dict(recorded("engine-linux-amd64", "info"), ServerVersion="19.03.15")
    plain = launch.parse_args(["--dir", str(tmp_path)], environ={}, token_factory=lambda: TOKEN)
    plan = launch.plan_platform(plain, old)
    assert (plan.wanted, plan.args()) == ("linux/amd64", [])  # still checked on the image, just not passed
    forced = launch.parse_args(["--dir", str(tmp_path), "--platform", "linux/arm64"], environ={}, token_factory=lambda: TOKEN)
    with pytest.raises(launch.LaunchError, match="needs Docker Engine 20.10 or later") as refused:
        launch.plan_platform(forced, old)
    assert refused.value.code == launch.EXIT_USAGE
    assert launch.plan_platform(forced, {}).args() == ["--platform", "linux/arm64"]  # a dry run without an engine shows it


class FakeEngine:
    """`docker pull` and `docker image inspect` of one image: what is here before, what a pull brings."""

    def __init__(self, launch, monkeypatch, here, registry, pull_ok=True):
        self.here, self.registry, self.pull_ok, self.pulls = here, registry, pull_ok, []
        monkeypatch.setattr(launch, "image_facts", lambda image: self.here)
        monkeypatch.setattr(launch, "docker", self.docker)

    def docker(self, *args, **kwargs):
        assert args[0] == "pull", args
        self.pulls.append(list(args))
        if self.pull_ok:
            self.here = self.registry
        return types.SimpleNamespace(returncode=0 if self.pull_ok else 1, stdout="", stderr="")


def platform_plan(launch, host_recording, platform=None):
    info = recorded(host_recording, "info")
    opts = launch.parse_args(["--check"] + (["--platform", platform] if platform else []), environ={})
    return launch.plan_platform(opts, info)


IMG = "ghcr.io/kerastack/keras-jupyter:2.21.0-py3.11-cpu"


def test_an_arm64_host_pulls_the_arm64_image(launch, monkeypatch):
    engine = FakeEngine(launch, monkeypatch, here=None, registry=image_inspect("arm64"))
    labels = launch.ensure_image(IMG, "always", platform_plan(launch, "desktop-macos-arm64"))
    assert engine.pulls == [["pull", "--platform", "linux/arm64", IMG]] and labels["io.kerastack.variant"] == "cpu"


def test_an_arm64_host_never_quietly_runs_the_amd64_image(launch, monkeypatch):
    """Today's registry has amd64 only: the pull brings an amd64 image, which is refused with how to run it anyway."""
    engine = FakeEngine(launch, monkeypatch, here=None, registry=image_inspect("amd64"))
    with pytest.raises(launch.LaunchError) as refused:
        launch.ensure_image(IMG, "always", platform_plan(launch, "desktop-macos-arm64"))
    message = refused.value.message
    assert refused.value.code == launch.EXIT_IMAGE and engine.pulls == [["pull", "--platform", "linux/arm64", IMG]]
    assert "is for linux/amd64, but this Docker engine runs linux/arm64" in message and "the registry has no linux/arm64 image" in message
    assert "--platform linux/amd64 (make run PLATFORM=linux/amd64)" in message and "emulation" in message and "CPU instructions" in message


def test_pull_never_and_missing_on_an_arm64_host_with_an_amd64_copy(launch, monkeypatch):
    engine = FakeEngine(launch, monkeypatch, here=image_inspect("amd64"), registry=image_inspect("amd64"))
    with pytest.raises(launch.LaunchError, match="the copy here is linux/amd64 and --pull never forbids") as refused:
        launch.ensure_image(IMG, "never", platform_plan(launch, "desktop-macos-arm64"))
    assert refused.value.code == launch.EXIT_IMAGE and engine.pulls == []
    # --pull missing: a copy for another platform is not the image asked for, so it is pulled for the host's platform.
    engine.registry = image_inspect("arm64")
    assert launch.ensure_image(IMG, "missing", platform_plan(launch, "desktop-macos-arm64"))["io.kerastack.variant"] == "cpu"
    assert engine.pulls == [["pull", "--platform", "linux/arm64", IMG]]


def test_asked_for_with_platform_the_amd64_image_runs_on_an_arm64_host(launch, monkeypatch):
    engine = FakeEngine(launch, monkeypatch, here=image_inspect("amd64"), registry=image_inspect("amd64"))
    plan = platform_plan(launch, "desktop-macos-arm64", "linux/amd64")
    assert launch.ensure_image(IMG, "never", plan)["io.kerastack.variant"] == "cpu"
    launch.ensure_image(IMG, "always", plan)
    assert engine.pulls == [["pull", "--platform", "linux/amd64", IMG]]


def test_asked_for_arm64_but_only_amd64_is_here(launch, monkeypatch):
    FakeEngine(launch, monkeypatch, here=image_inspect("amd64"), registry=image_inspect("amd64"), pull_ok=False)
    with pytest.raises(launch.LaunchError) as refused:
        launch.ensure_image(IMG, "always", platform_plan(launch, "engine-linux-amd64", "linux/arm64"))
    assert refused.value.code == launch.EXIT_IMAGE
    assert "is for linux/amd64, not the linux/arm64 asked for with --platform" in refused.value.message


def test_a_dry_run_on_docker_desktop_for_apple_silicon_asks_for_arm64(launch, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(launch, "docker_info", lambda: recorded("desktop-macos-arm64", "info"))
    monkeypatch.setattr(launch, "container_exists", lambda name: False)
    assert launch.main(["--dry-run", "--image", IMG, "--dir", str(tmp_path), "--token", TOKEN]) == 0
    out = capsys.readouterr().out
    assert f"docker pull --platform linux/arm64 {IMG}\n" in out
    words = shlex.split([x for x in out.splitlines() if "docker run" in x][0])
    assert words[words.index("--platform") + 1] == "linux/arm64"


# ----------------------------------------------------------------------------- --check: both platforms, and the emulation warning

CHECK_FACTS = {"python": "3.11.2", "machine": "x86_64", "tensorflow": "2.21.0", "keras": "3.12.4", "devices": ["/physical_device:CPU:0"]}
CPU = {"io.kerastack.variant": "cpu"}


def test_check_prints_the_image_platform_and_the_hosts(launch):
    lines, code = launch.check_report(CHECK_FACTS, False, None, CPU, "linux/amd64", "linux/amd64")
    assert code == 0 and lines[0] == "image variant:      cpu"
    assert lines[1:3] == ["image platform:     linux/amd64 (x86_64 in the container)", "host platform:      linux/amd64 (the Docker engine's)"]
    assert not any(line.startswith("emulation:") for line in lines) and lines[-1].startswith("verdict: ✓")
    assert not any("platform" in line for line in launch.check_report(CHECK_FACTS, False, None, CPU)[0])  # nothing known: no lines


def test_check_of_an_amd64_image_on_an_arm64_host_warns_about_emulation_and_avx(launch):
    lines, code = launch.check_report(CHECK_FACTS, False, None, CPU, "linux/amd64", "linux/arm64")
    (note,) = [line for line in lines if line.startswith("emulation:")]
    assert note.startswith("emulation:          warning: a linux/amd64 image on a linux/arm64 host runs under emulation")
    assert "slower" in note and "AVX" in note and "CPU instructions" in note and code == 0


def test_check_of_an_arm64_image_on_an_amd64_host_says_qemu(launch):
    facts = dict(CHECK_FACTS, machine="aarch64")
    lines, _ = launch.check_report(facts, False, None, CPU, "linux/arm64/v8", "linux/amd64")
    assert "image platform:     linux/arm64/v8 (aarch64 in the container)" in lines
    (note,) = [line for line in lines if line.startswith("emulation:")]
    assert "QEMU emulation (binfmt)" in note and "slower" in note and "AVX" not in note


def write_binfmt(folder: pathlib.Path, entries: dict[str, str], status: str | None = "enabled") -> str:
    folder.mkdir()
    if status is not None:
        (folder / "status").write_text(status + "\n")
        (folder / "register").write_text("")
    for name, text in entries.items():
        (folder / name).write_text(text)
    return str(folder)


QEMU_AARCH64 = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\noffset 0\nmagic 7f454c46\n"


@pytest.mark.parametrize(
    "entries, status, state",
    [
        ({"qemu-aarch64": QEMU_AARCH64}, "enabled", "registered"),  # Debian's qemu-user-static
        ({"arm64": "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: F\n"}, "enabled", "registered"),  # another name, QEMU's interpreter
        ({"qemu-aarch64": QEMU_AARCH64.replace("enabled", "disabled", 1)}, "enabled", "missing"),
        ({"qemu-aarch64": QEMU_AARCH64}, "disabled", "missing"),  # binfmt_misc switched off as a whole
        ({"qemu-x86_64": "enabled\ninterpreter /usr/bin/qemu-x86_64-static\n"}, "enabled", "missing"),
        ({}, None, "unmounted"),  # what this machine had: /proc/sys/fs/binfmt_misc exists, nothing mounted on it
    ],
)
def test_binfmt_handlers_for_arm64(launch, tmp_path, entries, status, state):
    assert launch.binfmt_state("arm64", write_binfmt(tmp_path / "binfmt_misc", entries, status)) == state


def test_no_binfmt_misc_at_all_claims_nothing(launch, tmp_path):
    assert launch.binfmt_state("arm64", str(tmp_path / "absent")) is None
    assert launch.binfmt_state("sparc", str(tmp_path)) is None


def test_without_a_handler_it_says_the_container_will_not_start_and_how_to_install_qemu(launch):
    missing = launch.binfmt_note("linux/arm64", launch.BINFMT_MISSING)
    assert "qemu-aarch64" in missing and "will fail to start" in missing and "apt-get install qemu-user-static" in missing
    unmounted = launch.binfmt_note("linux/arm64", launch.BINFMT_UNMOUNTED)
    assert "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc" in unmounted and "qemu-user-static" in unmounted
    assert launch.binfmt_note("linux/arm64", launch.BINFMT_REGISTERED) is None and launch.binfmt_note("linux/arm64", None) is None


def test_binfmt_is_read_only_for_an_engine_on_this_linux_machine(launch, monkeypatch):
    desktop = recorded("desktop-macos-arm64", "info")
    assert launch.emulator_state("amd64", desktop) is None  # Docker Desktop brings its own emulation
    remote = dict(recorded("engine-linux-amd64", "info"), Name="some-other-host")
    assert launch.emulator_state("arm64", remote) is None
    monkeypatch.setattr(launch, "emulator_state", lambda arch, info: launch.BINFMT_MISSING)
    assert launch.cannot_start_note("linux/amd64", "linux/amd64", {}) is None  # native: nothing to emulate
    assert "will fail to start" in launch.cannot_start_note("linux/arm64", "linux/amd64", {})


def test_check_of_an_arm64_image_without_binfmt(launch, monkeypatch, capsys):
    """run_check on an amd64 Linux engine, --platform linux/arm64, the arm64 image here, no handler: the warning
    first (stderr), and when the container does not start, the error says why and how to fix it."""
    info = recorded("engine-linux-amd64", "info")
    monkeypatch.setattr(launch, "image_facts", lambda image: image_inspect("arm64"))
    monkeypatch.setattr(launch, "emulator_state", lambda arch, info: launch.BINFMT_MISSING if arch == "arm64" else None)
    ran = []

    def docker(*args, **kwargs):
        ran.append(list(args))
        return types.SimpleNamespace(returncode=1, stdout="", stderr="exec /usr/local/bin/python: exec format error\n")

    monkeypatch.setattr(launch, "docker", docker)
    opts = launch.parse_args(["--check", "--image", IMG, "--pull", "never", "--platform", "linux/arm64"], environ={})
    with pytest.raises(launch.LaunchError) as failed:
        launch.run_check(opts, IMG, None, launch.plan_platform(opts, info), info)
    out, err = capsys.readouterr()
    assert out == "" and "will fail to start" in err
    assert "exec format error" in failed.value.message and "qemu-user-static" in failed.value.message
    assert ran[0][:4] == ["run", "--rm", "--platform", "linux/arm64"]
