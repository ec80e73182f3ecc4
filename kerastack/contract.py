"""The image contract: what every image promises and every tool relies on, in one place. Pure.

The Dockerfile gets these values as build arguments (`build_args`), images/builder/write-manifest gets
the lock groups from its environment, and scripts/launch (one standalone file) carries copies that
tests/unit/test_contract.py ties to this module, so a value changed in one place only fails a test.
"""

from __future__ import annotations

# ---------------------------------------------------------------- the user and the folders
USER = "keras"  # the non-root user Jupyter runs as
UID = 1000  # its UID and GID (also Z2JH's default runAsUser)
GID = 1000
HOME = f"/home/{USER}"
MOUNT_POINT = "/src"  # the user's folder, mounted by the launcher; Jupyter's root
PORT = 8888  # Jupyter inside the container
VENV = "/opt/venv"

# ---------------------------------------------------------------- what the image carries about itself
IN_IMAGE_DIR = "/usr/share/kerastack"
MANIFEST_PATH = f"{IN_IMAGE_DIR}/manifest.json"
LOCKS_PATH = f"{IN_IMAGE_DIR}/locks"

# ---------------------------------------------------------------- layers
# Lock groups, least to most often changing: one layer each, installed in this order.
LOCK_GROUPS = ("cuda", "tensorflow", "science", "jupyter")
# The fixed file time of the OS and lock-group layers (1980-01-01): their files depend on the base and
# the lock files, not on the commit, so identical groups are identical layers in every cell and release.
LAYER_EPOCH = 315532800

# ---------------------------------------------------------------- labels
LABEL_PREFIX = "io.kerastack"


def label(name: str) -> str:
    """`label("variant")` -> `io.kerastack.variant`."""
    return f"{LABEL_PREFIX}.{name}"


# Every image: what it is.
CELL_LABEL, VARIANT_LABEL, TENSORFLOW_LABEL, KERAS_LABEL, PYTHON_LABEL = map(
    label, ("cell", "variant", "tensorflow.version", "keras.version", "python.version")
)
# GPU images: the CUDA inside, what TensorFlow was built with, the driver it needs, where the GPU test's answer is.
BUILT_WITH_CUDA_LABEL, BUILT_WITH_CUDNN_LABEL = label("tensorflow.built-with.cuda"), label("tensorflow.built-with.cudnn")
CUDA_LABEL, CUDA_RUNTIME_LABEL, CUDNN_LABEL, CUDA_WHEELS_LABEL = map(label, ("cuda.version", "cuda.runtime", "cudnn.version", "cuda.wheels"))
MIN_DRIVER_LABEL, GPU_OP_LABEL = label("nvidia.driver.min"), label("gpu-op.ran-on-gpu")

# ---------------------------------------------------------------- variants and tags
VARIANTS = ("cpu", "gpu")
GPU_VARIANT = "gpu"  # the one switch: a variant needs CUDA exactly when it is this one
CELL_ID_PREFIX = "tf"  # cell ids are `tf` + the cell tag: tf2.21.0-py3.11-cpu <-> 2.21.0-py3.11-cpu
LATEST_TAG = "latest"  # the CPU variant's moving tag; other variants get `latest-<variant>`


def latest_tag(variant: str) -> str:
    return LATEST_TAG if variant == "cpu" else f"{LATEST_TAG}-{variant}"


def needs_cuda(variant: str) -> bool:
    return variant == GPU_VARIANT


def build_args() -> dict[str, str]:
    """The contract as the Dockerfile's build arguments (it declares them without defaults)."""
    return {
        "KERAS_USER": USER,
        "KERAS_UID": str(UID),
        "KERAS_GID": str(GID),
        "MOUNT_POINT": MOUNT_POINT,
        "JUPYTER_PORT": str(PORT),
        "VENV": VENV,
        "IN_IMAGE_DIR": IN_IMAGE_DIR,
        "LAYER_EPOCH": str(LAYER_EPOCH),
        "LOCK_GROUPS": " ".join(LOCK_GROUPS),
    }
