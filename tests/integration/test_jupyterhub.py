"""A real JupyterHub spawns the default CPU image: the images are single-user servers, and TensorBoard works.

The hub is JupyterHub + DockerSpawner from PyPI (requirements/hub/requirements.txt, --require-hashes) with
configurable-http-proxy from npm (requirements/hub/package-lock.json, `npm ci`), installed by
scripts/install-hub.sh, running the project's own DockerSpawner example (deploy/jupyterhub/) with an
overlay of this run's ports and names (kerastack/hub.py). The proxy listens on 127.0.0.1 and the hub's
API on the docker0 gateway. Everything goes through the proxy with the users' own tokens, the
kernel's websocket too (`Authorization: token ...`: the singleuser server ignores `?token=` there).
"""

from __future__ import annotations

import contextlib
import http.client
import http.cookiejar
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kerastack import hub as hub_module
from kerastack.docker_client import Docker
from tests.conftest import ROOT
from tests.containers import jupyter_container, wait_healthy
from tests.jupyter import JupyterServer, Kernel

pytestmark = [pytest.mark.docker]
DEFAULT_CPU_CELL = "tf2.21.0-py3.11-cpu"
USERS = ("alice", "bob")
KERNEL_TIMEOUT = 300  # the first `import tensorflow` of a fresh container on a busy 2-core machine
TENSORBOARD_TIMEOUT = 240  # jupyter-server-proxy starts TensorBoard on the first request
KERAS_AND_DEVICES = (
    "import keras, tensorflow as tf, os; print(keras.__version__); print([d.device_type for d in tf.config.list_physical_devices()]); print(os.getcwd())"
)


def tiny_fit(log_dir: str) -> str:
    """A two-epoch fit with Keras' TensorBoard callback: event files under `log_dir` (train/ and validation/)."""
    return (
        "import numpy as np, keras\n"
        "model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])\n"
        "model.compile(optimizer='sgd', loss='mse')\n"
        "x, y = np.random.rand(32, 4), np.random.rand(32, 1)\n"
        f"model.fit(x, y, validation_split=0.25, epochs=2, verbose=0, callbacks=[keras.callbacks.TensorBoard(log_dir={log_dir!r})])\n"
        f"import os; print(sorted(os.listdir({log_dir!r})))\n"
    )


@pytest.fixture(scope="module")
def hub_home() -> Path:
    """The pinned hub install (idempotent: a second run reuses it)."""
    return hub_module.install(ROOT / "scripts" / "install-hub.sh", os.environ.get("KERASTACK_HUB_HOME") and Path(os.environ["KERASTACK_HUB_HOME"]))


def settings(image: str, home: Path, workdir: Path, users: tuple[str, ...], singleuser_command: bool = False) -> hub_module.HubSettings:
    return hub_module.HubSettings(
        image=image, example_config=ROOT / "deploy" / "jupyterhub" / "jupyterhub_config.py", hub_home=home, workdir=workdir,
        users=users, singleuser_command=singleuser_command,
    )  # fmt: skip


def assert_cleaned_up(docker: Docker, hub: hub_module.Hub, proxy_pid: int | None) -> None:
    """After the hub stopped: its process, its proxy, the users' containers and this run's volumes are gone."""
    assert hub.process.poll() is not None, "the hub is still running"
    assert proxy_pid is not None and not hub_module._pid_alive(proxy_pid), f"configurable-http-proxy (pid {proxy_pid}) is still running"
    for user in hub.settings.users:
        assert not docker.container_exists(hub.settings.container_name(user)), f"{hub.settings.container_name(user)} was left behind"
        assert not docker.volume_exists(hub.settings.volume_name(user)), f"{hub.settings.volume_name(user)} was left behind"


@pytest.fixture(scope="module")
def spawned(cell_image, hub_home, tmp_path_factory):
    """A hub with alice and bob, both servers spawned at once (the image's own CMD: DockerSpawner's default)."""
    docker = Docker()
    with hub_module.running_hub(settings(cell_image, hub_home, tmp_path_factory.mktemp("hub"), USERS), docker) as hub:
        tokens = {user: hub.user_token(user) for user in USERS}
        started = {user: hub.request_spawn(user) for user in USERS}
        with ThreadPoolExecutor(len(USERS)) as pool:
            list(pool.map(lambda user: hub.wait_served(user, tokens[user], started[user]), USERS))
        proxy_pid = hub.proxy_pid()
        yield hub, tokens
    assert_cleaned_up(docker, hub, proxy_pid)


def server(hub: hub_module.Hub, user: str, token: str) -> JupyterServer:
    return JupyterServer(hub.server_url(user), token)


@pytest.fixture(scope="module")
def kernels(spawned):
    """One kernel per user, over the proxy's websocket; shared by the tests below so TensorFlow is imported once per user."""
    hub, tokens = spawned
    opened = {}
    for user in USERS:
        jupyter = server(hub, user, tokens[user])
        opened[user] = Kernel(jupyter, jupyter.start_kernel(), KERNEL_TIMEOUT)
    yield opened
    for kernel in opened.values():
        with contextlib.suppress(Exception):  # alice's first server is gone by now (the respawn test stops it)
            kernel.close()


def redirect_of(url: str, token: str | None) -> tuple[int, str]:
    """The status and Location of one GET, redirects not followed."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("GET", parts.path, headers={"Authorization": f"token {token}"} if token else {})
        response = connection.getresponse()
        return response.status, response.getheader("Location") or ""
    finally:
        connection.close()


def wait_for_runs(jupyter: JupyterServer, prefix: str, timeout: float = TENSORBOARD_TIMEOUT) -> list:
    """TensorBoard's list of runs through Jupyter's proxy, once it has read the event files."""
    deadline = time.monotonic() + timeout
    status, body = 0, ""
    while time.monotonic() < deadline:
        try:
            status, body = jupyter.request("GET", f"{prefix}/data/runs")
        except (TimeoutError, OSError) as exc:  # the first request waits while the proxy starts TensorBoard
            status, body = 0, str(exc)
        if status == 200 and isinstance(body, list) and body:
            return body
        time.sleep(1)
    raise AssertionError(f"TensorBoard listed no runs within {timeout:.0f} s: {status} {str(body)[:300]}")


# ---------------------------------------------------------------- the image's CMD under DockerSpawner


@pytest.mark.parametrize("cell_id", [DEFAULT_CPU_CELL], scope="session")
def test_each_users_kernel_runs_keras_through_the_proxy(kernels, project_config, cell):
    keras = str(project_config.tensorflow[cell.tensorflow].keras)
    for user in USERS:
        result = kernels[user].execute(KERAS_AND_DEVICES, timeout=KERNEL_TIMEOUT)
        assert result.status == "ok", result.error or result.stderr
        version, devices, cwd = result.stdout.strip().splitlines()[-3:]
        assert version == keras
        assert "CPU" in devices
        assert cwd == hub_module.HUB_USER_HOME, "under a hub the notebook root is the user's home (the persisted folder)"


@pytest.mark.parametrize("cell_id", [DEFAULT_CPU_CELL], scope="session")
def test_jupyterlab_is_the_default_ui(spawned):
    hub, tokens = spawned
    status, location = redirect_of(hub.server_url("alice") + "/", tokens["alice"])
    assert status == 302 and location.split("?")[0] == "/user/alice/lab", (status, location)


@pytest.mark.parametrize("cell_id", [DEFAULT_CPU_CELL], scope="session")
def test_a_user_logs_in_with_the_password_and_gets_jupyterlab(spawned):
    """The browser's way: the login form, the hub's cookie, the OAuth hop to the user's server, JupyterLab's page."""
    hub, _ = spawned
    landed, html = log_in(hub, "alice", hub.password)
    assert urllib.parse.urlsplit(landed).path == "/user/alice/lab", landed
    assert "JupyterLab" in html
    landed, _ = log_in(hub, "alice", "not-the-password")
    assert urllib.parse.urlsplit(landed).path == "/hub/login", "a wrong password must not log in"


def log_in(hub: hub_module.Hub, user: str, password: str) -> tuple[str, str]:
    """A fresh browser: GET the login page (the XSRF cookie), POST the form, follow the redirects; the final URL and page."""
    cookies = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))
    with browser.open(f"{hub.url}/hub/login", timeout=30) as page:
        page.read()
    xsrf = next((c.value for c in cookies if c.name == "_xsrf"), "")
    form = urllib.parse.urlencode({"username": user, "password": password, "_xsrf": xsrf}).encode()
    try:
        with browser.open(f"{hub.url}/hub/login?next=%2Fhub%2F", data=form, timeout=120) as page:
            return page.geturl(), page.read().decode()
    except urllib.error.HTTPError as exc:  # a refused login answers 403 with the form again
        return exc.geturl(), exc.read().decode(errors="replace")


@pytest.mark.parametrize("cell_id", [DEFAULT_CPU_CELL], scope="session")
def test_a_users_token_cannot_reach_another_users_server(spawned):
    hub, tokens = spawned
    status, _ = server(hub, "bob", tokens["alice"]).request("GET", "/api/contents")
    assert status == 403
    status, _ = server(hub, "bob", tokens["bob"]).request("GET", "/api/contents")
    assert status == 200, "bob's own token must work, or the 403 above proves nothing"


@pytest.mark.parametrize("cell_id", [DEFAULT_CPU_CELL], scope="session")
def test_tensorboard_under_the_hub_prefix(spawned, kernels):
    hub, tokens = spawned
    alice = server(hub, "alice", tokens["alice"])
    result = kernels["alice"].execute(tiny_fit(f"{hub_module.HUB_USER_HOME}/logs/fit"), timeout=KERNEL_TIMEOUT)
    assert result.status == "ok", result.error or result.stderr
    assert "train" in result.stdout
    runs = wait_for_runs(alice, "/tensorboard")
    assert any(run.startswith("logs/fit") for run in runs), runs
    status, page = alice.request("GET", "/tensorboard/")
    assert status == 200 and "<tb-webapp>" in str(page), str(page)[:300]


@pytest.mark.parametrize("cell_id", [DEFAULT_CPU_CELL], scope="session")
def test_a_saved_file_survives_stop_and_respawn_and_stop_removes_the_container(spawned):
    hub, tokens = spawned
    docker, text = Docker(), f"saved at {time.time()}\n"
    alice = server(hub, "alice", tokens["alice"])
    status, _ = alice.request("PUT", "/api/contents/kept.txt", body={"type": "file", "format": "text", "content": text})
    assert status in (200, 201)
    hub.stop_server("alice")
    assert not docker.container_exists(hub.settings.container_name("alice")), "stopping the server must remove its container"
    assert docker.volume_exists(hub.settings.volume_name("alice")), "the home volume must outlive the container"
    hub.spawn("alice", tokens["alice"])
    status, body = alice.request("GET", "/api/contents/kept.txt")
    assert status == 200 and isinstance(body, dict) and body["content"] == text


# ---------------------------------------------------------------- zero-to-jupyterhub's way: `jupyterhub-singleuser` as the command


@pytest.mark.parametrize("cell_id", [DEFAULT_CPU_CELL], scope="session")
def test_explicit_jupyterhub_singleuser_command(cell_image, hub_home, tmp_path):
    docker = Docker()
    with hub_module.running_hub(settings(cell_image, hub_home, tmp_path / "hub", ("carol",), singleuser_command=True), docker) as hub:
        token = hub.user_token("carol")
        hub.spawn("carol", token)
        container = docker.client.container.inspect(hub.settings.container_name("carol"))
        assert container.config.cmd == ["jupyterhub-singleuser"]
        assert container.config.user in ("keras", "1000", "1000:1000")
        assert wait_healthy(container) == "healthy", "the image's healthcheck must find the hub's server (its base URL is the hub's prefix)"
        status, location = redirect_of(hub.server_url("carol") + "/", token)
        assert status == 302 and location.split("?")[0] == "/user/carol/lab", (status, location)
        result = server(hub, "carol", token).execute("import os, keras; print(os.getcwd(), os.getuid(), os.environ['HOME'])", timeout=KERNEL_TIMEOUT)
        assert result.status == "ok", result.error or result.stderr
        assert result.stdout.split() == [hub_module.HUB_USER_HOME, "1000", hub_module.HUB_USER_HOME]
        proxy_pid = hub.proxy_pid()
    assert_cleaned_up(docker, hub, proxy_pid)


# ---------------------------------------------------------------- TensorBoard without a hub (make run, the launcher)


@pytest.mark.parametrize("cell_id", [DEFAULT_CPU_CELL], scope="session")
def test_tensorboard_through_jupyter_under_make_run(cell_image, tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    os.chmod(folder, 0o777)  # the container's keras user writes the logs here
    with jupyter_container(cell_image, src=folder) as running:
        jupyter = running.jupyter
        result = jupyter.execute(tiny_fit("/src/logs/fit"), timeout=KERNEL_TIMEOUT)
        assert result.status == "ok", result.error or result.stderr
        runs = wait_for_runs(jupyter, "/tensorboard")
        assert set(runs) >= {"logs/fit/train", "logs/fit/validation"}, runs
        status, page = jupyter.request("GET", "/tensorboard/")
        assert status == 200 and "<tb-webapp>" in str(page), str(page)[:300]
        status, location = redirect_of(f"{jupyter.base_url}/tensorboard/data/runs", None)
        assert status in (302, 403) and "/tensorboard" not in location.split("?")[0], ("TensorBoard behind Jupyter must need Jupyter's token", status, location)
