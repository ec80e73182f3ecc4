"""Smoke tests of one built image per cell, in real containers with a real Jupyter server.

This is the classic manual check of the "ML toolkit in Docker" chapter, automated: the process runs
as `keras`, files in /src belong to the host user, `import keras` works and TensorFlow lists its
devices, and Jupyter asks for a token.
"""

from __future__ import annotations

import time

import pytest
from python_on_whales import docker

from kerastack.contract import MOUNT_POINT, UID, USER, label
from tests.containers import host_user_dir, jupyter_container

# The chapter's checks run on every platform's image: the default CPU cell's arm64 image too, under QEMU here.
# Every check but the health check's also runs on the default cell's other platforms (arm64 under QEMU here):
# that one tests the Dockerfile's HEALTHCHECK timing, which is the same on every platform and slow to emulate.
pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def running(cell_image, tmp_path_factory):
    """One container per cell, started like the launcher starts it for a non-root host user."""
    folder, uid = host_user_dir(tmp_path_factory.mktemp("src"))
    with jupyter_container(cell_image, src=folder, uid=uid) as r:
        r.host_folder, r.host_uid = folder, uid
        yield r


@pytest.mark.every_platform
def test_jupyter_runs_as_keras_with_the_host_uid(cell_id, running):
    result = running.jupyter.execute("import os, pwd; print(pwd.getpwuid(os.getuid()).pw_name, os.getuid(), os.getgid())")
    assert result.status == "ok", f"{cell_id}: {result.error}"
    assert result.stdout.split() == [USER, str(running.host_uid), str(running.host_uid)], cell_id


@pytest.mark.every_platform
def test_image_default_user_is_keras_uid_1000(cell_id, cell_image):
    assert docker.image.inspect(cell_image).config.user == USER, cell_id
    # One container for both: the name and the number of the user it runs as.
    assert docker.run(cell_image, ["sh", "-c", "id -u -n && id -u"], remove=True, entrypoint="").split() == [USER, str(UID)], cell_id


@pytest.mark.every_platform
def test_file_written_in_src_belongs_to_host_user(cell_id, running):
    result = running.jupyter.execute(f"open('{MOUNT_POINT}/from-the-kernel.txt', 'w').write('hello from keras')")
    assert result.status == "ok", f"{cell_id}: {result.error}"
    written = running.host_folder / "from-the-kernel.txt"
    assert written.read_text() == "hello from keras"
    assert (written.stat().st_uid, written.stat().st_gid) == (running.host_uid, running.host_uid), cell_id


@pytest.mark.every_platform
def test_versions_equal_labels_and_versions_toml(cell_id, cell, cell_image, running, project_config):
    labels = docker.image.inspect(cell_image).config.labels
    release = project_config.tensorflow[cell.tensorflow]
    expected = {"tensorflow": str(release.version), "keras": str(release.keras), "python": str(cell.python)}
    assert {k: labels[label(f"{k}.version")] for k in expected} == expected, cell_id
    result = running.jupyter.execute("import sys, tensorflow as tf, keras; print(tf.__version__, keras.__version__, '%d.%d' % sys.version_info[:2])")
    assert result.status == "ok", f"{cell_id}: {result.error}"
    assert result.stdout.split() == [expected["tensorflow"], expected["keras"], expected["python"]], cell_id


@pytest.mark.every_platform
def test_kernel_imports_keras_and_lists_devices(cell_id, running):
    """The classic check, over Jupyter's REST API and kernel websocket."""
    code = "import keras, tensorflow as tf\nprint('keras', keras.__version__)\nprint([d.name for d in tf.config.list_physical_devices()])"
    result = running.jupyter.execute(code)
    assert result.status == "ok", f"{cell_id}: {result.error}"
    assert "keras 3." in result.stdout
    assert "/physical_device:CPU:0" in result.stdout, result.stdout


@pytest.mark.every_platform
def test_the_kernel_runs_on_the_cells_architecture(cell_id, cell, cell_image, running):
    """The image, its config and the kernel agree on the cell's platform (an arm64 image is aarch64 inside)."""
    machine = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}[cell.platform]
    config = docker.image.inspect(cell_image)
    assert f"{config.os}/{config.architecture}" == cell.platform, cell_id
    result = running.jupyter.execute("import platform, tensorflow as tf; print(platform.machine(), tf.test.is_built_with_cuda())")
    assert result.status == "ok", f"{cell_id}: {result.error}"
    assert result.stdout.split() == [machine, str(cell.is_gpu)], f"{cell_id}: {result.stdout}"


@pytest.mark.every_platform
def test_tiny_keras_model_trains_one_epoch(cell_id, running):
    code = (
        "import numpy as np, keras\n"
        "rng = np.random.default_rng(0)\n"
        "x = rng.normal(size=(256, 8)).astype('float32'); y = (x.sum(axis=1) > 0).astype('float32')\n"
        "model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation='relu'), keras.layers.Dense(1, activation='sigmoid')])\n"
        "model.compile(optimizer='adam', loss='binary_crossentropy')\n"
        "history = model.fit(x, y, epochs=1, batch_size=32, verbose=0)\n"
        "print('loss', history.history['loss'][0])\n"
    )
    result = running.jupyter.execute(code, timeout=180)
    assert result.status == "ok", f"{cell_id}: {result.error}"
    loss = float(result.stdout.split()[-1])
    assert 0 < loss < 10, f"{cell_id}: implausible loss {loss}"


@pytest.mark.every_platform
def test_jupyter_refuses_requests_without_the_token(cell_id, running):
    assert running.jupyter.request("GET", "/api/kernels", token=None)[0] == 403, cell_id
    assert running.jupyter.request("GET", "/api/kernels", token="wrong-token")[0] == 403, cell_id
    assert running.jupyter.request("GET", "/api/kernels")[0] == 200, cell_id
    assert running.jupyter.request("GET", "/api/contents", token=None)[0] == 403, cell_id


def refuses_to_start(image: str, message: str, **run_options) -> bool:
    """The container exits non-zero and says why, instead of serving Jupyter unsafely."""
    container = docker.container.create(image, **run_options)
    try:
        docker.container.start(container)
        return docker.container.wait(container) != 0 and message in docker.container.logs(container)
    finally:
        docker.container.remove(container, force=True, volumes=True)


@pytest.mark.every_platform
def test_empty_token_is_refused(cell_id, cell_image):
    assert refuses_to_start(cell_image, "JUPYTER_TOKEN is empty", envs={"JUPYTER_TOKEN": ""}), cell_id


@pytest.mark.every_platform
def test_notebook7_ui_is_served(cell_id, running):
    status, body = running.jupyter.request("GET", "/tree")
    assert status == 200 and "Jupyter Notebook" in str(body), cell_id


def test_healthcheck_follows_a_custom_port_and_base_url_and_reports_a_frozen_jupyter(cell_id, cell_image):
    """One container for both ways the health check can go. A port and a base URL that are both not the
    defaults: a check that ignored either would probe a path nothing serves and never turn healthy."""
    port, base_url = 9999, "/lab-behind-proxy/"  # neither is the default (contract.PORT, "/")
    with jupyter_container(cell_image, container_port=port, base_url=base_url) as r:
        assert docker.container.inspect(r.container.id).state.health.status == "healthy", cell_id
        assert r.jupyter.request("GET", "/api")[0] == 200

        # SIGSTOP freezes Jupyter without exiting: the port stays open but /api never answers.
        freeze = (
            "import os, signal\n"
            "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
            "    if int(pid) != os.getpid() and b'jupyter-lab' in open(f'/proc/{pid}/cmdline', 'rb').read():\n"
            "        os.kill(int(pid), signal.SIGSTOP)\n"
        )
        r.exec(["python", "-c", freeze], user=USER)
        deadline = time.monotonic() + 60
        health = "healthy"
        while time.monotonic() < deadline and health == "healthy":
            time.sleep(0.5)
            health = docker.container.inspect(r.container.id).state.health.status
        assert health == "unhealthy", cell_id


@pytest.mark.every_platform
def test_runs_as_root_refused(cell_id, cell_image):
    assert refuses_to_start(cell_image, "refusing to run Jupyter as root", user="root", envs={"KERAS_UID": "0", "JUPYTER_TOKEN": "x" * 16}), cell_id


@pytest.mark.every_platform
def test_no_build_leftovers_and_only_hash_based_bytecode_in_the_image(cell_id, cell_image):
    script = (
        "import pathlib, sys\n"
        "venv = pathlib.Path('/opt/venv')\n"
        # Bytecode ships, but only PEP 552 unchecked-hash .pyc (flags word 0b01): no timestamps inside.
        "pycs = list(venv.rglob('*.pyc'))\n"
        "leftovers = [str(p) for p in pycs if int.from_bytes(p.read_bytes()[4:8], 'little') != 1][:5]\n"
        "leftovers += [] if len(pycs) > 1000 else [f'only {len(pycs)} .pyc files: the bytecode is missing']\n"
        # gcc and make are not leftovers: the toolkit layer ships them for %%cython and source-only packages.
        # Files, not directories: the OS layer leaves the base's empty apt dirs alone (removing them would be a whiteout).
        "caches = ('/var/lib/apt/lists', '/var/cache/apt/archives', '/root/.cache/pip')\n"
        "leftovers += [str(f) for p in caches for f in pathlib.Path(p).rglob('*') if f.is_file() and f.name != 'lock'][:5]\n"
        "print('\\n'.join(leftovers)); sys.exit(1 if leftovers else 0)\n"
    )
    result = docker.run(cell_image, ["python", "-c", script], remove=True, entrypoint="", user="root")
    assert result.strip() == "", f"{cell_id}: {result}"


@pytest.mark.every_platform
def test_jupyter_and_a_running_kernel_are_not_root(cell_id, running):
    """Apart from tini (PID 1, needed to drop privileges), nothing runs as root: the process list is
    read from inside a kernel, so the kernel is certainly alive when it is checked. (Under QEMU each
    command line starts with the emulator's path, hence the long cut.)"""
    code = (
        "import pathlib\n"
        "for p in pathlib.Path('/proc').glob('[0-9]*'):\n"
        "    try:\n"
        "        uid = next(l.split()[1] for l in (p / 'status').read_text().splitlines() if l.startswith('Uid:'))\n"
        "        print(p.name, uid, (p / 'cmdline').read_bytes().replace(b'\\0', b' ').decode()[:300])\n"
        "    except (OSError, StopIteration):\n"
        "        pass\n"
    )
    result = running.jupyter.execute(code)
    assert result.status == "ok", f"{cell_id}: {result.error}"
    kernels = [line for line in result.stdout.splitlines() if "ipykernel" in line]
    servers = [line for line in result.stdout.splitlines() if "jupyter-lab" in line or "jupyter-server" in line or "jupyter lab" in line]
    assert kernels and servers, result.stdout
    assert all(line.split()[1] != "0" for line in kernels + servers), f"{cell_id}: {kernels + servers}"
