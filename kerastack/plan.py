"""Build plans: for each cell, exactly what to build and how to name it. Pure."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from . import contract
from .config import Config
from .layout import lock_build_arg
from .manifest import facts as manifest_facts
from .matrix import Cell, resolve
from .tags import BuildStamp, CellTags, local_tag, tags_for

SOURCE_URL = "https://github.com/kerastack/kerastack"
TARGET = "image"  # the Dockerfile's one final stage; the VARIANT build argument picks the variant's layers


@dataclass(frozen=True)
class BuildPlan:
    cell: Cell
    target: str
    image: str  # repository without tag
    tags: CellTags
    build_args: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]

    @property
    def id(self) -> str:
        return self.cell.id

    def ref(self, tag: str) -> str:
        return f"{self.image}:{tag}"

    @property
    def immutable_ref(self) -> str:
        """The local image under its immutable tag (`tags.local_tag`: a platform suffix off the default platform)."""
        return self.ref(local_tag(self.cell, self.tags.immutable))

    @property
    def cell_ref(self) -> str:
        return self.ref(local_tag(self.cell, self.tags.cell))

    @property
    def local_refs(self) -> list[str]:
        """Tags a build puts on the local image: the immutable and the cell tag. Moving tags are publish's."""
        return [self.immutable_ref, self.cell_ref]

    def as_json(self) -> dict:
        """One entry of `nox -s matrix -- --json`, read by the release workflow."""
        return {
            "id": self.cell.id,
            "tensorflow": str(self.cell.tensorflow),
            "python": str(self.cell.python),
            "variant": self.cell.variant,
            "cuda": str(self.cell.cuda) if self.cell.cuda else "",
            "platform": self.cell.platform,
            "target": self.target,
            "filter": f"id={self.cell.id}",
            "image": self.image,
            "tags": {"immutable": self.tags.immutable, "cell": self.tags.cell, "moving": list(self.tags.moving)},
            "build_args": dict(self.build_args),
        }


GPU_OP_LABEL = "not known at build time; the publish report (gpu_op_on_gpu) and the release summary record it per digest"


def source_date_epoch(created: str) -> int:
    """The build's `created` time (RFC 3339, UTC: the commit time) as seconds since the epoch."""
    return int(datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


def plan_cell(config: Config, all_cells: Sequence[Cell], cell: Cell, stamp: BuildStamp, base_image: str, created: str,
              base_labels: Mapping[str, str] | None = None, build_base_image: str | None = None) -> BuildPlan:  # fmt: skip
    """`base_image` is the base actually used (official or bootstrapped); `created` an RFC 3339 time;
    `base_labels` say where that base came from (kerastack.base_images.labels), so the image itself does;
    `build_base_image` is the same Python's base for the platform the build runs on, where the venv and the
    lock groups are installed (a cross build: the engine's platform; by default the base itself)."""
    r = resolve(config, cell)
    tags = tags_for(config, all_cells, cell, stamp)
    build_args = {
        **contract.build_args(),  # the user, UID, mount point, port, lock groups and layer time
        "BASE_IMAGE": base_image,
        "BUILD_BASE_IMAGE": build_base_image or base_image,
        # The stage the venv and the lock groups are installed in: the image's own `base`, or in a cross build
        # (another platform's base given) `cross-python`, on the build platform's base.
        "PYTHON_STAGE": "cross-python" if build_base_image and build_base_image != base_image else "base",
        "PYTHON_VERSION": str(cell.python),
        "LOCK_DIR": lock_build_arg(cell.id),
        "MANIFEST_FACTS": json.dumps(manifest_facts(config, cell, base_image), sort_keys=True, separators=(",", ":")),
        "VARIANT": cell.variant,  # the one switch: selects the variant's layers below the shared ones (cpu-libs/gpu-libs)
        # File times in every layer, and (BuildKit >= 0.11) the created/history times of the config.
        "SOURCE_DATE_EPOCH": str(source_date_epoch(created)),
    }
    labels = {
        "org.opencontainers.image.title": f"Keras {r.release.keras} + TensorFlow {r.release.version} + Jupyter ({cell.variant})",
        "org.opencontainers.image.description": "JupyterLab with pinned TensorFlow and Keras, run as a non-root user, built from versions.toml",
        "org.opencontainers.image.version": tags.cell,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.revision": stamp.revision,
        "org.opencontainers.image.source": SOURCE_URL,
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.base.name": base_image,
        "org.opencontainers.image.ref.name": tags.immutable,
        contract.CELL_LABEL: cell.id,
        contract.VARIANT_LABEL: cell.variant,
        contract.TENSORFLOW_LABEL: str(r.release.version),
        contract.KERAS_LABEL: str(r.release.keras),
        contract.PYTHON_LABEL: str(cell.python),
        **(base_labels or {}),
    }
    if r.cuda is not None:
        labels |= {
            contract.BUILT_WITH_CUDA_LABEL: str(r.release.built_with_cuda),
            contract.BUILT_WITH_CUDNN_LABEL: str(r.release.built_with_cudnn),
            contract.CUDA_LABEL: str(r.cuda.version),
            contract.CUDA_RUNTIME_LABEL: r.cuda.runtime_version,
            contract.CUDNN_LABEL: str(r.cuda.cudnn),
            contract.CUDA_WHEELS_LABEL: ",".join(f"{name}=={version}" for name, version in r.cuda.wheels),
            contract.MIN_DRIVER_LABEL: r.cuda.min_driver,
            # Labels are fixed at build time, before any test runs: this one can only say where the answer is.
            contract.GPU_OP_LABEL: GPU_OP_LABEL,
        }
    return BuildPlan(
        cell=cell,
        target=TARGET,
        image=config.image,
        tags=tags,
        build_args=tuple(sorted(build_args.items())),
        labels=tuple(sorted(labels.items())),
    )
