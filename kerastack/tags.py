"""The tag scheme. Pure: computed from the matrix and a build stamp.

Three kinds of tag, from most to least stable:
- immutable: `2.21.0-py3.11-cpu-20261124-a1b2c3d`: one build; a rebuild gets a new one, publish never overwrites it.
- cell: `2.21.0-py3.11-cpu`, `2.21.0-py3.11-gpu-cuda12.5`: names what is inside; moves only when that cell is rebuilt.
- moving: `latest`, `latest-gpu`, `2.21-cpu`, `2.21-gpu`: follow the highest TensorFlow version of their variant.

No tag names a platform: one tag serves every platform of a cell, so cells that differ only in their
platform (tf2.21.0-py3.11-cpu and tf2.21.0-py3.11-cpu-arm64) have the same tags.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from . import contract
from .config import Config
from .matrix import Cell
from .versions import Version

IMMUTABLE = "immutable"
CELL = "cell"
MOVING = "moving"
KIND_HELP = {
    IMMUTABLE: "never moves: one build, never overwritten",
    CELL: "moves only when this cell is rebuilt",
    MOVING: "moves to the newest release of its variant",
}
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_NO_CUDA = Version("0")  # CPU cells: ranks them among themselves like a CUDA version would
_REVISION = re.compile(r"^[0-9a-f]{7,40}(-dirty)?$|^unknown$")


@dataclass(frozen=True)
class BuildStamp:
    """What makes a build's immutable tag unique: the UTC build date and the source revision."""

    date: str  # YYYYMMDD
    revision: str  # short git commit, "-dirty" when the tree had changes

    def __post_init__(self) -> None:
        if not re.match(r"^\d{8}$", self.date):
            raise ValueError(f"build date {self.date!r} is not YYYYMMDD")
        if not _REVISION.match(self.revision):
            raise ValueError(f"revision {self.revision!r} is not a short git commit")

    @classmethod
    def at(cls, when: datetime, revision: str) -> BuildStamp:
        return cls(when.astimezone(UTC).strftime("%Y%m%d"), revision)

    @property
    def suffix(self) -> str:
        return f"{self.date}-{self.revision}"


@dataclass(frozen=True)
class CellTags:
    cell_id: str
    immutable: str
    cell: str
    moving: tuple[str, ...]

    def all(self) -> tuple[str, ...]:
        return (self.immutable, self.cell, *self.moving)

    def kinds(self) -> list[tuple[str, str]]:
        return [(self.immutable, IMMUTABLE), (self.cell, CELL), *((t, MOVING) for t in self.moving)]


def cell_tag(cell: Cell) -> str:
    """The cell tag is the cell's stem, the same name its id carries after the `tf` prefix (and before a platform)."""
    tag = cell.stem
    assert _TAG.match(tag), tag
    return tag


def local_tag(cell: Cell, tag: str) -> str:
    """The tag a cell's image has in a local engine. One engine's image store holds one image per tag, so the
    image of a platform other than the default carries the cell id's platform suffix there
    (`2.21.0-py3.11-cpu-arm64`); in a registry every platform sits under the one tag, in an index."""
    local = tag + contract.platform_suffix(cell.platform)
    assert _TAG.match(local), local
    return local


def local_ref(image: str, cell: Cell) -> str:
    """`IMAGE:TAG` of a cell's local image under its cell tag (what `make run`, smoke and the tests use)."""
    return f"{image}:{local_tag(cell, cell_tag(cell))}"


def immutable_tag(cell: Cell, stamp: BuildStamp) -> str:
    tag = f"{cell_tag(cell)}-{stamp.suffix}"
    assert _TAG.match(tag), tag
    return tag


def _preference(config: Config, cell: Cell) -> tuple:
    """Higher is preferred: newest TF, then the default Python and CUDA, then the newest of those."""
    return (
        cell.tensorflow,
        cell.python == config.defaults.python,
        cell.python,
        cell.cuda == config.defaults.cuda,
        cell.cuda or _NO_CUDA,
    )


def moving_tags(config: Config, all_cells: Sequence[Cell]) -> dict[str, tuple[str, ...]]:
    """Moving tags by cell id, computed over the WHOLE matrix so that a filtered build never steals them. A tag
    belongs to a stem, not to one platform's cell: every platform of the owning cell gets it."""
    owners: dict[str, Cell] = {}
    for variant in sorted({c.variant for c in all_cells}):
        of_variant = [c for c in all_cells if c.variant == variant]
        latest = contract.latest_tag(variant)
        owners[latest] = max(of_variant, key=lambda c: _preference(config, c))
        for line in sorted({c.tensorflow.major_minor for c in of_variant}):
            in_line = [c for c in of_variant if c.tensorflow.major_minor == line]
            owners[f"{line}-{variant}"] = max(in_line, key=lambda c: _preference(config, c))
    by_stem: dict[str, list[str]] = {}
    for tag, cell in owners.items():
        by_stem.setdefault(cell.stem, []).append(tag)
    return {cell.id: tuple(sorted(by_stem[cell.stem])) for cell in all_cells if cell.stem in by_stem}


def tags_for(config: Config, all_cells: Sequence[Cell], cell: Cell, stamp: BuildStamp) -> CellTags:
    return CellTags(
        cell_id=cell.id,
        immutable=immutable_tag(cell, stamp),
        cell=cell_tag(cell),
        moving=moving_tags(config, all_cells).get(cell.id, ()),
    )


def published_tag(local: str, platform: str) -> str:
    """The registry tag of a cell's local tag: the platform suffix `local_tag` added comes off again (one
    tag serves every platform in the registry). A local tag without the suffix its platform needs is an error."""
    suffix = contract.platform_suffix(platform)
    if suffix and not local.endswith(suffix):
        raise ValueError(f"the local tag {local!r} of a {platform} image does not end in {suffix!r}")
    return local.removesuffix(suffix) if suffix else local


def staging_tag(immutable: str, platform: str) -> str:
    """The per-platform tag one platform's image is pushed under before a multi-platform index joins them:
    the immutable tag and the platform's architecture, for every platform (`...-abc1234-amd64`, `-arm64`).
    Like the immutable tag, it never moves."""
    tag = f"{immutable}-{platform.split('/', 1)[1].replace('/', '-')}"
    assert _TAG.match(tag), tag
    return tag
