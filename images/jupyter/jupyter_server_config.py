# Jupyter Server settings of every kerastack image, installed as /opt/venv/etc/jupyter/jupyter_server_config.py
# (sys.prefix's config folder, read by `jupyter lab` and `jupyterhub-singleuser` alike; command-line flags
# such as Z2JH's `--notebook-dir` or start-jupyter's `--ServerApp.root_dir=/src` still win).
#
# - JupyterLab is the default UI, also under a hub (the Notebook 7 UI stays at /tree).
# - Under a JupyterHub (its environment names the server's prefix and token), the notebook root is the
#   user's home, /home/keras: the folder that DockerSpawner's named volume and zero-to-jupyterhub's
#   persistent volume are mounted at, so saved work survives a stop. Without a hub, start-jupyter
#   serves /src (the folder `make run` mounts).
# - TensorBoard runs on demand behind jupyter-server-proxy at <base URL>tensorboard/ (under a hub:
#   /user/NAME/tensorboard/), reading event files under TENSORBOARD_LOGDIR, by default the notebook root,
#   so a Keras TensorBoard callback writing e.g. logs/fit shows up as a run.
import os

c = get_config()  # noqa: F821 (Jupyter's config loader defines it)

UNDER_HUB = bool(os.environ.get("JUPYTERHUB_API_TOKEN") and os.environ.get("JUPYTERHUB_SERVICE_PREFIX"))
ROOT = os.path.expanduser("~") if UNDER_HUB else "/src"

c.ServerApp.default_url = "/lab"
if UNDER_HUB:
    c.ServerApp.root_dir = ROOT
    # A kernel started without a notebook path (a console, the REST API) runs in the server's working
    # directory, the image's WORKDIR /src: under a hub that is a throwaway volume, so work from the home.
    if os.path.isdir(ROOT):
        os.chdir(ROOT)


def _tensorboard_command(port, base_url):
    # --path_prefix makes TensorBoard's own links carry the full prefix (absolute_url below forwards it).
    logdir = os.environ.get("TENSORBOARD_LOGDIR") or ROOT
    return ["tensorboard", f"--logdir={logdir}", "--host=127.0.0.1", f"--port={port}", f"--path_prefix={base_url}tensorboard", "--reload_interval=5"]


c.ServerProxy.servers = {
    "tensorboard": {
        "command": _tensorboard_command,
        "absolute_url": True,
        "timeout": 120,  # the first start imports TensorFlow's pieces (seconds on a cold cache)
        "launcher_entry": {"title": "TensorBoard"},
        "new_browser_tab": True,
    }
}
