"""scripts/launch end to end against the real Docker engine, with a tiny fake "Jupyter" image built FROM
scratch from a static C program (no registry needed). They skip, with the reason, only when no C compiler
can link statically.
"""

from __future__ import annotations

import json
import queue
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

from tests.containers import free_port
from tests.unit.test_launch import LAUNCH, TOKEN, _load_launch, clean_env, run_launch

pytestmark = pytest.mark.docker


# ----------------------------------------------------------------------------- end to end, with Docker

FAKE_JUPYTER_C = textwrap.dedent(r"""
    #include <arpa/inet.h>
    #include <netinet/in.h>
    #include <signal.h>
    #include <stdio.h>
    #include <stdlib.h>
    #include <string.h>
    #include <sys/socket.h>
    #include <unistd.h>

    static void bye(int sig) { (void)sig; fprintf(stderr, "fake jupyter: shutting down\n"); _exit(0); }

    static int probe(void) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET; a.sin_port = htons(8888); a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) != 0) return 1;
        const char *req = "GET /api HTTP/1.0\r\n\r\n";
        if (write(s, req, strlen(req)) < 0) return 1;
        char buf[256] = {0};
        ssize_t n = read(s, buf, sizeof buf - 1);
        close(s);
        return (n > 12 && strncmp(buf + 9, "200", 3) == 0) ? 0 : 1;
    }

    int main(int argc, char **argv) {
        if (argc > 1 && strcmp(argv[1], "probe") == 0) return probe();
        signal(SIGTERM, bye);
        signal(SIGINT, bye);
        const char *token = getenv("JUPYTER_TOKEN"), *mode = getenv("FAKE_MODE");
        fprintf(stderr, "fake jupyter: uid=%d KERAS_UID=%s\n", (int)getuid(),
                getenv("KERAS_UID") ? getenv("KERAS_UID") : "-");
        fprintf(stderr, "    http://127.0.0.1:8888/lab?token=%s\n", token ? token : "(none)");
        if (mode && strcmp(mode, "fail") == 0) {
            sleep(2);
            fprintf(stderr, "fake jupyter: failing on purpose\n");
            return 3;
        }
        if (mode && strcmp(mode, "hang") == 0) { for (;;) pause(); }
        int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET; a.sin_port = htons(8888); a.sin_addr.s_addr = htonl(INADDR_ANY);
        if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 16) != 0) { perror("listen"); return 2; }
        for (;;) {
            int c = accept(s, NULL, NULL);
            if (c < 0) continue;
            char buf[1024];
            if (read(c, buf, sizeof buf) > 0) {
                const char *resp = "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"version\": \"fake\"}\n";
                if (write(c, resp, strlen(resp)) < 0) { /* ignore */ }
            }
            close(c);
        }
    }
""")

FAKE_DOCKERFILE = textwrap.dedent("""\
    FROM scratch
    COPY fakejupyter /fakejupyter
    LABEL io.kerastack.variant=gpu
    HEALTHCHECK --interval=1s --timeout=3s --retries=2 CMD ["/fakejupyter", "probe"]
    ENTRYPOINT ["/fakejupyter"]
""")


def _docker_info_or_none():
    if shutil.which("docker") is None:
        return None
    try:
        r = subprocess.run(["docker", "info", "--format", "{{json .}}"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return None
    if r.returncode != 0:
        return None
    try:
        info = json.loads(r.stdout)
    except ValueError:
        return None
    return info if info.get("ServerVersion") else None


@pytest.fixture(scope="module")
def docker_info(docker_engine):
    info = _docker_info_or_none()
    if info is None:
        pytest.fail("the Docker daemon does not answer `docker info`")
    return info


@pytest.fixture(scope="module")
def fake_image(docker_info, tmp_path_factory):
    """A tiny image that behaves like the Jupyter image for the launcher: HTTP /api on 8888, a
    HEALTHCHECK, the io.kerastack.variant label, SIGTERM handling, and the token in its log."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the fake Jupyter")
    work = tmp_path_factory.mktemp("fakejupyter")
    (work / "fake.c").write_text(FAKE_JUPYTER_C)
    r = subprocess.run([cc, "-static", "-O2", "-o", str(work / "fakejupyter"), str(work / "fake.c")], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("cannot link a static binary for the fake Jupyter: %s" % r.stderr.strip()[-300:])
    (work / "Dockerfile").write_text(FAKE_DOCKERFILE)
    tag = "kerastack-launch-test:%s" % uuid.uuid4().hex[:12]
    r = subprocess.run(["docker", "build", "-q", "-t", tag, str(work)], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.skip("cannot build the fake image: %s" % r.stderr.strip()[-300:])
    yield tag
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


@pytest.fixture
def container():
    """A unique container name, removed afterwards whatever happened."""
    name = "kerastack-launch-test-%s" % uuid.uuid4().hex[:10]
    yield name
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def _exists(name):
    return subprocess.run(["docker", "container", "inspect", name], capture_output=True).returncode == 0


def _gone(name, seconds=15):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _exists(name):
            return True
        time.sleep(0.3)
    return False


def _launch_args(image, name, port, tmp_path, *more):
    return ["--image", image, "--name", name, "--port", str(port), "--dir", str(tmp_path), "--token", TOKEN, "--timeout", "60", *more]


def test_e2e_detach_pull_fallback_and_stop(fake_image, container, tmp_path, docker_info):
    port = free_port()
    # --pull always: the pull fails (the tag exists only here), so it warns and uses the local image.
    r = run_launch(*_launch_args(fake_image, container, port, tmp_path, "--pull", "always", "--detach"), timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["Jupyter is ready: http://localhost:%d/lab?token=%s" % (port, TOKEN)]
    assert TOKEN not in r.stderr
    assert "using the copy already on this machine" in r.stderr
    assert "docker stop %s" % container in r.stderr
    launch = _load_launch()
    if launch.detect_gpu(docker_info) is None:
        assert "TensorFlow will fall back to the CPU" in r.stderr
    # The URL comes as soon as Jupyter answers; the HEALTHCHECK (for `docker ps`) catches up on its own.
    deadline = time.monotonic() + 30
    while True:
        state = json.loads(subprocess.run(["docker", "inspect", "--format", "{{json .State}}", container], capture_output=True, text=True).stdout)
        if state["Health"]["Status"] != "starting" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert state["Health"]["Status"] == "healthy"
    mounts = json.loads(subprocess.run(["docker", "inspect", "--format", "{{json .Mounts}}", container], capture_output=True, text=True).stdout)
    assert [(m["Source"], m["Destination"]) for m in mounts] == [(str(tmp_path.resolve()), "/src")]
    ports = json.loads(subprocess.run(["docker", "inspect", "--format", "{{json .HostConfig.PortBindings}}", container], capture_output=True, text=True).stdout)
    assert ports == {"8888/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    subprocess.run(["docker", "stop", container], capture_output=True, timeout=60)
    assert _gone(container), "--rm should remove the container when it stops"


def test_e2e_a_folder_with_colon_comma_equals_space_and_quote_mounts_as_it_is(fake_image, container, tmp_path):
    """--mount's CSV quoting, read by the real docker CLI: `-v` splits at ':', an unquoted --mount at ',' and '"'."""
    folder = tmp_path / 'ch 1:"keras", v=3'
    folder.mkdir()
    r = run_launch(*_launch_args(fake_image, container, free_port(), folder, "--pull", "never", "--detach"), timeout=120)
    assert r.returncode == 0, r.stderr
    mounts = json.loads(subprocess.run(["docker", "inspect", "--format", "{{json .Mounts}}", container], capture_output=True, text=True).stdout)
    assert [(m["Type"], m["Source"], m["Destination"]) for m in mounts] == [("bind", str(folder), "/src")]
    subprocess.run(["docker", "stop", container], capture_output=True, timeout=60)
    assert _gone(container)


def test_e2e_explicit_port_in_use(fake_image, container, tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        r = run_launch(*_launch_args(fake_image, container, s.getsockname()[1], tmp_path, "--pull", "never"))
    finally:
        s.close()
    assert r.returncode == 2 and "already in use" in r.stderr and "Traceback" not in r.stderr
    assert not _exists(container)


def test_e2e_missing_image_with_pull_never(docker_info, container, tmp_path):
    image = "kerastack-launch-test-absent:%s" % uuid.uuid4().hex[:8]
    r = run_launch(*_launch_args(image, container, free_port(), tmp_path, "--pull", "never"))
    assert r.returncode == 5
    assert image in r.stderr and "Traceback" not in r.stderr


def test_e2e_container_that_dies_shows_its_log_masked(fake_image, container, tmp_path):
    r = run_launch(*_launch_args(fake_image, container, free_port(), tmp_path, "--pull", "never", "--", "-e", "FAKE_MODE=fail"), timeout=120)
    assert r.returncode == 1
    assert "Jupyter did not start" in r.stderr
    assert "failing on purpose" in r.stderr  # the container's own log lines
    assert "token=***" in r.stderr and TOKEN not in r.stdout + r.stderr
    assert "Jupyter is ready" not in r.stdout
    assert _gone(container)


def test_e2e_timeout_removes_the_container(fake_image, container, tmp_path):
    r = run_launch(
        "--image",
        fake_image,
        "--name",
        container,
        "--port",
        str(free_port()),
        "--dir",
        str(tmp_path),
        "--token",
        TOKEN,
        "--timeout",
        "3",
        "--pull",
        "never",
        "--",
        "-e",
        "FAKE_MODE=hang",
        "--health-retries",
        "1000",
        timeout=120,
    )
    assert r.returncode == 1
    assert "not healthy after 3 s" in r.stderr
    assert TOKEN not in r.stdout + r.stderr
    assert _gone(container)


def _start_foreground(args):
    proc = subprocess.Popen([sys.executable, str(LAUNCH), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(l) for l in proc.stdout], daemon=True).start()
    try:
        first = lines.get(timeout=90)
    except queue.Empty:
        proc.kill()
        pytest.fail("the launcher printed no URL: %s" % proc.stderr.read())
    return proc, first


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_e2e_foreground_stops_on_signal(fake_image, container, tmp_path, sig):
    port = free_port()
    proc, first = _start_foreground(_launch_args(fake_image, container, port, tmp_path, "--pull", "missing"))
    try:
        assert first.strip() == "Jupyter is ready: http://localhost:%d/lab?token=%s" % (port, TOKEN)
        assert _exists(container)
        proc.send_signal(sig)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read()
    assert rc == 0, err
    assert "Stopped" in err and TOKEN not in err
    assert _gone(container)


def test_e2e_without_healthcheck_probes_the_api(fake_image, container, tmp_path):
    port = free_port()
    r = run_launch(*_launch_args(fake_image, container, port, tmp_path, "--pull", "never", "--detach", "--", "--no-healthcheck"), timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "Jupyter is ready: http://localhost:%d/lab?token=%s" % (port, TOKEN)
    subprocess.run(["docker", "stop", container], capture_output=True, timeout=60)
    assert _gone(container)
