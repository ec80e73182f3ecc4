"""The build matrix: cells from versions.toml, their identifiers, and the filters every session shares."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import contract
from .config import Config, CudaVersion, PythonVersion, Rule, TensorFlowRelease, Variant
from .errors import ConfigError
from .versions import Version

FILTER_KEYS = ("tf", "python", "variant", "cuda", "id")


@dataclass(frozen=True, order=True)
class Cell:
    """One image to build: a TensorFlow release × Python × variant (× CUDA for GPU)."""

    tensorflow: Version
    python: Version
    variant: str
    cuda: Version | None = None

    @property
    def stem(self) -> str:
        """What is inside, e.g. 2.21.0-py3.11-gpu-cuda12.5: the cell tag, and the id after its prefix."""
        return f"{self.tensorflow}-py{self.python}-{self.variant}" + (f"-cuda{self.cuda}" if self.cuda else "")

    @property
    def id(self) -> str:
        """The one name logs, reports and filters use, e.g. tf2.21.0-py3.11-gpu-cuda12.5."""
        return contract.CELL_ID_PREFIX + self.stem

    @property
    def is_gpu(self) -> bool:
        return self.cuda is not None

    def matches(self, rule: Rule) -> bool:
        return (
            (rule.tensorflow is None or self.tensorflow.startswith(rule.tensorflow))
            and (rule.python is None or self.python.startswith(rule.python))
            and (rule.variant is None or self.variant == rule.variant)
            and (rule.cuda is None or (self.cuda is not None and self.cuda.startswith(rule.cuda)))
        )


@dataclass(frozen=True)
class ResolvedCell:
    """A cell with the facts it is built from, looked up once."""

    cell: Cell
    release: TensorFlowRelease
    python: PythonVersion
    variant: Variant
    cuda: CudaVersion | None

    @property
    def id(self) -> str:
        return self.cell.id


def cells(config: Config) -> list[Cell]:
    """Every cell of the matrix, validated, in a stable order. Raises ConfigError on the first problem."""
    product: list[tuple[Cell, str]] = []
    for tf in config.axis_tensorflow:
        for py in config.axis_python:
            for variant in config.axis_variant:
                cudas: Sequence[Version | None] = config.axis_cuda if config.variants[variant].needs_cuda else (None,)
                for cuda in cudas:
                    product.append((Cell(tf, py, variant, cuda), "matrix"))

    for rule in config.excludes:
        if not any(cell.matches(rule) for cell, _ in product):
            raise ConfigError(config.path, rule.key_path, "this exclude matches no cell of the matrix", "correct its versions or remove it")
    kept = [(cell, origin) for cell, origin in product if not any(cell.matches(rule) for rule in config.excludes)]

    for rule in config.includes:
        assert rule.tensorflow and rule.python and rule.variant
        if config.variants[rule.variant].needs_cuda and rule.cuda is None:
            raise ConfigError(config.path, rule.key_path, "a GPU cell without a CUDA version", 'add cuda = "12.5" (a [cuda] entry)')
        if not config.variants[rule.variant].needs_cuda and rule.cuda is not None:
            raise ConfigError(config.path, f"{rule.key_path}.cuda", "a CPU cell has no CUDA version", "remove cuda from this include")
        kept.append((Cell(rule.tensorflow, rule.python, rule.variant, rule.cuda), rule.key_path))

    seen: dict[str, str] = {}
    for cell, origin in kept:
        if cell.id in seen:
            raise ConfigError(config.path, origin, f"duplicate cell {cell.id} (also from {seen[cell.id]})", "remove the include or add an exclude")
        seen[cell.id] = origin
        _check_supported(config, cell, origin)
    if not kept:
        raise ConfigError(config.path, "matrix", "the matrix has no cells", "loosen the excludes or add versions to the axes")
    result = sorted(cell for cell, _ in kept)
    for variant in config.axis_variant:
        default_cell(config, variant, result)  # `make run` and `latest` must find their cell
    return result


def _check_supported(config: Config, cell: Cell, origin: str) -> None:
    release = config.tensorflow[cell.tensorflow]
    where = origin if origin != "matrix" else "matrix.python"
    if not release.python.contains(cell.python):
        raise ConfigError(
            config.path,
            where,
            f"TensorFlow {cell.tensorflow} supports Python {release.python}, not {cell.python} (cell {cell.id})",
            f'add [[matrix.exclude]] tensorflow = "{cell.tensorflow}", python = "{cell.python}", or drop the version from the axis',
        )
    if cell.cuda is not None:
        if cell.cuda not in config.cuda:
            raise ConfigError(
                config.path, origin, f'cell {cell.id} names CUDA {cell.cuda}, which has no [cuda."{cell.cuda}"] entry', "add its CUDA wheels to versions.toml"
            )
        if not release.cuda.contains(cell.cuda):
            raise ConfigError(
                config.path,
                origin if origin != "matrix" else "matrix.cuda",
                f"TensorFlow {cell.tensorflow} accepts CUDA {release.cuda}, not {cell.cuda} (cell {cell.id})",
                f'add [[matrix.exclude]] tensorflow = "{cell.tensorflow}", cuda = "{cell.cuda}", or drop the version from the axis',
            )
        cudnn = config.cuda[cell.cuda].cudnn
        if cudnn.parts[0] != release.built_with_cudnn.parts[0]:
            raise ConfigError(
                config.path,
                f'cuda."{cell.cuda}".cudnn',
                f"cuDNN {cudnn} is not the cuDNN {release.built_with_cudnn.parts[0]}.x TensorFlow {cell.tensorflow} was built with (cell {cell.id})",
                f'pin a cuDNN {release.built_with_cudnn.parts[0]}.x wheel, or add [[matrix.exclude]] tensorflow = "{cell.tensorflow}", cuda = "{cell.cuda}"',
            )


def resolve(config: Config, cell: Cell) -> ResolvedCell:
    return ResolvedCell(
        cell=cell,
        release=config.tensorflow[cell.tensorflow],
        python=config.python[cell.python],
        variant=config.variants[cell.variant],
        cuda=config.cuda[cell.cuda] if cell.cuda is not None else None,
    )


def default_cell(config: Config, variant: str, all_cells: Iterable[Cell]) -> Cell:
    """The cell `make run` (cpu) or `make run-gpu` (gpu) uses: [defaults] for that variant."""
    d = config.defaults
    needs_cuda = variant in config.variants and config.variants[variant].needs_cuda
    wanted = Cell(d.tensorflow, d.python, variant, d.cuda if needs_cuda else None)
    if wanted not in set(all_cells):
        raise ConfigError(
            config.path,
            "defaults",
            f"the default {variant} cell {wanted.id} is not in the matrix (excluded?), so `make run` and `latest` would have no cell",
            "change [defaults] or stop excluding that cell in [matrix]",
        )
    return wanted


def default_cells(config: Config, all_cells: Sequence[Cell]) -> list[Cell]:
    """The default cell of every variant on the matrix axis: what `make run`, `make run-gpu` and `latest` use."""
    return [default_cell(config, variant, all_cells) for variant in config.axis_variant]


def previous_release(cell: Cell, all_cells: Sequence[Cell]) -> Cell | None:
    """The cell of the next lower TensorFlow release with the same Python, variant and CUDA."""
    older = [c for c in all_cells if (c.python, c.variant, c.cuda) == (cell.python, cell.variant, cell.cuda) and c.tensorflow < cell.tensorflow]
    return max(older, default=None)


@dataclass(frozen=True)
class Filter:
    """`tf=2.21 variant=cpu python=3.11,3.13 cuda=12.5 id=...`: every key must match, any value of a key."""

    terms: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @classmethod
    def parse(cls, words: Sequence[str]) -> Filter:
        terms: dict[str, tuple[str, ...]] = {}
        for word in words:
            key, sep, value = word.partition("=")
            if not sep or not value:
                raise ConfigError("filter", word, "not a KEY=VALUE term", f"write e.g. tf=2.21 variant=cpu (keys: {', '.join(FILTER_KEYS)})")
            if key not in FILTER_KEYS:
                raise ConfigError("filter", word, f"unknown filter key {key!r}", f"use one of: {', '.join(FILTER_KEYS)}")
            values = tuple(v for v in value.split(",") if v)
            for v in values:
                if key in ("tf", "python", "cuda"):
                    try:
                        Version(v)
                    except ValueError:
                        raise ConfigError("filter", word, f"{v!r} is a malformed version", f"write e.g. {key}=2.21") from None
            terms[key] = terms.get(key, ()) + values
        return cls(tuple(sorted(terms.items())))

    def __str__(self) -> str:
        return " ".join(f"{k}={','.join(v)}" for k, v in self.terms) or "(all cells)"

    def accepts(self, cell: Cell) -> bool:
        for key, values in self.terms:
            if key == "tf" and not any(cell.tensorflow.startswith(Version(v)) for v in values):
                return False
            if key == "python" and not any(cell.python.startswith(Version(v)) for v in values):
                return False
            if key == "cuda" and not (cell.cuda is not None and any(cell.cuda.startswith(Version(v)) for v in values)):
                return False
            if key == "variant" and cell.variant not in values:
                return False
            if key == "id" and cell.id not in values:
                return False
        return True

    def select(self, all_cells: Sequence[Cell], config_path: str = "versions.toml") -> list[Cell]:
        selected = [cell for cell in all_cells if self.accepts(cell)]
        if not selected:
            known = ", ".join(cell.id for cell in all_cells)
            raise ConfigError(config_path, f"filter {self}", "selects no cell of the matrix", f"loosen it; the cells are: {known}")
        return selected
