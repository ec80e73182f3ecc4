"""The build matrix: cells from versions.toml, their identifiers, and the filters every session shares."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import contract
from .config import Config, CudaVersion, PythonVersion, Rule, TensorFlowRelease, Variant, requirement_name
from .errors import ConfigError
from .versions import Version

FILTER_KEYS = ("tf", "python", "variant", "cuda", "platform", "id")


@dataclass(frozen=True, order=True)
class Cell:
    """One image to build: a TensorFlow release × Python × variant (× CUDA for GPU) × platform."""

    tensorflow: Version
    python: Version
    variant: str
    cuda: Version | None = None
    platform: str = contract.DEFAULT_PLATFORM

    @property
    def stem(self) -> str:
        """What is inside, e.g. 2.21.0-py3.11-gpu-cuda12.5: the cell tag, shared by every platform of the cell."""
        return f"{self.tensorflow}-py{self.python}-{self.variant}" + (f"-cuda{self.cuda}" if self.cuda else "")

    @property
    def id(self) -> str:
        """The one name logs, reports, lock folders and filters use, e.g. tf2.21.0-py3.11-gpu-cuda12.5; a platform
        other than the default is named at the end (tf2.21.0-py3.11-cpu-arm64), the default's ids stay as they were."""
        return contract.CELL_ID_PREFIX + self.stem + contract.platform_suffix(self.platform)

    @property
    def is_default_platform(self) -> bool:
        return self.platform == contract.DEFAULT_PLATFORM

    @property
    def is_gpu(self) -> bool:
        return self.cuda is not None

    def matches(self, rule: Rule) -> bool:
        return (
            (rule.tensorflow is None or self.tensorflow.startswith(rule.tensorflow))
            and (rule.python is None or self.python.startswith(rule.python))
            and (rule.variant is None or self.variant == rule.variant)
            and (rule.cuda is None or (self.cuda is not None and self.cuda.startswith(rule.cuda)))
            and (rule.platform is None or self.platform == rule.platform)
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
                    for i, platform in enumerate(config.variants[variant].platforms):
                        product.append((Cell(tf, py, variant, cuda, platform), f"variants.{variant}.platforms[{i}]"))

    for rule in config.excludes:
        if not any(cell.matches(rule) for cell, _ in product):
            raise ConfigError(config.path, rule.key_path, "this exclude matches no cell of the matrix", "correct its versions or remove it")
    kept = [(cell, origin) for cell, origin in product if not any(cell.matches(rule) for rule in config.excludes)]
    from_axes = len(kept)

    for rule in config.includes:
        assert rule.tensorflow and rule.python and rule.variant
        if config.variants[rule.variant].needs_cuda and rule.cuda is None:
            raise ConfigError(config.path, rule.key_path, "a GPU cell without a CUDA version", 'add cuda = "12.5" (a [cuda] entry)')
        if not config.variants[rule.variant].needs_cuda and rule.cuda is not None:
            raise ConfigError(config.path, f"{rule.key_path}.cuda", "a CPU cell has no CUDA version", "remove cuda from this include")
        platform = rule.platform or contract.DEFAULT_PLATFORM
        built_for = config.variants[rule.variant].platforms
        if platform not in built_for:
            raise ConfigError(
                config.path,
                f"{rule.key_path}.platform" if rule.platform else rule.key_path,
                f"a {rule.variant} cell on {platform}, which variants.{rule.variant}.platforms ({', '.join(built_for)}) does not list",
                f"add {platform} to variants.{rule.variant}.platforms, or name one of its platforms here",
            )
        kept.append((Cell(rule.tensorflow, rule.python, rule.variant, rule.cuda, platform), rule.key_path))

    seen: dict[str, str] = {}
    for position, (cell, origin) in enumerate(kept):
        if cell.id in seen:
            raise ConfigError(config.path, origin, f"duplicate cell {cell.id} (also from {seen[cell.id]})", "remove the include or add an exclude")
        seen[cell.id] = origin if position >= from_axes else "matrix"
        _check_supported(config, cell, origin)
    if not kept:
        raise ConfigError(config.path, "matrix", "the matrix has no cells", "loosen the excludes or add versions to the axes")
    result = sorted(cell for cell, _ in kept)
    for variant in config.axis_variant:
        default_cell(config, variant, result)  # `make run` and `latest` must find their cell
    return result


def _check_supported(config: Config, cell: Cell, origin: str) -> None:
    """`origin`: the include that named the cell, or for a cell of the axes its variant's platforms entry."""
    release = config.tensorflow[cell.tensorflow]
    from_axes = origin.startswith("variants.")
    where = origin if not from_axes else "matrix.python"
    if not release.python.contains(cell.python):
        raise ConfigError(
            config.path,
            where,
            f"TensorFlow {cell.tensorflow} supports Python {release.python}, not {cell.python} (cell {cell.id})",
            f'add [[matrix.exclude]] tensorflow = "{cell.tensorflow}", python = "{cell.python}", or drop the version from the axis',
        )
    _check_platform(config, cell, origin)
    if cell.cuda is not None:
        if cell.cuda not in config.cuda:
            raise ConfigError(
                config.path, origin, f'cell {cell.id} names CUDA {cell.cuda}, which has no [cuda."{cell.cuda}"] entry', "add its CUDA wheels to versions.toml"
            )
        if not release.cuda.contains(cell.cuda):
            raise ConfigError(
                config.path,
                origin if not from_axes else "matrix.cuda",
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


def _check_platform(config: Config, cell: Cell, origin: str) -> None:
    """The release must publish the variant's TensorFlow package for the cell's platform, and a GPU cell needs a
    CUDA build there with NVIDIA's wheels: a tag must never claim a platform it does not really have."""
    release, variant = config.tensorflow[cell.tensorflow], config.variants[cell.variant]
    facts = release.facts(cell.platform)
    exclude = f'[[matrix.exclude]] tensorflow = "{cell.tensorflow}", platform = "{cell.platform}"'
    if facts is None:
        recorded = ", ".join(f.platform for f in release.platforms)
        raise ConfigError(
            config.path,
            origin,
            f"TensorFlow {cell.tensorflow} records no facts for {cell.platform}, only for {recorded} (cell {cell.id})",
            f'add [tensorflow."{cell.tensorflow}".platforms."{cell.platform}"] (packages, cuda_build, cuda_wheels, found as the others were), or add {exclude}',
        )
    name = requirement_name(variant.tensorflow_package_for(cell.platform))
    listed = f"{facts.key_path(release.version)}.packages"
    if not facts.packages:
        raise ConfigError(
            config.path,
            origin,
            f"TensorFlow {cell.tensorflow} publishes no wheels for {cell.platform} ({listed} = []) (cell {cell.id})",
            f"remove {cell.platform} from variants.{cell.variant}.platforms, or add {exclude}",
        )
    if name not in facts.packages:
        key = variant.package_key(cell.platform)
        choose = f'set {key} = "NAME"' if key.endswith('"') else f'add tensorflow_package_on = {{ "{cell.platform}" = "NAME" }} to [variants.{cell.variant}]'
        raise ConfigError(
            config.path,
            key,
            f"TensorFlow {cell.tensorflow} has no {name} wheels for {cell.platform}, only {', '.join(facts.packages)} ({listed}) (cell {cell.id})",
            f"{choose}, NAME being one of those, or add {exclude}",
        )
    if not variant.needs_cuda:
        return
    for fact, meaning in (("cuda_build", "its tensorflow wheel is not built with CUDA"), ("cuda_wheels", "NVIDIA publishes no CUDA wheels for it")):
        if not getattr(facts, fact):
            raise ConfigError(
                config.path,
                origin,
                f"a GPU cell on {cell.platform}, but for TensorFlow {cell.tensorflow} {meaning} ({facts.key_path(release.version)}.{fact} = false), "
                f"so the image could not use a GPU (cell {cell.id})",
                f'remove {cell.platform} from variants.{cell.variant}.platforms, or add {exclude}, variant = "{cell.variant}"',
            )


def resolve(config: Config, cell: Cell) -> ResolvedCell:
    return ResolvedCell(
        cell=cell,
        release=config.tensorflow[cell.tensorflow],
        python=config.python[cell.python],
        variant=config.variants[cell.variant],
        cuda=config.cuda[cell.cuda] if cell.cuda is not None else None,
    )


def default_cell(config: Config, variant: str, all_cells: Iterable[Cell], platform: str = contract.DEFAULT_PLATFORM) -> Cell:
    """The cell `make run` (cpu) or `make run-gpu` (gpu) uses: [defaults] for that variant, on `platform`."""
    d = config.defaults
    needs_cuda = variant in config.variants and config.variants[variant].needs_cuda
    wanted = Cell(d.tensorflow, d.python, variant, d.cuda if needs_cuda else None, platform)
    if wanted not in set(all_cells):
        if platform != contract.DEFAULT_PLATFORM and variant in config.variants and platform not in config.variants[variant].platforms:
            raise ConfigError(
                config.path,
                f"variants.{variant}.platforms",
                f"the {variant} variant is not built for {platform} (only {', '.join(config.variants[variant].platforms)})",
                f"run it on one of those platforms (--platform / PLATFORM=), or add {platform} to variants.{variant}.platforms where its facts allow",
            )
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


def on_platform(cell: Cell, all_cells: Iterable[Cell], platform: str) -> Cell | None:
    """The cell of the same stem (same tag) built for `platform`, or None when the matrix has none."""
    return next((c for c in all_cells if c.stem == cell.stem and c.platform == platform), None)


def default_cpu_cells(config: Config, selected: Sequence[Cell], all_cells: Sequence[Cell]) -> list[Cell]:
    """The default CPU cell of each platform among `selected`: what `reproduce` builds when its filter names only
    platforms (`reproduce -- platform=linux/arm64`), since two clean builds of every cell take hours."""
    return [default_cell(config, "cpu", all_cells, platform) for platform in sorted({c.platform for c in selected})]


def previous_release(cell: Cell, all_cells: Sequence[Cell]) -> Cell | None:
    """The cell of the next lower TensorFlow release with the same Python, variant, CUDA and platform."""
    same = (cell.python, cell.variant, cell.cuda, cell.platform)
    older = [c for c in all_cells if (c.python, c.variant, c.cuda, c.platform) == same and c.tensorflow < cell.tensorflow]
    return max(older, default=None)


@dataclass(frozen=True)
class Filter:
    """`tf=2.21 variant=cpu python=3.11,3.13 cuda=12.5 platform=linux/arm64 id=...`: every key must match, any value of a key.
    A platform is written in full (`linux/arm64`, as Docker's --platform takes it); `arm64` alone is refused."""

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
                if key == "platform" and v not in contract.PLATFORMS:
                    full = [p for p in contract.PLATFORMS if p.split("/", 1)[1] == v]
                    problem = f"{v!r} is an architecture, not a platform" if full else f"unknown platform {v!r}"
                    fix = f"write the platform in full: platform={full[0]}" if full else f"use one of: {', '.join(contract.PLATFORMS)}"
                    raise ConfigError("filter", word, problem, fix)
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
            if key == "platform" and cell.platform not in values:
                return False
            if key == "id" and cell.id not in values:
                return False
        return True

    @property
    def names_only_platforms(self) -> bool:
        """Nothing but `platform=` terms (or none): what the filter asks for is a platform, not a cell."""
        return all(key == "platform" for key, _ in self.terms)

    def select(self, all_cells: Sequence[Cell], config_path: str = "versions.toml") -> list[Cell]:
        selected = [cell for cell in all_cells if self.accepts(cell)]
        if not selected:
            known = ", ".join(cell.id for cell in all_cells)
            raise ConfigError(config_path, f"filter {self}", "selects no cell of the matrix", f"loosen it; the cells are: {known}")
        return selected
