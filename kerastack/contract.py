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
EXTRAS_MANIFEST_PATH = f"{IN_IMAGE_DIR}/extras.json"  # a derived image's extra packages, next to the manifest

# ---------------------------------------------------------------- layers
# Lock groups, least to most often changing: one layer each, installed in this order.
LOCK_GROUPS = ("cuda", "tensorflow", "science", "data", "visualisation", "jupyter")
# The lock groups whose packages versions.toml lists, each in the table of its name ([jupyter] required,
# the others optional), in layer order: a package that several of them need belongs to the first one.
PACKAGE_GROUPS = ("science", "data", "visualisation", "jupyter")
# The venv's own tools, locked like the rest but installed over what `python3 -m venv` gave (the base's
# old pip and setuptools, which scanners flag) in the venv layer itself: lock file venv.txt, group "venv"
# in the manifest. setuptools also builds %%cython and source-only packages on Python 3.12+.
VENV_GROUP = "venv"
VENV_PACKAGES = ("pip", "setuptools")


def image_layers(variant: str) -> tuple[str, ...]:
    """The layers the Dockerfile puts on top of the base image, bottom first (the build report names them)."""
    groups = tuple(g for g in LOCK_GROUPS if g != "cuda" or needs_cuda(variant))
    return ("os", "toolkit", VENV_GROUP, *groups, "font-cache", "manifest", "image files")


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
# Derived images (scripts/launch --requirements): the image they extend, the lock they were built from, their extra packages.
EXTENDS_LABEL, EXTENDS_REF_LABEL, EXTENDS_DIGEST_LABEL = map(label, ("extends.image-id", "extends.ref", "extends.digest"))
EXTRAS_LOCK_LABEL, EXTRAS_LABEL = label("extras.lock"), label("extras.packages")

# ---------------------------------------------------------------- variants and tags
VARIANTS = ("cpu", "gpu")
GPU_VARIANT = "gpu"  # the one switch: a variant needs CUDA exactly when it is this one
CELL_ID_PREFIX = "tf"  # cell ids are `tf` + the cell tag: tf2.21.0-py3.11-cpu <-> 2.21.0-py3.11-cpu
LATEST_TAG = "latest"  # the CPU variant's moving tag; other variants get `latest-<variant>`


# Platforms (OCI os/architecture) an image can be built for. One tag serves every platform of a cell
# (published as one multi-platform index), so tags never name a platform; the cell id names it only when
# it is not the default, which keeps the ids (and lock folders) of the default platform as they were.
DEFAULT_PLATFORM = "linux/amd64"
PLATFORMS = (DEFAULT_PLATFORM, "linux/arm64")


def platform_suffix(platform: str) -> str:
    """What a cell id carries after its stem: "" for the default platform, `-arm64` for linux/arm64."""
    return "" if platform == DEFAULT_PLATFORM else "-" + platform.split("/", 1)[1].replace("/", "-")


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
