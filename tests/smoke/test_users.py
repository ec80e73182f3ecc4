"""Any `docker run --user`, a proxy in the environment, tini and both IP families: what docker-stacks'
healthcheck, tini and IPv4/6 tests check, and the arbitrary UIDs (OpenShift's GID 0 too) their start.sh
handles, for our entrypoint.
"""

from __future__ import annotations

import os

import pytest
from python_on_whales import docker

from kerastack.contract import MOUNT_POINT, PORT
from tests.containers import free_port, jupyter_container

pytestmark = pytest.mark.docker

MATPLOTLIB_CHECK = (
    "import os, warnings, pathlib\n"
    "warnings.simplefilter('error')\n"
    "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt\n"
    "home = pathlib.Path.home(); probe = home / '.probe'; probe.write_text('x')\n"
    f"open('{MOUNT_POINT}/from-uid.txt', 'w').write('hi')\n"
    "print(os.getuid(), os.getgid(), home, matplotlib.get_cachedir())\n"
)


@pytest.mark.parametrize("user", ["4242:4242", "4242:0"])
def test_any_user_serves_jupyter_with_a_writable_home_and_owns_its_files(cell_id, cell_image, tmp_path, user):
    uid, gid = map(int, user.split(":"))
    folder = tmp_path / "work"
    folder.mkdir()
    os.chown(folder, uid, gid)
    with jupyter_container(cell_image, src=folder, user=user) as r:
        result = r.jupyter.execute(MATPLOTLIB_CHECK)
        assert result.status == "ok", f"{cell_id} --user {user}: {result.error}"
        got_uid, got_gid, home, cache = result.stdout.split()
        assert (int(got_uid), int(got_gid)) == (uid, gid), cell_id
        assert cache.startswith(home), f"{cell_id}: matplotlib's cache {cache} is not in HOME {home}"
        logs = docker.container.logs(r.container)
        assert "PermissionError" not in logs and "Matplotlib created a temporary" not in logs, f"{cell_id}: {logs[-2000:]}"
    written = folder / "from-uid.txt"
    assert (written.stat().st_uid, written.stat().st_gid) == (uid, gid), cell_id


@pytest.fixture(scope="module")
def behind_a_dead_proxy(cell_image):
    """HTTP(S)_PROXY point at a port nothing listens on, as a corporate user's settings would inside a
    container that cannot reach that proxy; jupyter_container waits until the container is healthy.
    One container serves the proxy, IPv4/6 and tini checks: starting one costs more than the checks."""
    dead = f"http://127.0.0.1:{free_port()}"
    envs = {"HTTP_PROXY": dead, "HTTPS_PROXY": dead, "http_proxy": dead, "https_proxy": dead}
    with jupyter_container(cell_image, envs=envs) as r:
        yield {
            "health": docker.container.inspect(r.container.id).state.health.status,
            "tcp": r.exec(["cat", "/proc/net/tcp"]),
            "tcp6": r.exec(["cat", "/proc/net/tcp6"]),
            "pid1": r.exec(["ps", "-p", "1", "-o", "comm="]).strip(),
        }


def test_the_healthcheck_ignores_a_dead_proxy(cell_id, behind_a_dead_proxy):
    assert behind_a_dead_proxy["health"] == "healthy", cell_id


def listening(table: str, port: int) -> set[str]:
    """The local addresses (hex, as /proc/net/tcp* writes them) listening on `port`."""
    found = set()
    for line in table.splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, _, hex_port = local.rpartition(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(address)
    return found


def test_jupyter_listens_on_ipv4_and_ipv6(cell_id, behind_a_dead_proxy):
    """docker-stacks' test_ipv46 needs an IPv6 network, which Engine 20.10 here cannot create: the same
    property, read inside the container: Jupyter listens on 0.0.0.0 and on ::."""
    tcp, tcp6 = behind_a_dead_proxy["tcp"], behind_a_dead_proxy["tcp6"]
    assert "00000000" in listening(tcp, PORT), f"{cell_id}: not on 0.0.0.0:{PORT}\n{tcp}"
    assert "0" * 32 in listening(tcp6, PORT), f"{cell_id}: not on [::]:{PORT}\n{tcp6}"


def test_tini_is_pid_1(cell_id, behind_a_dead_proxy):
    assert behind_a_dead_proxy["pid1"] == "tini", cell_id
