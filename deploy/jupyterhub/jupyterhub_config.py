# A JupyterHub on one machine that spawns kerastack images with DockerSpawner: a runnable example.
#
#   scripts/install-hub.sh                          # JupyterHub 5.5.4, DockerSpawner 14.0.0, configurable-http-proxy 4.6.3
#   export KERASTACK_HUB_PASSWORD="$(openssl rand -hex 12)" KERASTACK_HUB_USERS=alice,bob
#   "$(scripts/install-hub.sh)/venv/bin/jupyterhub" -f deploy/jupyterhub/jupyterhub_config.py   # install-hub.sh prints where
#   # open http://127.0.0.1:8000, log in as alice with that password
#
# What it sets up, and why:
# - The proxy (users' entry point) listens on 127.0.0.1 only. The hub's API listens on the docker0
#   bridge's gateway address, the one address both the host and the containers reach (the containers
#   call the hub to check tokens and report activity). Other containers on the default bridge can
#   reach that port too; the API answers only with a valid token.
# - Each user gets the image's own command (start-jupyter sees the hub's environment and runs
#   `jupyterhub-singleuser`): JupyterLab, with the user's home /home/keras as the notebook root.
# - /home/keras is a named volume per user (kerastack-hub-USER): work survives stopping the server
#   (the container itself is removed), as it would on Kubernetes with zero-to-jupyterhub.
# - TensorBoard is at /user/USER/tensorboard/, launched on demand (the Launcher's TensorBoard tile).
# - Login: one shared password for the listed users (JupyterHub's SharedPasswordAuthenticator), fine
#   for a class on one machine; use an OAuth or LDAP authenticator for anything exposed.
#
# Settings from the environment (all optional but the password and users):
#   KERASTACK_HUB_IMAGE      image to spawn (default ghcr.io/kerastack/keras-jupyter:latest)
#   KERASTACK_HUB_PORT       the proxy's port on 127.0.0.1 (default 8000)
#   KERASTACK_HUB_API_PORT   the hub API's port on the bridge gateway (default 8081)
#   KERASTACK_HUB_CONNECT_IP the address containers reach the hub at (default: docker0's gateway)
#   KERASTACK_HUB_HOME       where scripts/install-hub.sh installed the hub (default ${XDG_CACHE_HOME:-~/.cache}/kerastack/hub);
#                            the hub's database, cookie secret and pid files go to its state/ folder
#   KERASTACK_HUB_CMD        `singleuser` to run `jupyterhub-singleuser` explicitly (zero-to-jupyterhub's way)
import ipaddress
import os
import shutil
from pathlib import Path

import docker

c = get_config()  # noqa: F821 (JupyterHub's config loader defines it)


def _setting(name, default=None):
    value = os.environ.get(name, "").strip()
    if value:
        return value
    if default is None:
        raise SystemExit(f"jupyterhub_config.py: set {name} (see the comment at the top of deploy/jupyterhub/jupyterhub_config.py)")
    return default


def _interface_ipv4(name):
    """The IPv4 address of a network interface of this machine (Linux), or None."""
    import fcntl
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(sock.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))  # SIOCGIFADDR
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


def _bridge_gateway():
    """The docker0 gateway: the host's address on the containers' network. The bridge network lists it in
    its IPAM config; an engine that took over an existing docker0 (a restart, a reinstall) may list the
    subnet alone, and then the bridge interface's own address is that gateway."""
    try:
        bridge = docker.from_env().networks.get("bridge").attrs
    except docker.errors.DockerException as exc:
        raise SystemExit(f"jupyterhub_config.py: cannot read Docker's bridge network ({exc}); is the engine running? Or set KERASTACK_HUB_CONNECT_IP") from None
    ipam = ((bridge.get("IPAM") or {}).get("Config") or []) if isinstance(bridge, dict) else []
    listed = [entry["Gateway"] for entry in ipam if isinstance(entry, dict) and entry.get("Gateway") and ":" not in entry["Gateway"]]
    if listed:
        return listed[0]
    interface = ((bridge.get("Options") or {}) if isinstance(bridge, dict) else {}).get("com.docker.network.bridge.name", "docker0")
    subnets = [entry["Subnet"] for entry in ipam if isinstance(entry, dict) and entry.get("Subnet") and ":" not in entry["Subnet"]]
    address = _interface_ipv4(interface)
    # Only this machine's bridge: an engine elsewhere (DOCKER_HOST) has its own docker0, and a local
    # interface of that name outside the network's subnet is not where its containers can reach.
    if address and subnets and any(ipaddress.ip_address(address) in ipaddress.ip_network(subnet, strict=False) for subnet in subnets):
        return address
    raise SystemExit(
        f"jupyterhub_config.py: cannot find the docker0 bridge's IPv4 gateway (no Gateway in its IPAM config {ipam}, "
        f"and interface {interface} has {address or 'no IPv4 address'}, not in {subnets or 'a listed subnet'}); set KERASTACK_HUB_CONNECT_IP"
    )


# ---------------------------------------------------------------- the hub and its proxy
connect_ip = _setting("KERASTACK_HUB_CONNECT_IP", "") or _bridge_gateway()
c.JupyterHub.bind_url = f"http://127.0.0.1:{_setting('KERASTACK_HUB_PORT', '8000')}"
c.JupyterHub.hub_bind_url = f"http://{connect_ip}:{_setting('KERASTACK_HUB_API_PORT', '8081')}"
c.JupyterHub.hub_connect_url = c.JupyterHub.hub_bind_url

hub_home = Path(_setting("KERASTACK_HUB_HOME", str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kerastack" / "hub")))
# The hub's state (its database of users and token hashes, the cookie secret, the pid files) lives next
# to the installed hub, never in the folder the hub was started from (a checkout someone may commit).
state = hub_home / "state"
state.mkdir(parents=True, exist_ok=True, mode=0o700)
c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")
proxy = hub_home / "proxy" / "node_modules" / ".bin" / "configurable-http-proxy"
c.ConfigurableHTTPProxy.command = [str(proxy) if proxy.exists() else shutil.which("configurable-http-proxy") or "configurable-http-proxy"]

# ---------------------------------------------------------------- who may log in
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = _setting("KERASTACK_HUB_PASSWORD")
c.Authenticator.allowed_users = {name.strip() for name in _setting("KERASTACK_HUB_USERS").split(",") if name.strip()}

# ---------------------------------------------------------------- the users' servers
c.JupyterHub.spawner_class = "dockerspawner.DockerSpawner"
c.DockerSpawner.image = _setting("KERASTACK_HUB_IMAGE", "ghcr.io/kerastack/keras-jupyter:latest")
c.DockerSpawner.remove = True  # the container goes on stop; the home volume stays
c.DockerSpawner.volumes = {"kerastack-hub-{username}": "/home/keras"}
c.DockerSpawner.name_template = "kerastack-hub-{username}"
if _setting("KERASTACK_HUB_CMD", "image") == "singleuser":
    c.DockerSpawner.cmd = ["jupyterhub-singleuser"]
# The first start of a fresh image imports a few large packages; a busy machine needs more than 30 s.
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 120
