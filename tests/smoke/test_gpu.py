"""GPU checks of the GPU cells. All but the last run on hosts without a GPU (CI has none).

The tag names a CUDA version; these tests prove the image holds that CUDA, and that TensorFlow was
built for the CUDA/cuDNN versions.toml records. On a host with a GPU, an op also runs on it.
"""

from __future__ import annotations

import json

import pytest
from python_on_whales import docker

from kerastack.versions import Version

pytestmark = [pytest.mark.docker, pytest.mark.gpu_image]

PROBE = r"""
import ctypes, importlib.metadata as md, json, pathlib, sysconfig
import tensorflow as tf
site = pathlib.Path(sysconfig.get_paths()["purelib"])
libs = sorted(site.glob("nvidia/*/lib/*.so*"))
pending, errors = list(libs), {}
while pending:  # load in dependency order: retry until nothing more loads
    progress = False
    for lib in list(pending):
        try:
            ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
            pending.remove(lib)
            progress = True
        except OSError as exc:
            errors[lib.name] = str(exc)
    if not progress:
        break
runtime = ctypes.c_int()
cudart = ctypes.CDLL(str(next(site.glob("nvidia/cuda_runtime/lib/libcudart.so*"))))
assert cudart.cudaRuntimeGetVersion(ctypes.byref(runtime)) == 0
info = tf.sysconfig.get_build_info()
print(json.dumps({
    "built_with_cuda": tf.test.is_built_with_cuda(),
    "build_cuda": info.get("cuda_version"),
    "build_cudnn": info.get("cudnn_version"),
    "runtime": runtime.value,
    "libraries": [lib.name for lib in libs],
    "not_loaded": {lib.name: errors[lib.name] for lib in pending},
    "wheels": {d.metadata["Name"].lower(): d.version for d in md.distributions() if d.metadata["Name"].lower().startswith("nvidia-")},
}))
"""


@pytest.fixture(scope="module")
def probe(cell_image) -> dict:
    out = docker.run(cell_image, ["python", "-c", PROBE], remove=True, entrypoint="", envs={"TF_CPP_MIN_LOG_LEVEL": "3"})
    return json.loads(out.strip().splitlines()[-1])


def test_tensorflow_is_built_with_cuda(cell_id, probe):
    assert probe["built_with_cuda"] is True, cell_id


def test_build_info_matches_versions_toml(cell_id, cell, probe, project_config, cell_image):
    release = project_config.tensorflow[cell.tensorflow]
    assert Version(probe["build_cuda"]).startswith(release.built_with_cuda), f"{cell_id}: TF says CUDA {probe['build_cuda']}"
    # TF reports cuDNN by major version only ("9"); compare at the precision it gives.
    assert release.built_with_cudnn.startswith(Version(probe["build_cudnn"])), f"{cell_id}: TF says cuDNN {probe['build_cudnn']}"
    labels = docker.image.inspect(cell_image).config.labels
    assert labels["io.kerastack.tensorflow.built-with.cuda"] == str(release.built_with_cuda)
    assert labels["io.kerastack.tensorflow.built-with.cudnn"] == str(release.built_with_cudnn)


def test_cuda_runtime_is_the_cells_cuda(cell_id, cell, probe, project_config, cell_image):
    major, minor = divmod(probe["runtime"], 1000)
    assert Version(f"{major}.{minor // 10}") == cell.cuda, f"{cell_id}: cudaRuntimeGetVersion() = {probe['runtime']}"
    labels = docker.image.inspect(cell_image).config.labels
    assert labels["io.kerastack.cuda.version"] == str(cell.cuda)


def test_installed_cuda_wheels_are_the_pinned_ones(cell_id, cell, probe, project_config, cell_image):
    pinned = dict(project_config.cuda[cell.cuda].wheels)
    assert probe["wheels"] == pinned, cell_id
    label = docker.image.inspect(cell_image).config.labels["io.kerastack.cuda.wheels"]
    assert dict(item.split("==") for item in label.split(",")) == pinned


def test_every_cuda_library_loads_without_a_driver(cell_id, probe):
    assert len(probe["libraries"]) >= 10, f"{cell_id}: only {probe['libraries']}"
    assert probe["not_loaded"] == {}, cell_id


def test_gpu_environment_for_the_nvidia_toolkit(cell_id, cell_image):
    env = dict(item.split("=", 1) for item in docker.image.inspect(cell_image).config.env)
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert "compute" in env["NVIDIA_DRIVER_CAPABILITIES"].split(",")


def test_minimum_driver_is_labelled(cell_id, cell, cell_image, project_config):
    labels = docker.image.inspect(cell_image).config.labels
    assert labels["io.kerastack.nvidia.driver.min"] == project_config.cuda[cell.cuda].min_driver


def test_falls_back_to_cpu_without_a_gpu(cell_id, cell_image, host_gpu):
    if host_gpu.available:
        pytest.skip("this host has a GPU; the CPU fallback is checked on hosts without one")
    code = "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')), float(tf.reduce_sum(tf.ones((2, 2)))))"
    out = docker.run(cell_image, ["python", "-c", code], remove=True, entrypoint="", envs={"TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.strip().splitlines()[-1] == "0 4.0", cell_id


@pytest.mark.gpu
def test_an_op_runs_on_the_gpu(cell_id, cell_image, host_gpu):
    if not host_gpu.available:
        pytest.skip(f"no GPU on this host: {host_gpu.reason}")
    code = "import tensorflow as tf\nwith tf.device('/GPU:0'):\n    x = tf.random.normal((512, 512)); y = tf.matmul(x, x)\nprint(y.device)"
    out = docker.run(cell_image, ["python", "-c", code], remove=True, entrypoint="", gpus="all", envs={"TF_CPP_MIN_LOG_LEVEL": "3"})
    assert "GPU:0" in out.strip().splitlines()[-1], cell_id
