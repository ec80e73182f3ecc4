"""A real JupyterHub on this machine, for the hub test and `nox -s bench`: the project's DockerSpawner
example (deploy/jupyterhub/jupyterhub_config.py) with a thin overlay, started from the pinned install
of scripts/install-hub.sh, driven through the hub's REST API.

Effects: runs the installer, the hub (which starts configurable-http-proxy), and Docker volume calls
through the one adapter. Everything it makes is named by a per-run prefix and removed by exact name.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .docker_client import Docker
from .errors import PipelineError

START_TIMEOUT = 60.0
SPAWN_TIMEOUT = 240.0
POLL_INTERVAL = 0.1
SERVICE = "kerastack-test"
HUB_USER_HOME = "/home/keras"  # where each user's named volume is mounted (the notebook root under a hub)


def install(script: Path, dest: Path | None = None) -> Path:
    """scripts/install-hub.sh: the pinned hub venv and proxy (idempotent); returns its folder."""
    command = [str(script)] + ([str(dest)] if dest else [])
    result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PipelineError(f"{script} failed (exit {result.returncode}): {result.stderr.strip()[-1500:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class HubSettings:
    image: str
    example_config: Path
    hub_home: Path  # what install() returned
    workdir: Path  # the hub's database, cookie secret, pid files and log
    users: tuple[str, ...]
    singleuser_command: bool = False  # run `jupyterhub-singleuser` explicitly (Z2JH's way) instead of the image's CMD
    prefix: str = field(default_factory=lambda: f"kerastack-hubtest-{secrets.token_hex(3)}")

    def container_name(self, user: str) -> str:
        return f"{self.prefix}-{user}"

    def volume_name(self, user: str) -> str:
        return f"{self.prefix}-home-{user}"


def _overlay(settings: HubSettings, service_token: str, proxy_api_port: int, example_settings: dict[str, str]) -> str:
    """The test's config: the example's (given its settings the way a user gives them, as environment
    variables of the hub process), plus this run's names, database and an API service token."""
    work = settings.workdir
    role = {"name": SERVICE, "scopes": ["admin:users", "admin:servers", "tokens", "access:servers"], "services": [SERVICE]}
    return f"""# Written by kerastack/hub.py: the DockerSpawner example plus this run's names and files.
import os
os.environ.update({example_settings!r})
c = get_config()  # noqa: F821
load_subconfig({str(settings.example_config)!r})  # noqa: F821
c.JupyterHub.db_url = {"sqlite:///" + str(work / "jupyterhub.sqlite")!r}
c.JupyterHub.cookie_secret_file = {str(work / "jupyterhub_cookie_secret")!r}
c.JupyterHub.pid_file = {str(work / "jupyterhub.pid")!r}
c.ConfigurableHTTPProxy.pid_file = {str(work / "proxy.pid")!r}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.DockerSpawner.name_template = {settings.prefix + "-{username}"!r}
c.DockerSpawner.volumes = {{{settings.prefix + "-home-{username}"!r}: {HUB_USER_HOME!r}}}
c.JupyterHub.services = [{{"name": {SERVICE!r}, "api_token": {service_token!r}}}]
c.JupyterHub.load_roles = [{json.dumps(role)}]
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True
"""


@dataclass
class Hub:
    settings: HubSettings
    process: subprocess.Popen
    url: str  # the proxy's public URL on 127.0.0.1
    token: str  # the service's API token
    log_file: Path
    password: str = ""  # the users' shared login password (the example's SharedPasswordAuthenticator)

    # ---------------------------------------------------------------- REST
    def request(self, method: str, url: str, token: str | None, body: dict | None = None, timeout: float = 30) -> tuple[int, dict | str]:
        headers = {"Content-Type": "application/json"} | ({"Authorization": f"token {token}"} if token else {})
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                raw = response.read().decode()
                return response.status, json.loads(raw) if raw and "json" in response.headers.get("Content-Type", "") else raw
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")
        except (urllib.error.URLError, OSError) as exc:  # not listening (yet), reset, timed out: no HTTP status
            return 0, str(exc)

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict | str]:
        return self.request(method, f"{self.url}/hub/api{path}", self.token, body)

    def expect(self, method: str, path: str, codes: tuple[int, ...], body: dict | None = None) -> dict | str:
        status, answer = self.api(method, path, body)
        if status not in codes:
            raise PipelineError(f"hub API {method} {path} answered {status}: {str(answer)[:500]}\n{self.log_tail()}")
        return answer

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "hub log:\n" + "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return ""

    # ---------------------------------------------------------------- users and servers
    def create_users(self) -> None:
        self.expect("POST", "/users", (201, 409), {"usernames": list(self.settings.users)})

    def user_token(self, user: str) -> str:
        answer = self.expect("POST", f"/users/{user}/tokens", (200, 201), {"note": "kerastack hub test", "expires_in": 3600})
        assert isinstance(answer, dict)
        return answer["token"]

    def server_url(self, user: str) -> str:
        return f"{self.url}/user/{user}"

    def request_spawn(self, user: str) -> float:
        """Ask the hub to start the user's server; returns the clock reading of the request."""
        started = time.perf_counter()
        self.expect("POST", f"/users/{user}/server", (201, 202))
        return started

    def wait_served(self, user: str, token: str, started: float, timeout: float = SPAWN_TIMEOUT) -> float:
        """Seconds from `started` until the user's server answers /api through the proxy with the user's token."""
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise PipelineError(f"the hub exited ({self.process.returncode}) while spawning {user}\n{self.log_tail()}")
            status, _ = self.request("GET", f"{self.server_url(user)}/api/status", token, timeout=5)
            if status == 200:
                return time.perf_counter() - started
            time.sleep(POLL_INTERVAL)
        raise PipelineError(f"{user}'s server did not answer through the proxy within {timeout:.0f} s\n{self.log_tail()}")

    def spawn(self, user: str, token: str) -> float:
        return self.wait_served(user, token, self.request_spawn(user))

    def stop_server(self, user: str, timeout: float = 60) -> None:
        self.expect("DELETE", f"/users/{user}/server", (202, 204))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = self.expect("GET", f"/users/{user}", (200,))
            if isinstance(answer, dict) and not answer.get("servers"):
                return
            time.sleep(0.2)
        raise PipelineError(f"{user}'s server did not stop within {timeout:.0f} s\n{self.log_tail()}")

    def proxy_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int((self.settings.workdir / "proxy.pid").read_text().strip())
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    return True


@contextlib.contextmanager
def running_hub(settings: HubSettings, docker: Docker, log: Callable[[str], None] = lambda line: None) -> Iterator[Hub]:
    """Start the hub; on exit stop it (it stops the servers and its proxy), then remove this run's volumes.

    The users' home volumes are created here, before the first spawn, so that this run removes exactly
    what it made; a volume of that name that exists already is an error, never reused.
    """
    for user in settings.users:
        if docker.volume_exists(settings.volume_name(user)) or docker.container_exists(settings.container_name(user)):
            raise PipelineError(f"{settings.volume_name(user)} or {settings.container_name(user)} exists already; pick another prefix")
    settings.workdir.mkdir(parents=True, exist_ok=True)
    token, password, port, proxy_api_port, api_port = secrets.token_hex(32), secrets.token_hex(12), free_port(), free_port(), free_port()
    example_settings = {
        "KERASTACK_HUB_IMAGE": settings.image,
        "KERASTACK_HUB_PORT": str(port),
        "KERASTACK_HUB_API_PORT": str(api_port),
        "KERASTACK_HUB_HOME": str(settings.hub_home),
        "KERASTACK_HUB_PASSWORD": password,
        "KERASTACK_HUB_USERS": ",".join(settings.users),
        "KERASTACK_HUB_CMD": "singleuser" if settings.singleuser_command else "image",
    }
    config = settings.workdir / "jupyterhub_config.py"
    config.touch(mode=0o600)  # it holds the service token and the users' password
    config.write_text(_overlay(settings, token, proxy_api_port, example_settings), encoding="utf-8")
    made_volumes: list[str] = []
    log_file = settings.workdir / "jupyterhub.log"
    hub: Hub | None = None
    try:
        for user in settings.users:
            docker.create_volume(settings.volume_name(user))
            made_volumes.append(settings.volume_name(user))
        with log_file.open("wb") as log_handle:
            # Its own session: a Ctrl-C in the caller's terminal does not reach the hub, and stopping it is by its pid.
            process = subprocess.Popen(
                [str(settings.hub_home / "venv" / "bin" / "jupyterhub"), "-f", str(config)],
                cwd=settings.workdir, stdin=subprocess.DEVNULL, stdout=log_handle, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        hub = Hub(settings, process, f"http://127.0.0.1:{port}", token, log_file, password)
        deadline = time.monotonic() + START_TIMEOUT
        while hub.api("GET", "/")[0] != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                raise PipelineError(f"the hub did not come up on 127.0.0.1:{port}\n{hub.log_tail()}")
            time.sleep(POLL_INTERVAL)
        log(f"hub up at {hub.url} (image {settings.image})")
        hub.create_users()
        yield hub
    finally:
        if hub is not None:
            _stop(hub)
        for user in settings.users:  # the hub's cleanup removes them; a crash may not have
            docker.remove_container(settings.container_name(user))
        docker.remove_volumes(made_volumes)


def _stop(hub: Hub) -> None:
    """SIGTERM the hub (it stops the users' servers and its proxy), by its pid; SIGKILL its group if it hangs."""
    proxy_pid = hub.proxy_pid()
    if hub.process.poll() is None:
        hub.process.send_signal(signal.SIGTERM)
        try:
            hub.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(hub.process.pid, signal.SIGKILL)
            hub.process.wait(timeout=10)
    if proxy_pid is not None:
        deadline = time.monotonic() + 10
        while _pid_alive(proxy_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid_alive(proxy_pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proxy_pid, signal.SIGTERM)
