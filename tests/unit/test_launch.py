"""Tests of scripts/launch, the one-file launcher.

Most tests call its pure functions (no Docker). A few run it as a subprocess: --help, --dry-run, and the
error paths. The end-to-end tests against a real Docker engine are in tests/integration/test_launch_e2e.py.
Tests marked `hosts` need nothing but the standard library and pytest on any OS: ci.yml runs them on
GitHub's macOS and Windows runners too, with tests/unit/test_launch_hosts.py (`pytest -m hosts`).
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import threading

import pytest

from tests.unit.conftest import LAUNCHER_TOKEN

ROOT = pathlib.Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "scripts" / "launch"
TOKEN = LAUNCHER_TOKEN  # the `opts` fixture's (tests/unit/conftest.py)


def _load_launch():
    loader = importlib.machinery.SourceFileLoader("launch", str(LAUNCH))
    spec = importlib.util.spec_from_loader("launch", loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules["launch"] = module  # dataclasses look their module up while the class is created
    loader.exec_module(module)
    return module


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("JUPYTER_TOKEN", "KERASTACK_IMAGE")}
    env.update(extra)
    return env


def free_port() -> int:
    """A port nothing listens on now (defined here, not imported from tests.containers: this module also
    runs on the macOS and Windows runners, which have neither the pipeline nor Docker)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_launch(*args, env=None, timeout=60, cwd=None):
    return subprocess.run(
        [sys.executable, str(LAUNCH), *args], capture_output=True, text=True, env=clean_env() if env is None else env, timeout=timeout, cwd=cwd
    )


# ----------------------------------------------------------------------------- the file itself


def test_launch_is_an_executable_python_script():
    assert os.access(LAUNCH, os.X_OK)
    assert LAUNCH.read_text().startswith("#!/usr/bin/env python3\n")


@pytest.mark.hosts
def test_launch_parses_as_python_3_8_and_imports_only_the_standard_library():
    source = LAUNCH.read_text(encoding="utf-8")
    tree = ast.parse(source, feature_version=(3, 8))  # rejects match statements, parenthesized withs...
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert imported, "no imports found"
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)
    # `X | Y` unions and builtin generics are only safe in annotations, which the future import defers.
    assert "from __future__ import annotations" in source


# ----------------------------------------------------------------------------- options


def test_defaults(launch, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    o = launch.parse_args([], environ={}, token_factory=lambda: TOKEN)
    assert (o.image, o.repo, o.tag, o.gpu) == (None, None, None, False)
    assert o.pull == "always"
    assert o.port is None
    assert o.bind == "127.0.0.1"
    assert o.dir == str(tmp_path.resolve())
    assert o.name is None
    assert (o.token, o.token_source) == (TOKEN, "generated")
    assert o.timeout == 180
    assert (o.detach, o.dry_run, o.no_remap) == (False, False, False)
    assert o.extra == []


@pytest.mark.hosts
def test_generated_token_is_random_hex(launch, tmp_path):
    a = launch.parse_args(["--dir", str(tmp_path)], environ={})
    b = launch.parse_args(["--dir", str(tmp_path)], environ={})
    assert re.fullmatch(r"[0-9a-f]{48}", a.token)
    assert a.token != b.token


@pytest.mark.hosts
def test_everything_after_double_dash_goes_to_docker_run(launch, tmp_path):
    o = launch.parse_args(["--dir", str(tmp_path), "--port", "9999", "--", "--memory", "8g", "--", "--cpus=2"], environ={}, token_factory=lambda: TOKEN)
    assert o.port == 9999
    assert o.extra == ["--memory", "8g", "--", "--cpus=2"]


@pytest.mark.hosts
def test_all_options(launch, tmp_path):
    o = launch.parse_args(
        [
            "--gpu",
            "--repo",
            "reg.example:5000/me/keras",
            "--tag",
            "2.21.0-py3.11-gpu-cuda12.5",
            "--pull",
            "never",
            "--port",
            "9000",
            "--bind",
            "0.0.0.0",
            "--name",
            "nb",
            "--token",
            "abc",
            "--no-remap",
            "--timeout",
            "30",
            "--detach",
            "--dry-run",
            "--dir",
            str(tmp_path),
        ],
        environ={},
    )
    assert o.gpu and o.no_remap and o.detach and o.dry_run
    assert (o.repo, o.tag, o.pull, o.port, o.bind, o.name) == ("reg.example:5000/me/keras", "2.21.0-py3.11-gpu-cuda12.5", "never", 9000, "0.0.0.0", "nb")
    assert (o.token, o.token_source, o.timeout) == ("abc", "option", 30.0)


@pytest.mark.hosts
@pytest.mark.parametrize(
    "args",
    [
        ["--port", "0"],
        ["--port", "70000"],
        ["--port", "http"],
        ["--pull", "sometimes"],
        ["--timeout", "0"],
        ["--unknown"],
        ["--gp"],  # no abbreviations: a typo must not silently mean another option
    ],
)
def test_bad_options_exit_2(launch, tmp_path, args, capsys):
    with pytest.raises(SystemExit) as exc:
        launch.parse_args(args + ["--dir", str(tmp_path)], environ={})
    assert exc.value.code == 2


@pytest.mark.hosts
def test_help_exits_0_and_mentions_gpu(launch, capsys):
    with pytest.raises(SystemExit) as exc:
        launch.parse_args(["--help"], environ={})
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--gpu" in out


def test_help_as_a_command(tmp_path):
    r = run_launch("--help", cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    for text in [
        "--gpu",
        "--image",
        "--repo",
        "--tag",
        "--pull",
        "--port",
        "--bind",
        "--dir",
        "--name",
        "--token",
        "--no-remap",
        "--timeout",
        "--detach",
        "--dry-run",
        "scripts/launch --gpu",
        "scripts/launch --dir ~/notebooks --port 9999",
        "scripts/launch --tag 2.21.0-py3.11-cpu",
        "scripts/launch -- --memory 8g",
        "exit codes",
    ]:
        assert text in r.stdout, text


@pytest.mark.hosts
@pytest.mark.parametrize(
    "token_args, environ, where",
    [
        (["--token", ""], {}, "--token"),
        ([], {"JUPYTER_TOKEN": ""}, "JUPYTER_TOKEN"),
        (["--token", ""], {"JUPYTER_TOKEN": "fine"}, "--token"),
    ],
)
def test_empty_token_is_rejected(launch, tmp_path, token_args, environ, where):
    with pytest.raises(launch.LaunchError) as exc:
        launch.parse_args(token_args + ["--dir", str(tmp_path)], environ=environ)
    assert exc.value.code == launch.EXIT_USAGE
    assert where in exc.value.message and "token" in exc.value.message


@pytest.mark.hosts
def test_token_from_environment_and_option(launch, tmp_path):
    d = ["--dir", str(tmp_path)]
    assert launch.parse_args(d, environ={"JUPYTER_TOKEN": "fromenv"}).token == "fromenv"
    o = launch.parse_args(d + ["--token", "fromopt"], environ={"JUPYTER_TOKEN": "fromenv"})
    assert (o.token, o.token_source) == ("fromopt", "option")


def test_dir_must_exist_and_becomes_absolute(launch, tmp_path, monkeypatch):
    (tmp_path / "nb").mkdir()
    monkeypatch.chdir(tmp_path)
    assert launch.parse_args(["--dir", "nb"], environ={}).dir == str(tmp_path / "nb")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert launch.parse_args(["--dir", "~/nb"], environ={}).dir == str(tmp_path / "nb")
    with pytest.raises(launch.LaunchError) as exc:
        launch.parse_args(["--dir", str(tmp_path / "missing")], environ={})
    assert exc.value.code == 2 and "does not exist" in exc.value.message
    (tmp_path / "file").write_text("x")
    with pytest.raises(launch.LaunchError, match="not a folder"):
        launch.parse_args(["--dir", str(tmp_path / "file")], environ={})


@pytest.mark.hosts
@pytest.mark.parametrize(
    "bind, expected",
    [
        ("127.0.0.1", "127.0.0.1"),
        ("localhost", "127.0.0.1"),
        ("0.0.0.0", "0.0.0.0"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("192.168.1.20", "192.168.1.20"),
    ],
)
def test_bind_addresses(launch, tmp_path, bind, expected):
    assert launch.parse_args(["--bind", bind, "--dir", str(tmp_path)], environ={}).bind == expected


@pytest.mark.hosts
@pytest.mark.parametrize("bind", ["example.com", "", "256.1.1.1"])
def test_bad_bind_address(launch, tmp_path, bind):
    with pytest.raises(launch.LaunchError) as exc:
        launch.parse_args(["--bind", bind, "--dir", str(tmp_path)], environ={})
    assert exc.value.code == 2


# ----------------------------------------------------------------------------- image reference


def _image(launch, tmp_path, args, environ=None):
    o = launch.parse_args(args + ["--dir", str(tmp_path)], environ=environ or {}, token_factory=lambda: TOKEN)
    return launch.resolve_image(o)


@pytest.mark.hosts
@pytest.mark.parametrize(
    "args, environ, expected",
    [
        ([], {}, "ghcr.io/kerastack/keras-jupyter:latest"),
        (["--gpu"], {}, "ghcr.io/kerastack/keras-jupyter:latest-gpu"),
        (["--tag", "2.21.0-py3.11-cpu"], {}, "ghcr.io/kerastack/keras-jupyter:2.21.0-py3.11-cpu"),
        (["--gpu", "--tag", "2.21.0-py3.11-gpu-cuda12.5"], {}, "ghcr.io/kerastack/keras-jupyter:2.21.0-py3.11-gpu-cuda12.5"),
        (["--repo", "localhost:5000/kj"], {}, "localhost:5000/kj:latest"),
        (["--repo", "me/kj", "--gpu"], {}, "me/kj:latest-gpu"),
        ([], {"KERASTACK_IMAGE": "mirror.example/kj"}, "mirror.example/kj:latest"),
        (["--repo", "mine/kj"], {"KERASTACK_IMAGE": "mirror.example/kj"}, "mine/kj:latest"),
        (["--image", "example/img:1"], {}, "example/img:1"),
        (["--image", "example/img:1", "--gpu"], {}, "example/img:1"),
        (["--image", "example/img:1"], {"KERASTACK_IMAGE": "mirror.example/kj"}, "example/img:1"),
        (["--image", "example/img@sha256:" + "a" * 64], {}, "example/img@sha256:" + "a" * 64),
    ],
)
def test_resolve_image(launch, tmp_path, args, environ, expected):
    assert _image(launch, tmp_path, args, environ) == expected


@pytest.mark.hosts
@pytest.mark.parametrize(
    "args",
    [
        ["--image", "a/b:1", "--tag", "x"],
        ["--image", "a/b:1", "--repo", "c/d"],
        ["--repo", "a/b:1"],
        ["--repo", "a/b@sha256:" + "0" * 64],
        ["--tag", "bad tag"],
        ["--tag=-x"],
        ["--image", " "],
    ],
)
def test_contradictory_or_bad_references(launch, tmp_path, args):
    with pytest.raises(launch.LaunchError) as exc:
        _image(launch, tmp_path, args)
    assert exc.value.code == 2


# ----------------------------------------------------------------------------- docker run arguments


def _value_after(cmd, flag):
    return [cmd[i + 1] for i, a in enumerate(cmd[:-1]) if a == flag]


@pytest.mark.hosts
def test_run_command_defaults(launch, opts, tmp_path):
    cmd = launch.build_run_command(opts, "example/img:1", 8888, remap=None, gpu_method=None)
    assert cmd[:4] == ["docker", "run", "-d", "--rm"]
    assert _value_after(cmd, "--name") == ["kerastack-8888"]
    assert _value_after(cmd, "-p") == ["127.0.0.1:8888:8888"]
    assert _value_after(cmd, "--mount") == ["type=bind,source=%s,target=/src" % opts.dir]
    assert opts.dir == os.path.abspath(str(tmp_path)) and os.path.isabs(opts.dir)
    assert "-v" not in cmd
    assert _value_after(cmd, "-e") == ["JUPYTER_TOKEN"]  # the value travels in the environment
    assert cmd[-1] == "example/img:1"
    assert not any(TOKEN in a for a in cmd)
    assert "--user" not in cmd and "--gpus" not in cmd and "--device" not in cmd


@pytest.mark.hosts
def test_run_command_host_port_and_name(launch, opts):
    cmd = launch.build_run_command(opts, "i", 8890, remap=None, gpu_method=None)
    assert _value_after(cmd, "-p") == ["127.0.0.1:8890:8888"]
    assert _value_after(cmd, "--name") == ["kerastack-8890"]
    opts.name, opts.bind = "mine", "::1"
    cmd = launch.build_run_command(opts, "i", 8890, remap=None, gpu_method=None)
    assert _value_after(cmd, "--name") == ["mine"]
    assert _value_after(cmd, "-p") == ["[::1]:8890:8888"]


@pytest.mark.hosts
def test_run_command_remaps_a_normal_user(launch, opts):
    cmd = launch.build_run_command(opts, "img", 8888, remap=(1234, 4321), gpu_method=None)
    assert _value_after(cmd, "--user") == ["root"]
    assert "KERAS_UID=1234" in _value_after(cmd, "-e")
    assert "KERAS_GID=4321" in _value_after(cmd, "-e")
    assert cmd[-1] == "img"


@pytest.mark.hosts
def test_extra_args_come_just_before_the_image(launch, tmp_path):
    o = launch.parse_args(["--dir", str(tmp_path), "--gpu", "--", "--memory", "8g", "-e", "A=1"], environ={}, token_factory=lambda: TOKEN)
    cmd = launch.build_run_command(o, "img:gpu", 8888, remap=(1000, 1000), gpu_method=launch.GPU_RUNTIME)
    assert cmd[-5:] == ["--memory", "8g", "-e", "A=1", "img:gpu"]
    assert cmd.index("--gpus") < cmd.index("--memory") and cmd.index("--user") < cmd.index("--memory")


@pytest.mark.hosts
@pytest.mark.parametrize(
    "method, expected",
    [
        ("runtime", ["--gpus", "all"]),
        ("cdi", ["--device", "nvidia.com/gpu=all"]),
    ],
)
def test_run_command_gpu_flags(launch, opts, method, expected):
    opts.gpu = True
    cmd = launch.build_run_command(opts, "img", 8888, remap=None, gpu_method=method)
    i = cmd.index(expected[0])
    assert cmd[i : i + 2] == expected


@pytest.mark.hosts
@pytest.mark.parametrize(
    "uid, gid, no_remap, rootless, remap, note",
    [
        (1001, 1002, False, False, (1001, 1002), None),
        (1000, 1000, False, False, (1000, 1000), None),
        (0, 0, False, False, None, "UID 1000"),
        (1001, 1002, True, False, None, None),
        (0, 0, True, False, None, None),
        (None, None, False, False, None, None),
        (1001, 1002, False, True, None, "rootless"),
    ],
)
def test_remap_decision(launch, uid, gid, no_remap, rootless, remap, note):
    got_remap, got_note = launch.remap_decision(uid, gid, no_remap, rootless)
    assert got_remap == remap
    if note is None:
        assert got_note is None
    else:
        assert note in got_note


@pytest.mark.hosts
def test_as_root_jupyter_takes_the_folder_owners_ids(launch):
    remap, note = launch.remap_decision(0, 0, no_remap=False, folder_owner=(4321, 4322))
    assert remap == (4321, 4322) and "UID 4321" in note
    remap, note = launch.remap_decision(0, 0, no_remap=False, folder_owner=(0, 0))
    assert remap is None and "UID 1000" in note
    assert launch.remap_decision(1001, 1002, no_remap=False, folder_owner=(4321, 4322))[0] == (1001, 1002)


@pytest.mark.hosts
def test_root_is_never_remapped_so_jupyter_never_runs_as_root(launch, opts):
    remap, note = launch.remap_decision(0, 0, no_remap=False)
    cmd = launch.build_run_command(opts, "img", 8888, remap=remap, gpu_method=None)
    assert "--user" not in cmd and not any(a.startswith("KERAS_UID") for a in cmd)
    assert "owned by UID 1000" in note


@pytest.mark.hosts
def test_displayed_command_masks_the_token(launch, opts):
    cmd = launch.build_run_command(opts, "example/img:1", 8888, remap=None, gpu_method=None)
    shown = launch.format_run_for_display(cmd)
    assert shown.startswith("JUPYTER_TOKEN=*** docker run -d --rm ")
    assert TOKEN not in shown
    assert shown.endswith(" example/img:1")


@pytest.mark.hosts
def test_mask(launch):
    assert launch.mask("url ?token=%s end %s" % (TOKEN, TOKEN), TOKEN) == "url ?token=*** end ***"
    assert launch.mask("a+b%2Bc", "b+c") == "a+***"  # the URL-quoted form too
    assert launch.mask("nothing", "") == "nothing"


# ----------------------------------------------------------------------------- GPU detection

INFO_NO_GPU = {"ServerVersion": "20.10.24+dfsg1", "Runtimes": {"runc": {"path": "runc"}, "io.containerd.runc.v2": {"path": "runc"}}, "CDISpecDirs": None}
INFO_RUNTIME = {
    "ServerVersion": "27.5.1",
    "Runtimes": {"runc": {"path": "runc"}, "nvidia": {"path": "nvidia-container-runtime"}},
    "CDISpecDirs": ["/etc/cdi", "/var/run/cdi"],
}
INFO_CDI = {
    "ServerVersion": "28.3.2",
    "Runtimes": {"runc": {"path": "runc"}},
    "CDISpecDirs": ["/etc/cdi", "/var/run/cdi"],
    "DiscoveredDevices": [{"Source": "cdi", "ID": "nvidia.com/gpu=0"}, {"Source": "cdi", "ID": "nvidia.com/gpu=all"}],
}


@pytest.mark.hosts
def test_gpu_runtime(launch):
    assert launch.detect_gpu(INFO_RUNTIME) == launch.GPU_RUNTIME == "runtime"
    both = dict(INFO_CDI, Runtimes=INFO_RUNTIME["Runtimes"])
    assert launch.detect_gpu(both) == "runtime"  # the runtime wins: --gpus all is the usual form


@pytest.mark.hosts
def test_gpu_cdi_devices(launch):
    assert launch.detect_gpu(INFO_CDI) == launch.GPU_CDI == "cdi"


@pytest.mark.hosts
def test_gpu_neither(launch):
    assert launch.detect_gpu(INFO_NO_GPU) is None
    assert launch.detect_gpu({}) is None
    other = dict(INFO_CDI, DiscoveredDevices=[{"Source": "cdi", "ID": "amd.com/gpu=0"}, {"Source": "other", "ID": "nvidia.com/gpu=0"}])
    assert launch.detect_gpu(other) is None
    old = dict(INFO_CDI, ServerVersion="28.1.1")  # before 28.2 the field means nothing
    assert launch.detect_gpu(old) is None


@pytest.mark.hosts
def test_gpu_cdi_spec_files(launch):
    info = dict(INFO_NO_GPU, ServerVersion="27.3.1", CDISpecDirs=["/etc/cdi"])
    assert launch.detect_gpu(info, ["/etc/cdi/nvidia.yaml"]) == "cdi"
    assert launch.detect_gpu(info, []) is None
    assert launch.detect_gpu(INFO_NO_GPU, ["/etc/cdi/nvidia.yaml"]) is None  # CDI is off in that engine


def test_find_local_cdi_specs(launch, tmp_path):
    (tmp_path / "nvidia.yaml").write_text("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices: []\n")
    (tmp_path / "other.yaml").write_text("cdiVersion: 0.5.0\nkind: vendor.com/thing\n")
    (tmp_path / "notes.txt").write_text("nvidia.com/gpu")
    info = {"Name": socket.gethostname(), "CDISpecDirs": [str(tmp_path), str(tmp_path / "absent")]}
    assert launch.find_local_cdi_specs(info) == [str(tmp_path / "nvidia.yaml")]
    assert launch.find_local_cdi_specs(dict(info, Name="another-host")) == []  # a remote engine
    assert launch.find_local_cdi_specs(dict(info, CDISpecDirs=None)) == []


@pytest.mark.hosts
def test_gpu_run_args(launch):
    assert launch.gpu_run_args("runtime") == ["--gpus", "all"]
    assert launch.gpu_run_args("cdi") == ["--device", "nvidia.com/gpu=all"]
    assert launch.gpu_run_args(None) == []


@pytest.mark.hosts
def test_no_gpu_message_says_what_to_do(launch):
    msg = launch.no_gpu_message()
    for text in [
        "NVIDIA runtime",
        "CDI",
        "NVIDIA driver",
        "NVIDIA Container Toolkit",
        "scripts/install-nvidia-container-toolkit.sh",
        "nvidia-ctk runtime configure --runtime=docker",
        "restart",
    ]:
        assert text in msg, text


def test_gpu_requested_without_support_exits_4(launch, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(launch, "docker_info", lambda: dict(INFO_NO_GPU))
    monkeypatch.setattr(launch, "container_exists", lambda name: False)
    monkeypatch.setattr(launch, "ensure_image", lambda *a: pytest.fail("must not pull"))
    assert launch.main(["--gpu", "--dir", str(tmp_path), "--token", TOKEN]) == 4
    err = capsys.readouterr().err
    assert "NVIDIA Container Toolkit" in err and "Traceback" not in err


def test_gpu_dry_run_uses_the_detected_form(launch, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(launch, "docker_info", lambda: dict(INFO_CDI))
    monkeypatch.setattr(launch, "container_exists", lambda name: False)
    assert launch.main(["--gpu", "--dry-run", "--dir", str(tmp_path), "--token", TOKEN]) == 0
    out = capsys.readouterr().out
    assert "--device nvidia.com/gpu=all ghcr.io/kerastack/keras-jupyter:latest-gpu" in out
    assert "--gpus" not in out and TOKEN not in out


@pytest.mark.hosts
@pytest.mark.parametrize(
    "label, gpu, host, expected",
    [
        ("gpu", False, None, "TensorFlow will fall back to the CPU"),
        ("gpu", False, "runtime", "--gpu"),
        ("cpu", True, "runtime", "CPU image"),
        ("cpu", False, None, None),
        ("gpu", True, "runtime", None),
        (None, False, None, None),
    ],
)
def test_variant_notice(launch, label, gpu, host, expected):
    notice = launch.variant_notice(label, gpu, host)
    if expected is None:
        assert notice is None
    else:
        assert expected in notice


# ----------------------------------------------------------------------------- ports and URL


@pytest.mark.hosts
def test_default_port_when_free(launch):
    assert launch.choose_port(None, lambda p: True) == (8888, None)


@pytest.mark.hosts
def test_default_port_falls_back_to_a_free_one(launch):
    taken = {8888, 8889, 8890}
    port, message = launch.choose_port(None, lambda p: p not in taken)
    assert port == 8891
    assert "8888" in message and "8891" in message


@pytest.mark.hosts
def test_explicit_port(launch):
    assert launch.choose_port(9999, lambda p: p == 9999) == (9999, None)
    with pytest.raises(launch.LaunchError) as exc:
        launch.choose_port(9999, lambda p: p != 9999)
    assert exc.value.code == 2 and "9999" in exc.value.message


@pytest.mark.hosts
def test_no_free_port_at_all(launch):
    with pytest.raises(launch.LaunchError, match="--port"):
        launch.choose_port(None, lambda p: False)


def test_port_is_free_sees_a_listener(launch):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        assert launch.port_is_free("127.0.0.1", port) is False
        assert launch.port_is_free("0.0.0.0", port) is False
    finally:
        s.close()
    assert launch.port_is_free("127.0.0.1", port) is True


def test_port_is_free_rejects_a_foreign_address(launch):
    with pytest.raises(launch.LaunchError, match="not an address of this machine"):
        launch.port_is_free("192.0.2.123", 8888)  # TEST-NET-1: never local


@pytest.mark.hosts
@pytest.mark.parametrize(
    "bind, expected",
    [
        ("127.0.0.1", "http://localhost:8890/lab?token=abc"),
        ("0.0.0.0", "http://localhost:8890/lab?token=abc"),
        ("::", "http://localhost:8890/lab?token=abc"),
        ("::1", "http://localhost:8890/lab?token=abc"),
        ("192.168.1.20", "http://192.168.1.20:8890/lab?token=abc"),
        ("fd00::5", "http://[fd00::5]:8890/lab?token=abc"),
    ],
)
def test_format_url(launch, bind, expected):
    url = launch.format_url(bind, 8890, "abc")
    assert url == expected
    assert "0.0.0.0" not in url


@pytest.mark.hosts
def test_bind_warning(launch):
    assert launch.bind_warning("127.0.0.1") is None
    assert launch.bind_warning("::1") is None
    assert "reachable from the network" in launch.bind_warning("0.0.0.0")
    assert "token" in launch.bind_warning("192.168.1.20")


@pytest.mark.hosts
def test_probe_url(launch):
    assert launch.probe_url("0.0.0.0", 9000) == "http://127.0.0.1:9000/api/status"
    assert launch.probe_url("127.0.0.1", 9000) == "http://127.0.0.1:9000/api/status"
    assert launch.probe_url("::", 9000) == "http://[::1]:9000/api/status"


# ----------------------------------------------------------------------------- container states


@pytest.mark.hosts
@pytest.mark.parametrize(
    "state, kind",
    [
        ({"Status": "running", "Running": True, "Health": {"Status": "healthy"}}, "ready"),
        ({"Status": "running", "Running": True, "Health": {"Status": "starting"}}, "starting"),
        ({"Status": "running", "Running": True, "Health": {"Status": "unhealthy"}}, "unhealthy"),
        ({"Status": "running", "Running": True}, "no-healthcheck"),
        ({"Status": "created", "Running": False}, "starting"),
        ({"Status": "exited", "Running": False, "ExitCode": 1, "Health": {"Status": "starting"}}, "exited"),
        ({"Status": "removing", "Running": False}, "exited"),
        (None, "exited"),
    ],
)
def test_classify_state(launch, state, kind):
    assert launch.classify_state(state) == kind


class FakeClock:
    """time.monotonic and time.sleep for poll_until_ready, without waiting."""

    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.mark.hosts
def test_poll_returns_as_soon_as_the_api_answers(launch):
    clock = FakeClock()
    answers = iter([False] * 9 + [True])
    states = []
    kind = launch.poll_until_ready(lambda: next(answers), lambda: states.append(clock()) or "starting", 180, clock=clock, sleep=clock.sleep)
    assert kind == "ready"
    assert clock.sleeps == [0.05] * 9  # polled every 50 ms, not every health-check interval
    assert states == [0.0]  # docker inspect at most once a second


@pytest.mark.hosts
def test_poll_asks_docker_about_the_container_once_a_second(launch):
    clock = FakeClock()
    states = []
    kind = launch.poll_until_ready(lambda: False, lambda: states.append(round(clock(), 2)) or "starting", 3.0, clock=clock, sleep=clock.sleep)
    assert kind == "timeout"
    assert [round(t) for t in states] == [0, 1, 2, 3]


@pytest.mark.hosts
@pytest.mark.parametrize("state", ["exited", "unhealthy", "ready"])
def test_poll_stops_on_what_docker_says(launch, state):
    clock = FakeClock()
    kind = launch.poll_until_ready(lambda: False, lambda: state, 180, clock=clock, sleep=clock.sleep)
    assert kind == state and clock.now == 0.0


def test_the_probe_sends_the_token_and_needs_a_2xx(launch):
    import http.server

    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization")))
            ok = self.headers.get("Authorization") == "token %s" % TOKEN
            self.send_response(200 if ok else 403)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = launch.probe_url("127.0.0.1", server.server_address[1])
        assert launch.token_accepted(url, TOKEN)
        assert not launch.token_accepted(url, "wrong")
    finally:
        server.shutdown()
    assert seen[0] == ("/api/status", "token %s" % TOKEN)
    assert not launch.token_accepted("http://127.0.0.1:%d/api/status" % free_port(), TOKEN)  # nothing listens


@pytest.mark.hosts
@pytest.mark.parametrize(
    "returncode, out, err, code, words",
    [
        (0, "0\n", "", 0, "Jupyter stopped."),
        (0, "137\n", "", 1, "exit status 137"),
        (1, "", "Error response from daemon: No such container: kerastack-8888\n", 1, "vanished"),
        (1, "", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock\n", 1, "lost track"),
        (0, "", "", 1, "lost track"),  # empty output is never a clean stop
        (-9, "", "", 1, "no message, exit -9"),
    ],
)
def test_wait_outcome(launch, returncode, out, err, code, words):
    got_code, message = launch.wait_outcome(returncode, out, err)
    assert got_code == code
    assert words in message


def test_sighup_cleans_up_like_sigterm(launch):
    assert signal.SIGHUP in launch.CLEANUP_SIGNALS and signal.SIGTERM in launch.CLEANUP_SIGNALS


# ----------------------------------------------------------------------------- as a command


def _run_line(stdout):
    lines = [l for l in stdout.splitlines() if "docker run" in l]
    assert len(lines) == 1, stdout
    return lines[0]


def test_dry_run_prints_the_command(tmp_path):
    r = run_launch("--dry-run", "--image", "example/img:1", "--dir", str(tmp_path), "--token", TOKEN)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert TOKEN not in r.stdout + r.stderr
    # With an engine here, both carry its platform (see test_launch_platform.py); without one, neither does.
    pull = re.search(r"^docker pull (--platform linux/[a-z0-9/]+ )?example/img:1$", r.stdout, re.M)
    assert pull, r.stdout
    line = _run_line(r.stdout)
    assert line.startswith("JUPYTER_TOKEN=*** docker run -d --rm %s--name kerastack-" % (pull.group(1) or "")), line
    assert re.search(r" -p 127\.0\.0\.1:(\d+):8888 ", line), line
    port = re.search(r" -p 127\.0\.0\.1:(\d+):8888 ", line).group(1)
    assert "--name kerastack-%s " % port in line
    assert " --mount type=bind,source=%s,target=/src " % tmp_path.resolve() in line
    assert " -e JUPYTER_TOKEN " in line
    assert line.endswith(" example/img:1")
    assert "http://localhost:%s/lab?token=***" % port in r.stdout


def test_dry_run_with_extra_args_env_token_and_fixed_port(tmp_path):
    env = clean_env(JUPYTER_TOKEN=TOKEN)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = run_launch(
        "--dry-run",
        "--image",
        "example/img:1",
        "--dir",
        str(tmp_path),
        "--port",
        str(port),
        "--pull",
        "never",
        "--name",
        "nb1",
        "--",
        "--memory",
        "8g",
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert TOKEN not in r.stdout + r.stderr
    assert "docker pull" not in r.stdout
    line = _run_line(r.stdout)
    assert line.endswith(" --memory 8g example/img:1")
    assert " -p 127.0.0.1:%d:8888 " % port in line and " --name nb1 " in line


def test_dry_run_works_without_a_daemon(tmp_path):
    r = run_launch("--dry-run", "--image", "example/img:1", "--dir", str(tmp_path), env=clean_env(DOCKER_HOST="unix:///nonexistent/docker.sock"))
    assert r.returncode == 0, r.stderr
    assert "not reachable" in r.stderr or "not found" in r.stderr
    assert "example/img:1" in _run_line(r.stdout)


def test_unreachable_daemon_is_one_clear_error(tmp_path):
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "docker").write_text(
        "#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///nonexistent/docker.sock. Is the docker daemon running?' >&2\nexit 1\n"
    )
    (stub / "docker").chmod(0o755)
    r = run_launch("--image", "example/img:1", "--dir", str(tmp_path), env=clean_env(PATH="%s:%s" % (stub, os.environ["PATH"])))
    assert r.returncode == 3
    assert "Docker daemon is not reachable" in r.stderr and "systemctl start docker" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_docker_cli(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    r = run_launch("--image", "example/img:1", "--dir", str(tmp_path), env=clean_env(PATH=str(empty)))
    assert r.returncode == 3
    assert "docker command was not found" in r.stderr and "Traceback" not in r.stderr


def test_empty_token_as_a_command(tmp_path):
    r = run_launch("--dry-run", "--dir", str(tmp_path), env=clean_env(JUPYTER_TOKEN=""))
    assert r.returncode == 2
    assert "JUPYTER_TOKEN is empty" in r.stderr and "Traceback" not in r.stderr


def test_missing_dir_as_a_command(tmp_path):
    r = run_launch("--dry-run", "--dir", str(tmp_path / "nope"))
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


# ----------------------------------------------------------------------------- --check, on recorded probe outputs

CHECK_DATA = ROOT / "tests" / "unit" / "data" / "launch-check"
CPU_LABELS = {"io.kerastack.variant": "cpu"}
GPU_LABELS = {"io.kerastack.variant": "gpu", "io.kerastack.nvidia.driver.min": "555.42"}


def recorded_facts(launch, name):
    facts = launch.parse_check_output((CHECK_DATA / name).read_text(encoding="utf-8"))
    assert facts is not None, name
    return facts


@pytest.mark.hosts
def test_check_cpu_image(launch):
    lines, code = launch.check_report(recorded_facts(launch, "cpu-image-cpu-host.txt"), False, None, CPU_LABELS)
    text = "\n".join(lines)
    assert code == 0
    assert "Python:             3.11.2" in text and "TensorFlow:         2.21.0" in text and "Keras:              3.12.4" in text
    assert "devices:            /physical_device:CPU:0" in text
    assert lines[-1].startswith("verdict: ✓")


@pytest.mark.hosts
def test_check_cpu_image_with_gpu_asked(launch):
    lines, code = launch.check_report(recorded_facts(launch, "cpu-image-cpu-host.txt"), True, launch.GPU_RUNTIME, CPU_LABELS)
    assert code == launch.EXIT_NO_GPU
    assert lines[-1].startswith("verdict: ✗ no GPU visible: this is a CPU image")


@pytest.mark.hosts
def test_check_gpu_image_on_a_host_without_gpu_support(launch):
    lines, code = launch.check_report(recorded_facts(launch, "gpu-image-cpu-host.txt"), True, None, GPU_LABELS)
    text = "\n".join(lines)
    assert code == launch.EXIT_NO_GPU
    assert "CUDA:               TensorFlow built with 12.5.1, image has 12.5.82" in text
    assert "cuDNN:              TensorFlow built with 9, image has 9.3.0.75" in text
    assert "NVIDIA driver:      not visible in the container (the image needs >= 555.42)" in text
    assert lines[-1].startswith("verdict: ✗ no GPU visible: Docker here has no NVIDIA runtime and no NVIDIA CDI device")


@pytest.mark.hosts
def test_check_gpu_image_without_gpu_asked_runs_on_the_cpu(launch):
    lines, code = launch.check_report(recorded_facts(launch, "gpu-image-cpu-host.txt"), False, None, GPU_LABELS)
    assert code == 0 and "on the CPU" in lines[-1]


@pytest.mark.hosts
def test_check_gpu_host(launch):
    lines, code = launch.check_report(recorded_facts(launch, "gpu-image-gpu-host.txt"), True, launch.GPU_RUNTIME, GPU_LABELS)
    text = "\n".join(lines)
    assert code == 0
    assert "GPUs:               NVIDIA GeForce RTX 4090, NVIDIA GeForce RTX 4090" in text
    assert "NVIDIA driver:      560.35.03 (the image needs >= 555.42)" in text
    assert lines[-1] == "verdict: ✓ TensorFlow sees 2 GPU(s)"


@pytest.mark.hosts
def test_check_old_driver(launch):
    lines, code = launch.check_report(recorded_facts(launch, "gpu-image-old-driver.txt"), True, launch.GPU_CDI, GPU_LABELS)
    assert code == launch.EXIT_NO_GPU
    assert "NVIDIA driver:      535.104.05 (the image needs >= 555.42)" in lines
    assert "driver 535.104.05 is older than the 555.42 this image needs" in lines[-1]


@pytest.mark.hosts
def test_check_runtime_without_a_device(launch):
    lines, code = launch.check_report(recorded_facts(launch, "gpu-image-no-device.txt"), True, launch.GPU_RUNTIME, GPU_LABELS)
    assert code == launch.EXIT_NO_GPU
    assert "no device" in lines[-1] and "No devices were found" in lines[-1]


@pytest.mark.hosts
def test_check_gpu_listed_but_tensorflow_blind(launch):
    lines, code = launch.check_report(recorded_facts(launch, "gpu-image-libs-broken.txt"), True, launch.GPU_RUNTIME, GPU_LABELS)
    assert code == launch.EXIT_NO_GPU
    assert "NVIDIA A100-SXM4-40GB" in lines[-1] and "CUDA libraries" in lines[-1]


@pytest.mark.hosts
def test_check_import_error(launch):
    lines, code = launch.check_report(recorded_facts(launch, "import-error.txt"), False, None, CPU_LABELS)
    assert code == launch.EXIT_ERROR and "does not import" in lines[-1] and "libstdc++" in lines[-1]


@pytest.mark.hosts
def test_parse_check_output_ignores_noise_and_rejects_garbage(launch):
    assert launch.parse_check_output("no marker here\n") is None
    assert launch.parse_check_output("KERASTACK-CHECK {not json\n") is None
    assert launch.parse_check_output('noise\nKERASTACK-CHECK {"python": "3.13.1"}\n') == {"python": "3.13.1"}


@pytest.mark.hosts
def test_parse_nvidia_smi(launch):
    assert launch.parse_nvidia_smi("NVIDIA H100 80GB HBM3, 570.124.06\nTesla T4, 535.104.05\n") == [
        ("NVIDIA H100 80GB HBM3", "570.124.06"),
        ("Tesla T4", "535.104.05"),
    ]
    assert launch.parse_nvidia_smi("No devices were found\n") == []


@pytest.mark.hosts
def test_check_command_uses_the_gpu_flags_of_a_real_run(launch):
    cmd = launch.check_command("img:1", launch.GPU_CDI, ["--memory", "8g"])
    assert cmd[:3] == ["docker", "run", "--rm"]
    assert cmd[cmd.index("--device") + 1] == "nvidia.com/gpu=all"
    assert cmd[cmd.index("img:1") + 1 : cmd.index("img:1") + 3] == ["python", "-c"]
    assert "-p" not in cmd and "--memory" in cmd
    assert "--gpus" not in launch.check_command("img:1", None, [])


# ---------------------------------------------------------------- round two: nothing accepted without a word


@pytest.mark.hosts
@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_dir_is_refused_not_the_current_folder(launch, value):
    with pytest.raises(launch.LaunchError, match="--dir is empty") as refused:
        launch.parse_args(["--dir", value], environ={})
    assert refused.value.code == launch.EXIT_USAGE


@pytest.mark.hosts
@pytest.mark.parametrize(
    "extra", [["--dir", "."], ["--port", "9999"], ["--bind", "127.0.0.1"], ["--token", "abc"], ["--detach"], ["--no-remap"], ["--dir", ".", "--detach"]]
)
def test_options_that_do_not_apply_to_check_are_refused(launch, extra):
    with pytest.raises(launch.LaunchError, match="--check runs the image's self-check") as refused:
        launch.parse_args(["--check", *extra], environ={})
    assert all(flag in str(refused.value) for flag in extra if flag.startswith("--"))


@pytest.mark.hosts
def test_check_with_its_own_options_is_accepted(launch):
    opts = launch.parse_args(["--check", "--gpu", "--name", "my-check", "--timeout", "30", "--pull", "never"], environ={})
    assert opts.check and opts.name == "my-check"


@pytest.mark.hosts
@pytest.mark.parametrize(
    ("uid", "gid", "owner", "expected"),
    [
        (0, 0, (4321, 0), (4321, 1000)),  # root, a folder of user 4321 in group root
        (0, 0, (4321, 4322), (4321, 4322)),
        (1001, 0, None, (1001, 1000)),  # a user whose primary group is root's
    ],
)
def test_jupyter_never_runs_with_gid_0(launch, uid, gid, owner, expected):
    remap, note = launch.remap_decision(uid, gid, no_remap=False, folder_owner=owner)
    assert remap == expected and remap[1] != 0
    assert note is None or "GID" in note or "owner" in note


@pytest.mark.hosts
def test_the_check_container_is_named(launch):
    cmd = launch.check_command("img:1", None, [], "kerastack-check-1234")
    assert cmd[cmd.index("--name") + 1] == "kerastack-check-1234"


def test_a_check_that_times_out_removes_its_named_container(launch, tmp_path, monkeypatch):
    """A fake docker on PATH: the image is there, `run` hangs; the launcher must remove the container by name."""
    log = tmp_path / "docker.log"
    fake = tmp_path / "bin" / "docker"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$*" >> {log}\ncase "$1" in image) echo "{{}}"; exit 0;; run) exec sleep 30;; esac\nexit 0\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    opts = launch.parse_args(["--check", "--image", "img:1", "--pull", "never", "--timeout", "1", "--name", "my-check"], environ={})
    with pytest.raises(launch.LaunchError, match="did not finish within 1 s") as refused:
        launch.run_check(opts, "img:1", None)
    assert refused.value.code == launch.EXIT_ERROR
    calls = log.read_text().splitlines()
    assert any(c.startswith("run --rm --name my-check") for c in calls) and "rm --force my-check" in calls, calls
