"""Real containers for tests: started like the launcher starts them, always removed afterwards."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from python_on_whales import Container

from kerastack.docker_client import Docker, DockerException
from tests.jupyter import JupyterServer

docker = Docker().client  # the pipeline's adapter: tests run containers through it too

LABEL = "io.kerastack.test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Running:
    container: Container
    port: int
    token: str
    base_url: str

    @property
    def jupyter(self) -> JupyterServer:
        return JupyterServer(f"http://127.0.0.1:{self.port}{self.base_url.rstrip('/')}", self.token)

    def exec(self, command: Sequence[str], user: str | None = None) -> str:
        return docker.container.execute(self.container, list(command), user=user)


def wait_healthy(container: Container, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = docker.container.inspect(container.id).state
        health = state.health.status if state.health else "none"
        if not state.running:
            return "exited"
        if health in ("healthy", "unhealthy"):
            return health
        time.sleep(0.5)
    return "timeout"


@contextmanager
def jupyter_container(
    image: str,
    *,
    src: Path | None = None,
    uid: int | None = None,
    container_port: int = 8888,
    base_url: str = "/",
    token: str | None = None,
    envs: dict[str, str] | None = None,
    wait: bool = True,
    user: str | None = None,
) -> Iterator[Running]:
    """Run the image's Jupyter on a free 127.0.0.1 port. `uid` remaps the keras user like the launcher does;
    `user` is `docker run --user` (e.g. "4242:0")."""
    token = secrets.token_hex(16) if token is None else token
    port = free_port()
    env = {"JUPYTER_TOKEN": token, "JUPYTER_PORT": str(container_port), **(envs or {})}
    if base_url != "/":
        env["JUPYTER_BASE_URL"] = base_url
    options: dict = {}
    if uid is not None:
        options["user"] = "root"
        env |= {"KERAS_UID": str(uid), "KERAS_GID": str(uid)}
    if user is not None:
        options["user"] = user
    volumes = [(str(src), "/src")] if src else []
    # Created first, started inside the try: a start that fails (a port taken meanwhile) leaves no container behind.
    container = docker.container.create(image, publish=[(f"127.0.0.1:{port}", container_port)], envs=env, volumes=volumes, labels={LABEL: "1"}, **options)
    try:
        docker.container.start(container)
        if wait:
            health = wait_healthy(container)
            if health != "healthy":
                logs = docker.container.logs(container, tail=40)
                raise AssertionError(f"container of {image} is {health}, not healthy:\n{logs}")
        yield Running(container, port, token, base_url)
    finally:
        with contextlib.suppress(DockerException):
            docker.container.remove(container, force=True, volumes=True)


def host_user_dir(tmp_path: Path) -> tuple[Path, int]:
    """A folder owned by the host user. As root, a stand-in non-root user (UID 4321) plays the host user."""
    uid = os.getuid() if os.getuid() != 0 else 4321
    folder = tmp_path / "work"
    folder.mkdir()
    os.chown(folder, uid, uid)
    return folder, uid


def container_gone(name: str, seconds: float = 60) -> bool:
    """Whether the container is gone within `seconds` (a stopped --rm container takes a moment to be removed)."""
    deadline = time.monotonic() + seconds
    while docker.container.exists(name):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)
    return True
