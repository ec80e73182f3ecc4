"""Load and validate versions.toml into typed, frozen objects. Pure: reads one file, runs nothing."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion
from packaging.version import Version as Pep440Version

from . import contract, reference
from .errors import ConfigError
from .versions import Version

SCHEMA_VERSION = 1
VARIANTS = contract.VARIANTS
MAX_FILE_BYTES = 1_000_000  # versions.toml is a few kB; anything this large is not one
MAX_REQUIREMENT_LENGTH = 200
_DEBIAN_SUITES = ("bookworm", "trixie", "forky", "sid")


@dataclass(frozen=True)
class VersionRange:
    """Inclusive `min`, and either inclusive `max` or exclusive `below`."""

    min: Version
    max: Version | None = None
    below: Version | None = None

    def contains(self, version: Version) -> bool:
        if version < self.min:
            return False
        if self.max is not None and not (version < self.max or version.startswith(self.max)):
            return False
        return self.below is None or version < self.below

    def __str__(self) -> str:
        upper = f", <= {self.max}" if self.max else f", < {self.below}" if self.below else ""
        return f">= {self.min}{upper}"


@dataclass(frozen=True)
class PlatformFacts:
    """What one TensorFlow release publishes for one platform (`[tensorflow."X.Y.Z".platforms."linux/arm64"]`),
    as found on PyPI; versions.toml says how each fact was found."""

    platform: str
    packages: tuple[str, ...]  # normalised names of the TensorFlow distributions with wheels for it; () for none
    cuda_build: bool  # its `tensorflow` wheel is built with CUDA (build_info's is_cuda_build)
    cuda_wheels: bool  # NVIDIA's CUDA wheels, which the [and-cuda] extra names, exist for it

    def key_path(self, release: Version) -> str:
        return f'tensorflow."{release}".platforms."{self.platform}"'


@dataclass(frozen=True)
class TensorFlowRelease:
    version: Version
    python: VersionRange
    built_with_cuda: Version
    built_with_cudnn: Version
    cuda: VersionRange
    keras: Version
    platforms: tuple[PlatformFacts, ...] = ()  # in versions.toml's order

    def facts(self, platform: str) -> PlatformFacts | None:
        """The release's facts for `platform`, or None when versions.toml records none."""
        return next((f for f in self.platforms if f.platform == platform), None)


@dataclass(frozen=True)
class PythonVersion:
    version: Version
    base_image: str
    debian_suite: str


@dataclass(frozen=True)
class CudaVersion:
    version: Version
    cudnn: Version
    min_driver: str
    wheels: tuple[tuple[str, str], ...]  # (distribution, exact version), sorted

    @property
    def runtime_version(self) -> str:
        return dict(self.wheels)["nvidia-cuda-runtime-cu12"]


@dataclass(frozen=True)
class Variant:
    name: str
    tensorflow_package: str  # on every platform, unless `package_on` names another for it
    platforms: tuple[str, ...] = (contract.DEFAULT_PLATFORM,)  # what the variant is built for, in versions.toml's order
    package_on: tuple[tuple[str, str], ...] = ()  # (platform, package): `tensorflow_package_on`, e.g. tensorflow on linux/arm64

    @property
    def needs_cuda(self) -> bool:
        """The one switch: the GPU variant, and only it, has CUDA (contract.needs_cuda)."""
        return contract.needs_cuda(self.name)

    def tensorflow_package_for(self, platform: str) -> str:
        """The TensorFlow requirement (name and extras) this variant installs on `platform`."""
        return dict(self.package_on).get(platform, self.tensorflow_package)

    def package_key(self, platform: str) -> str:
        """The versions.toml key that chooses that package: what to change when it has no wheels there."""
        on = dict(self.package_on)
        return f'variants.{self.name}.tensorflow_package_on."{platform}"' if platform in on else f"variants.{self.name}.tensorflow_package"


@dataclass(frozen=True)
class Rule:
    """An include or exclude entry of [matrix]: the keys it names must all match."""

    tensorflow: Version | None = None
    python: Version | None = None
    variant: str | None = None
    cuda: Version | None = None
    platform: str | None = None  # an include without one names a cell of contract.DEFAULT_PLATFORM
    key_path: str = ""


@dataclass(frozen=True)
class JupyterHub:
    """[jupyterhub]: the single-user server in the images. A hub spawns a singleuser server of its own
    major version only, so `hub_major` is the one hub series these images work with."""

    version: Version

    @property
    def hub_major(self) -> int:
        return self.version.parts[0]


@dataclass(frozen=True)
class Defaults:
    tensorflow: Version
    python: Version
    cuda: Version


@dataclass(frozen=True)
class Config:
    path: str
    registry: str
    repository: str
    defaults: Defaults
    group_packages: dict[str, tuple[str, ...]]  # contract.PACKAGE_GROUPS -> the table's requirements (() for an absent table)
    tensorflow: dict[Version, TensorFlowRelease]
    python: dict[Version, PythonVersion]
    cuda: dict[Version, CudaVersion]
    variants: dict[str, Variant]
    axis_tensorflow: tuple[Version, ...]
    axis_python: tuple[Version, ...]
    axis_variant: tuple[str, ...]
    axis_cuda: tuple[Version, ...]
    excludes: tuple[Rule, ...]
    includes: tuple[Rule, ...]
    jupyterhub: JupyterHub | None = None  # optional: without it the images are not hub-ready

    @property
    def jupyter_packages(self) -> tuple[str, ...]:
        return self.group_packages["jupyter"]

    @property
    def science_packages(self) -> tuple[str, ...]:
        return self.group_packages["science"]

    @property
    def image(self) -> str:
        """The image name without a tag, e.g. ghcr.io/kerastack/keras-jupyter."""
        return f"{self.registry}/{self.repository}"


class _Reader:
    """Walks the TOML tree, remembering key paths so every error can name where it is."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, key_path: str, problem: str, fix: str) -> ConfigError:
        return ConfigError(self.file, key_path, problem, fix)

    def table(self, data: Any, key_path: str, known: dict[str, str], required: tuple[str, ...] = ()) -> dict:
        if not isinstance(data, dict):
            raise self.fail(key_path, f"expected a table, got {type(data).__name__}", f"write [{key_path}] as a TOML table")
        for key in data:
            if key not in known:
                listed = ", ".join(sorted(known)) or "none"
                raise self.fail(_join(key_path, key), "unknown key", f"remove it or use one of: {listed}")
        for key in required:
            if key not in data:
                raise self.fail(_join(key_path, key), "missing", f"add `{key} = ...` ({known[key]})")
        return data

    def string(self, data: Any, key_path: str, what: str) -> str:
        if not isinstance(data, str) or not data.strip():
            raise self.fail(key_path, f"expected {what} as a non-empty string, got {_shown(data)}", f'write it as "{what}" in quotes')
        return data

    def version(self, data: Any, key_path: str, example: str) -> Version:
        if not isinstance(data, str):
            raise self.fail(key_path, f"expected a version string, got {_shown(data)}", f'quote it: "{example}"')
        try:
            return Version(data)
        except ValueError:
            raise self.fail(key_path, f"{_shown(data)} is a malformed version", f'write a dotted version such as "{example}" (ASCII digits)') from None

    def versions(self, data: Any, key_path: str, example: str) -> tuple[Version, ...]:
        if not isinstance(data, list) or not data:
            raise self.fail(key_path, "expected a non-empty list of versions", f'write e.g. ["{example}"]')
        parsed = tuple(self.version(item, f"{key_path}[{i}]", example) for i, item in enumerate(data))
        seen: set[Version] = set()
        for i, version in enumerate(parsed):
            if version in seen:
                raise self.fail(f"{key_path}[{i}]", f"{version} is listed twice", "remove the duplicate")
            seen.add(version)
        return parsed

    def range(self, data: Any, key_path: str, example_min: str, example_max: str) -> VersionRange:
        data = self.table(data, key_path, {"min": "lowest version", "max": "highest version", "below": "exclusive bound"}, ("min",))
        low = self.version(data["min"], _join(key_path, "min"), example_min)
        if ("max" in data) == ("below" in data):
            raise self.fail(
                key_path, "needs exactly one of `max` (inclusive) or `below` (exclusive)", f'write {{ min = "{example_min}", max = "{example_max}" }}'
            )
        high = self.version(data["max"], _join(key_path, "max"), example_max) if "max" in data else None
        below = self.version(data["below"], _join(key_path, "below"), example_max) if "below" in data else None
        bound = high or below
        assert bound is not None
        if bound < low:
            raise self.fail(key_path, f"upper bound {bound} is below min {low}", "swap or correct the bounds")
        return VersionRange(low, high, below)

    def requirement(self, data: Any, key_path: str, example: str) -> Requirement:
        """One PEP 508 requirement from an index: a name, extras, specifiers, markers; no URL, no pip option."""
        if not isinstance(data, str) or not data.strip():
            raise self.fail(key_path, f"expected a requirement string, got {_shown(data)}", f'write e.g. "{example}"')
        if len(data) > MAX_REQUIREMENT_LENGTH or not data.isascii():
            raise self.fail(
                key_path, f"{_shown(data)} is not a requirement (non-ASCII, or over {MAX_REQUIREMENT_LENGTH} characters)", f'write e.g. "{example}"'
            )
        try:
            requirement = Requirement(data)
        except InvalidRequirement as exc:
            problem = str(exc).splitlines()[0][:200]
            raise self.fail(
                key_path,
                f"{_shown(data)} is not a requirement (PEP 508: {problem})",
                f'write NAME[EXTRAS] SPECIFIERS, comma-separated, e.g. "{example}"; no pip options',
            ) from None
        if requirement.url:
            raise self.fail(key_path, f"{_shown(data)} installs from a URL, which no lock can pin by index", f'name a released package, e.g. "{example}"')
        return requirement

    def requirements(self, data: Any, key_path: str, example: str) -> tuple[str, ...]:
        """A non-empty list of PEP 508 requirements, each package once. Any requirements table ([jupyter], ...) uses it."""
        if not isinstance(data, list) or not data:
            raise self.fail(key_path, "expected a non-empty list of requirements", f'write e.g. ["{example}"]')
        seen: dict[str, int] = {}
        for i, item in enumerate(data):
            name = canonicalize_name(self.requirement(item, f"{key_path}[{i}]", example).name)
            if name in seen:
                raise self.fail(f"{key_path}[{i}]", f"{name} is already required by {key_path}[{seen[name]}]", "merge the two into one requirement")
            seen[name] = i
        return tuple(data)

    def pep440(self, data: Any, key_path: str, example: str) -> str:
        """An exact PEP 440 release of a wheel, written in its normal form."""
        if not isinstance(data, str) or not data.isascii() or len(data) > 40:
            raise self.fail(key_path, f"expected a version string, got {_shown(data)}", f'write e.g. "{example}"')
        try:
            version = Pep440Version(data)
        except InvalidVersion:
            raise self.fail(key_path, f"{_shown(data)} is not a PEP 440 version", f'write e.g. "{example}"') from None
        if str(version) != data or version.local:
            raise self.fail(key_path, f"{_shown(data)} is not written in normal form", f'write "{version.public}"')
        return data


def _shown(value: Any, limit: int = 60) -> str:
    """repr() of a value, cut short: an error message must stay one readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _join(key_path: str, key: str) -> str:
    key = key if len(key) <= 60 else key[:57] + "..."
    quoted = key if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", key) else f'"{key}"'
    return f"{key_path}.{quoted}" if key_path else quoted


def load(path: str | Path = "versions.toml") -> Config:
    """Read and validate a versions file; raise ConfigError naming the first problem."""
    path = Path(path)
    try:
        if path.is_dir():
            raise ConfigError(str(path), "", "is a directory, not a versions file", "pass the file itself, e.g. --config PATH/versions.toml")
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(str(path), "", "file not found", "run from the project root or pass --config PATH") from None
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot be read ({exc.strerror or exc})", "check the path and its permissions") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(str(path), "", f"is larger than {MAX_FILE_BYTES // 1000} kB, so not a versions file", "pass the project's versions.toml")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(str(path), "", f"is not UTF-8 text (byte {exc.start}, line {line})", "save the file as UTF-8") from None
    return parse(text, str(path))


def parse(text: str, file: str = "versions.toml") -> Config:
    """Validate the text of a versions file into a Config; ConfigError names the first problem."""
    r = _Reader(file)
    top = _top_level(r, _toml(text, file))
    host, repository = _registry(r, top["registry"])
    group_packages = _requirement_groups(r, top)
    jupyterhub = _jupyterhub(r, top["jupyterhub"], group_packages["jupyter"]) if "jupyterhub" in top else None
    releases = _tensorflow_releases(r, top["tensorflow"])
    pythons = _python_versions(r, top["python"])
    cudas = _cuda_versions(r, top["cuda"])
    variants = _variants(r, top["variants"])
    defaults = _defaults(r, top["defaults"], releases, pythons, cudas)
    axes = _axes(r, top["matrix"], variants, releases, pythons, cudas)
    _check_defaults_on_axes(r, defaults, axes, variants)
    excludes = _rules(r, axes.rules.get("exclude", []), "matrix.exclude", variants)
    includes = _rules(r, axes.rules.get("include", []), "matrix.include", variants)
    _check_includes(r, includes, releases, pythons, cudas)
    return Config(
        path=file,
        registry=host,
        repository=repository,
        defaults=defaults,
        group_packages=group_packages,
        tensorflow=releases,
        python=pythons,
        cuda=cudas,
        variants=variants,
        axis_tensorflow=axes.tensorflow,
        axis_python=axes.python,
        axis_variant=axes.variant,
        axis_cuda=axes.cuda,
        excludes=excludes,
        includes=includes,
        jupyterhub=jupyterhub,
    )


def _toml(text: str, file: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "", f"not valid TOML ({exc})", "fix the syntax at the position shown") from None
    except RecursionError:
        raise ConfigError(file, "", "nests tables or arrays too deeply for the TOML parser", "flatten the nesting; versions.toml needs three levels") from None
    except ValueError as exc:  # e.g. an integer of thousands of digits (int max_str_digits)
        raise ConfigError(file, "", f"has a value the TOML parser cannot hold ({str(exc)[:120]})", "shorten the value; no key takes a huge number") from None


_TOP_LEVEL = {
    "schema": "schema version, 1",
    "registry": "[registry] host and repository",
    "defaults": "[defaults] tensorflow, python, cuda",
    "jupyter": "[jupyter] packages",
    "science": "[science] packages",
    "data": "[data] packages",
    "visualisation": "[visualisation] packages",
    "jupyterhub": "[jupyterhub] version of the single-user server",
    "tensorflow": '[tensorflow."X.Y.Z"] releases',
    "python": '[python."X.Y"] versions',
    "cuda": '[cuda."X.Y"] versions',
    "variants": "[variants.cpu] and [variants.gpu]",
    "matrix": "[matrix] axes, include and exclude",
}


def _top_level(r: _Reader, data: Any) -> dict:
    top = r.table(data, "", _TOP_LEVEL, ("schema", "registry", "defaults", "jupyter", "tensorflow", "python", "cuda", "variants", "matrix"))
    if type(top["schema"]) is not int or top["schema"] != SCHEMA_VERSION:
        raise r.fail("schema", f"unsupported schema {top['schema']!r}", f"set schema = {SCHEMA_VERSION}")
    return top


def _registry(r: _Reader, data: Any) -> tuple[str, str]:
    registry = r.table(data, "registry", {"host": "e.g. ghcr.io", "repository": "e.g. org/name"}, ("host", "repository"))
    host = r.string(registry["host"], "registry.host", "ghcr.io")
    repository = r.string(registry["repository"], "registry.repository", "org/name")
    _check_registry(r, host, repository, "registry.host", "registry.repository")
    return host, repository


# Each package table of contract.PACKAGE_GROUPS: what its layer is, and an example requirement for its errors.
_PACKAGE_TABLES = {
    "science": ("the scientific Python layer", "pandas>=2.2,<4"),
    "data": ("the data access layer", "openpyxl>=3.1,<4"),
    "visualisation": ("the visualisation layer", "matplotlib>=3.9,<4"),
    "jupyter": ("the Jupyter layer", "jupyterlab>=4.4,<5"),
}


def _requirement_groups(r: _Reader, top: dict) -> dict[str, tuple[str, ...]]:
    """[jupyter] and the optional [science], [data] and [visualisation] (an absent table is an empty layer);
    each package in one table only, so that versions.toml says which layer asked for it."""
    groups: dict[str, tuple[str, ...]] = {}
    listed_at: dict[str, str] = {}  # package name -> the key that lists it
    # [jupyter] first (the required table), so a clash is reported at the optional table's entry.
    for group in sorted(contract.PACKAGE_GROUPS, key=lambda g: g != "jupyter"):
        if group not in top:  # only the optional ones: _top_level requires [jupyter]
            groups[group] = ()
            continue
        what, example = _PACKAGE_TABLES[group]
        groups[group] = _package_group(r, top[group], group, what, example)
        for i, requirement in enumerate(groups[group]):
            name, key = requirement_name(requirement), f"{group}.packages[{i}]"
            if name in listed_at:
                fix = f"list each package in one group only: remove it from {key} or from {listed_at[name]}"
                raise r.fail(key, f"{name} is also in {listed_at[name]}", fix)
            listed_at[name] = key
    return {group: groups[group] for group in contract.PACKAGE_GROUPS}  # in layer order


def _jupyterhub(r: _Reader, data: Any, jupyter_packages: tuple[str, ...]) -> JupyterHub:
    """[jupyterhub].version, which [jupyter].packages must pin exactly: the lock then holds that version."""
    table = r.table(data, "jupyterhub", {"version": "the jupyterhub release in the images"}, ("version",))
    version = r.version(table["version"], "jupyterhub.version", "6.1.1")
    if len(version.parts) != 3:
        raise r.fail("jupyterhub.version", f"{str(version)!r} is not a full release version", 'write MAJOR.MINOR.PATCH, e.g. "6.1.1"')
    wanted = f"jupyterhub=={version}"
    pins = [(i, p) for i, p in enumerate(jupyter_packages) if requirement_name(p) == "jupyterhub"]
    if not pins:
        raise r.fail("jupyter.packages", f"has no jupyterhub, which [jupyterhub] declares as {version}", f'add "{wanted}" to [jupyter].packages')
    i, pin = pins[0]
    requirement = Requirement(pin)
    if str(requirement.specifier) != f"=={version}" or requirement.extras or requirement.marker:
        raise r.fail(f"jupyter.packages[{i}]", f"{_shown(pin)} does not pin jupyterhub.version {version}", f'write "{wanted}"')
    return JupyterHub(version)


def _defaults(r: _Reader, data: Any, releases: dict, pythons: dict, cudas: dict) -> Defaults:
    table = r.table(
        data,
        "defaults",
        {"tensorflow": "default release", "python": "default Python", "cuda": "default CUDA for GPU"},
        ("tensorflow", "python", "cuda"),
    )
    defaults = Defaults(
        r.version(table["tensorflow"], "defaults.tensorflow", "2.21.0"),
        r.version(table["python"], "defaults.python", "3.11"),
        r.version(table["cuda"], "defaults.cuda", "12.5"),
    )
    for key, value, known in (("tensorflow", defaults.tensorflow, releases), ("python", defaults.python, pythons), ("cuda", defaults.cuda, cudas)):
        if value not in known:
            raise r.fail(f"defaults.{key}", f'{value} has no [{key}."{value}"] entry', f"add that entry or pick one of: {_listed(known)}")
    return defaults


@dataclass(frozen=True)
class _Axes:
    tensorflow: tuple[Version, ...]
    python: tuple[Version, ...]
    variant: tuple[str, ...]
    cuda: tuple[Version, ...]
    rules: dict  # the raw include/exclude lists


def _axes(r: _Reader, data: Any, variants: dict[str, Variant], releases: dict, pythons: dict, cudas: dict) -> _Axes:
    matrix = r.table(
        data,
        "matrix",
        {"tensorflow": "releases", "python": "Python versions", "variant": "cpu/gpu", "cuda": "CUDA versions", "exclude": "rules", "include": "rules"},
        ("tensorflow", "python", "variant"),
    )
    axes = _Axes(
        tensorflow=r.versions(matrix["tensorflow"], "matrix.tensorflow", "2.21.0"),
        python=r.versions(matrix["python"], "matrix.python", "3.11"),
        variant=_variant_axis(r, matrix["variant"], variants),
        cuda=r.versions(matrix["cuda"], "matrix.cuda", "12.5") if "cuda" in matrix else (),
        rules={k: matrix[k] for k in ("include", "exclude") if k in matrix},
    )
    known_entries = (
        ("tensorflow", axes.tensorflow, releases, "TensorFlow", "add its release facts"),
        ("python", axes.python, pythons, "Python", "add its base image and offline recipe"),
        ("cuda", axes.cuda, cudas, "CUDA", "add the CUDA wheels it pins"),
    )
    for key, axis, known, what, fix in known_entries:
        for i, version in enumerate(axis):
            if version not in known:
                raise r.fail(f"matrix.{key}[{i}]", f'{what} {version} has no [{key}."{version}"] entry', f"{fix} or use one of: {_listed(known)}")
    if any(variants[v].needs_cuda for v in axes.variant) and not axes.cuda:
        raise r.fail("matrix.cuda", "GPU cells need CUDA versions but the axis is empty", 'add cuda = ["12.5"] to [matrix]')
    return axes


def _check_defaults_on_axes(r: _Reader, defaults: Defaults, axes: _Axes, variants: dict[str, Variant]) -> None:
    """The default cell is what `make run` and the `latest` tags serve: it must come from the axes
    themselves, or `latest` would silently follow whatever release the axes hold."""
    default_axes = [("tensorflow", defaults.tensorflow, axes.tensorflow), ("python", defaults.python, axes.python)]
    if any(variants[v].needs_cuda for v in axes.variant):
        default_axes.append(("cuda", defaults.cuda, axes.cuda))
    for key, value, axis in default_axes:
        if value not in axis:
            raise r.fail(
                f"defaults.{key}",
                f"{value} is not on the matrix axis matrix.{key} ({', '.join(map(str, axis))})",
                f"add it to matrix.{key} or pick one of its versions",
            )


def _check_includes(r: _Reader, includes: tuple[Rule, ...], releases: dict, pythons: dict, cudas: dict) -> None:
    for rule in includes:
        for key, known in (("tensorflow", releases), ("python", pythons), ("cuda", cudas)):
            value = getattr(rule, key)
            if value is not None and value not in known:
                raise r.fail(f"{rule.key_path}.{key}", f'{value} has no [{key}."{value}"] entry', f"add that entry or use one of: {_listed(known)}")
        if rule.tensorflow is None or rule.python is None or rule.variant is None:
            raise r.fail(rule.key_path, "an include names one whole cell", "give tensorflow, python and variant (and cuda for gpu)")


def _package_group(r: _Reader, data: Any, key: str, what: str, example: str) -> tuple[str, ...]:
    """A [jupyter]-like table: `packages`, a non-empty list of PEP 508 requirements resolved into one lock group."""
    table = r.table(data, key, {"packages": f"requirements for {what}"}, ("packages",))
    return r.requirements(table["packages"], f"{key}.packages", example)


def requirement_name(requirement: str) -> str:
    """The normalised (PEP 503) distribution name of a requirement that `_Reader.requirements` accepted."""
    return canonicalize_name(Requirement(requirement).name)


def _listed(known: dict) -> str:
    return ", ".join(str(k) for k in sorted(known))


def _versioned_entries(r: _Reader, data: Any, key_path: str, what: str, example: str, parts: int | None = None):
    """(key path, version, entry) of each `[key_path."X.Y"]` table; with `parts`, the version must have that many components."""
    data = r.table(data, key_path, {k: what for k in (data if isinstance(data, dict) else {})})
    for key, entry in data.items():
        path = _join(key_path, key)
        version = r.version(key, path, example)
        if parts is not None and len(version.parts) != parts:
            form = "MAJOR.MINOR.PATCH" if parts == 3 else "MAJOR.MINOR"
            kind = "a full release version" if parts == 3 else "a Python minor version"
            raise r.fail(path, f"{key!r} is not {kind}", f'write {form}, e.g. "{example}"')
        yield path, version, entry


def _tensorflow_releases(r: _Reader, data: Any) -> dict[Version, TensorFlowRelease]:
    releases = {}
    for path, version, entry in _versioned_entries(r, data, "tensorflow", "a release", "2.21.0", parts=3):
        entry = r.table(
            entry,
            path,
            {"python": "{ min, max }", "built_with": "{ cuda, cudnn }", "cuda": "{ min, below } of CUDA its wheels accept", "keras": "pinned Keras version",
             "platforms": '[tensorflow."X.Y.Z".platforms."linux/amd64"] facts per platform'},
            ("python", "built_with", "cuda", "keras", "platforms"),
        )  # fmt: skip
        built = r.table(entry["built_with"], f"{path}.built_with", {"cuda": "CUDA version", "cudnn": "cuDNN version"}, ("cuda", "cudnn"))
        releases[version] = TensorFlowRelease(
            version=version,
            python=r.range(entry["python"], f"{path}.python", "3.10", "3.13"),
            built_with_cuda=r.version(built["cuda"], f"{path}.built_with.cuda", "12.5"),
            built_with_cudnn=r.version(built["cudnn"], f"{path}.built_with.cudnn", "9.3"),
            cuda=r.range(entry["cuda"], f"{path}.cuda", "12.5", "13"),
            keras=r.version(entry["keras"], f"{path}.keras", "3.12.4"),
            platforms=_platform_facts(r, entry["platforms"], f"{path}.platforms"),
        )
    if not releases:
        raise r.fail("tensorflow", "no releases", 'add a [tensorflow."2.21.0"] table')
    return releases


def platform_name(r: _Reader, data: Any, key_path: str) -> str:
    """One of contract.PLATFORMS, written in full (os/architecture), as Docker and OCI indexes name it."""
    known = ", ".join(contract.PLATFORMS)
    if not isinstance(data, str):
        raise r.fail(key_path, f"expected a platform string, got {_shown(data)}", f'quote it: "{contract.DEFAULT_PLATFORM}"')
    if data in contract.PLATFORMS:
        return data
    full = [p for p in contract.PLATFORMS if p.split("/", 1)[1] == data]
    if full:
        raise r.fail(key_path, f"{_shown(data)} is an architecture, not a platform", f'write the platform in full: "{full[0]}"')
    raise r.fail(key_path, f"unknown platform {_shown(data)}", f"use one of: {known}")


def _platform_facts(r: _Reader, data: Any, key_path: str) -> tuple[PlatformFacts, ...]:
    """[tensorflow."X.Y.Z".platforms."PLATFORM"]: which TensorFlow packages have wheels there, and whether CUDA is in them."""
    data = r.table(data, key_path, {k: "a platform's facts" for k in (data if isinstance(data, dict) else {})})
    if not data:
        raise r.fail(key_path, "records no platform", f'add [{key_path}."{contract.DEFAULT_PLATFORM}"] with packages, cuda_build and cuda_wheels')
    facts = []
    for key, entry in data.items():
        path = _join(key_path, key)
        platform = platform_name(r, key, path)
        entry = r.table(
            entry,
            path,
            {"packages": "TensorFlow distributions with wheels for this platform", "cuda_build": "true if its tensorflow wheel is built with CUDA",
             "cuda_wheels": "true if NVIDIA's CUDA wheels exist for this platform"},
            ("packages", "cuda_build", "cuda_wheels"),
        )  # fmt: skip
        packages = entry["packages"]
        if not isinstance(packages, list):
            raise r.fail(f"{path}.packages", f"expected a list of distribution names, got {_shown(packages)}", 'write e.g. ["tensorflow", "tensorflow-cpu"]')
        names = []
        for i, name in enumerate(packages):
            if not isinstance(name, str) or not _DISTRIBUTION_NAME.fullmatch(name):
                raise r.fail(f"{path}.packages[{i}]", f"{_shown(name)} is not a distribution name", 'write the name as on PyPI, e.g. "tensorflow-cpu"')
            if canonicalize_name(name) in names:
                raise r.fail(f"{path}.packages[{i}]", f"{name} is listed twice", "remove the duplicate")
            names.append(canonicalize_name(name))
        flags = {}
        for flag in ("cuda_build", "cuda_wheels"):
            if not isinstance(entry[flag], bool):
                raise r.fail(f"{path}.{flag}", f"expected true or false, got {_shown(entry[flag])}", f"write {flag} = false")
            flags[flag] = entry[flag]
        facts.append(PlatformFacts(platform, tuple(names), **flags))
    return tuple(facts)


def _python_versions(r: _Reader, data: Any) -> dict[Version, PythonVersion]:
    pythons = {}
    for path, version, entry in _versioned_entries(r, data, "python", "a Python version", "3.11", parts=2):
        entry = r.table(entry, path, {"base_image": "image pinned by digest", "offline": "{ debian = SUITE }"}, ("base_image", "offline"))
        base = r.string(entry["base_image"], f"{path}.base_image", "python:3.11-slim-bookworm@sha256:...")
        try:
            _, _, digest = reference.parse_reference(base)
        except reference.BadReference as exc:
            raise r.fail(f"{path}.base_image", f"not an image reference: {exc}", "write HOST/NAME[:TAG]@sha256:DIGEST") from None
        if digest is None:
            raise r.fail(
                f"{path}.base_image",
                f"{_shown(base)} is not pinned by digest, so a rebuild may get another image",
                "append @sha256:... (docker buildx imagetools inspect IMAGE shows it)",
            )
        offline = r.table(entry["offline"], f"{path}.offline", {"debian": "Debian suite that ships this Python"}, ("debian",))
        suite = r.string(offline["debian"], f"{path}.offline.debian", "bookworm")
        if suite not in _DEBIAN_SUITES:
            raise r.fail(f"{path}.offline.debian", f"unknown Debian suite {suite!r}", f"use one of: {', '.join(_DEBIAN_SUITES)}")
        pythons[version] = PythonVersion(version, base, suite)
    return pythons


# A valid distribution name (the PEP 508 / core metadata grammar), ASCII only.
_DISTRIBUTION_NAME = re.compile(r"[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9]", re.ASCII)
# NVIDIA's driver versions: MAJOR.MINOR or MAJOR.MINOR.PATCH, the patch often zero-padded (555.42.06).
_DRIVER_VERSION = re.compile(r"[1-9][0-9]{2,3}\.[0-9]{1,3}(\.[0-9]{1,3})?", re.ASCII)


def _driver_version(r: _Reader, data: Any, key_path: str) -> str:
    if not isinstance(data, str):
        raise r.fail(key_path, f"expected a driver version string, got {_shown(data)}", 'quote it: "555.42.06"')
    if not _DRIVER_VERSION.fullmatch(data):
        raise r.fail(key_path, f"{_shown(data)} is not an NVIDIA driver version", 'write it as nvidia-smi shows it, e.g. "555.42" or "555.42.06"')
    return data


def _cuda_versions(r: _Reader, data: Any) -> dict[Version, CudaVersion]:
    cudas = {}
    for path, version, entry in _versioned_entries(r, data, "cuda", "a CUDA version", "12.5"):
        entry = r.table(
            entry,
            path,
            {"cudnn": "cuDNN version", "min_driver": "minimum NVIDIA driver", "wheels": "{ wheel = exact version }"},
            ("cudnn", "min_driver", "wheels"),
        )
        wheels = r.table(entry["wheels"], f"{path}.wheels", {k: "" for k in (entry["wheels"] if isinstance(entry["wheels"], dict) else {})})
        if "nvidia-cuda-runtime-cu12" not in wheels:
            raise r.fail(f"{path}.wheels", "the CUDA runtime wheel is not pinned", 'add "nvidia-cuda-runtime-cu12" = "X.Y.Z"')
        pinned = []
        for name, pin in wheels.items():
            wheel_path = _join(f"{path}.wheels", name)
            if not name.startswith("nvidia-"):
                raise r.fail(wheel_path, "only NVIDIA CUDA wheels belong here", "move other packages to [jupyter] or the release")
            if not _DISTRIBUTION_NAME.fullmatch(name):
                raise r.fail(wheel_path, f"{_shown(name)} is not a valid distribution name", "use the wheel's name on PyPI, e.g. nvidia-cudnn-cu12")
            if canonicalize_name(name) != name:
                raise r.fail(wheel_path, f"{_shown(name)} is not a normalised distribution name", f'write "{canonicalize_name(name)}"')
            pinned.append((name, r.pep440(pin, wheel_path, "12.5.82")))
        runtime = Pep440Version(dict(pinned)["nvidia-cuda-runtime-cu12"])
        if runtime.release[: len(version.parts)] != version.parts:
            raise r.fail(_join(f"{path}.wheels", "nvidia-cuda-runtime-cu12"), f"runtime {runtime} is not CUDA {version}", f"pin a {version}.x runtime wheel")
        cudnn = r.version(entry["cudnn"], f"{path}.cudnn", "9.3")
        cudnn_wheel = dict(pinned).get("nvidia-cudnn-cu12")
        if cudnn_wheel is not None and Pep440Version(cudnn_wheel).release[: len(cudnn.parts)] != cudnn.parts:
            raise r.fail(
                f"{path}.cudnn",
                f"says cuDNN {cudnn}, but the pinned nvidia-cudnn-cu12 wheel is {cudnn_wheel}",
                "make cudnn the wheel's MAJOR.MINOR, or pin the matching wheel",
            )
        cudas[version] = CudaVersion(
            version=version,
            cudnn=cudnn,
            min_driver=_driver_version(r, entry["min_driver"], f"{path}.min_driver"),
            wheels=tuple(sorted(pinned)),
        )
    return cudas


def _variants(r: _Reader, data: Any) -> dict[str, Variant]:
    data = r.table(data, "variants", {v: f"the {v} variant" for v in VARIANTS})
    variants = {}
    for name, entry in data.items():
        path = f"variants.{name}"
        entry = r.table(
            entry,
            path,
            {"tensorflow_package": "pip name of TF", "platforms": 'platforms it is built for, e.g. ["linux/amd64"]',
             "tensorflow_package_on": '{ "PLATFORM" = package } where another package has the wheels', "needs_cuda": "true for GPU"},
            ("tensorflow_package", "platforms"),
        )  # fmt: skip
        package = _tensorflow_package(r, entry["tensorflow_package"], f"{path}.tensorflow_package")
        platforms = _variant_platforms(r, entry["platforms"], f"{path}.platforms")
        on = entry.get("tensorflow_package_on", {})
        on = r.table(on, f"{path}.tensorflow_package_on", {k: "a platform" for k in (on if isinstance(on, dict) else {})})
        package_on = []
        for key, value in on.items():
            key_path = _join(f"{path}.tensorflow_package_on", key)
            platform = platform_name(r, key, key_path)
            if platform not in platforms:
                raise r.fail(
                    key_path, f"{platform} is not one of {path}.platforms ({', '.join(platforms)})", f"add it to {path}.platforms, or remove this entry"
                )
            package_on.append((platform, _tensorflow_package(r, value, key_path)))
        # Optional and redundant (the variant's name decides), but a value that contradicts it is a mistake.
        needs_cuda = entry.get("needs_cuda", contract.needs_cuda(name))
        if not isinstance(needs_cuda, bool):
            raise r.fail(f"{path}.needs_cuda", f"expected true or false, got {needs_cuda!r}", "write needs_cuda = true")
        if needs_cuda != contract.needs_cuda(name):
            raise r.fail(
                f"{path}.needs_cuda",
                f"the {name} variant {'must' if contract.needs_cuda(name) else 'cannot'} need CUDA",
                f"set needs_cuda = {str(contract.needs_cuda(name)).lower()}, or leave it out",
            )
        variants[name] = Variant(name, package, platforms, tuple(package_on))
    return variants


def _tensorflow_package(r: _Reader, data: Any, key_path: str) -> str:
    package = r.string(data, key_path, "tensorflow-cpu")
    requirement = r.requirement(package, key_path, "tensorflow[and-cuda]")
    if requirement.specifier or requirement.marker:
        raise r.fail(key_path, f"{_shown(package)} carries a version or marker", "name only the package (and extras); the release pins the version")
    return package


def _variant_platforms(r: _Reader, data: Any, key_path: str) -> tuple[str, ...]:
    if not isinstance(data, list) or not data:
        raise r.fail(key_path, "expected a non-empty list of platforms", f'write platforms = ["{contract.DEFAULT_PLATFORM}"]')
    platforms = tuple(platform_name(r, item, f"{key_path}[{i}]") for i, item in enumerate(data))
    for i, platform in enumerate(platforms):
        if platform in platforms[:i]:
            raise r.fail(f"{key_path}[{i}]", f"{platform} is listed twice", "remove the duplicate")
    return platforms


def _variant_axis(r: _Reader, data: Any, variants: dict[str, Variant]) -> tuple[str, ...]:
    if not isinstance(data, list) or not data:
        raise r.fail("matrix.variant", "expected a non-empty list", 'write variant = ["cpu", "gpu"]')
    for i, name in enumerate(data):
        if name not in variants:
            raise r.fail(f"matrix.variant[{i}]", f"unknown variant {name!r}", f"use one of: {', '.join(variants) or 'none defined in [variants]'}")
    if len(set(data)) != len(data):
        raise r.fail("matrix.variant", "a variant is listed twice", "remove the duplicate")
    return tuple(data)


def _rules(r: _Reader, data: Any, key_path: str, variants: dict[str, Variant]) -> tuple[Rule, ...]:
    if not isinstance(data, list):
        raise r.fail(key_path, "expected an array of tables", f"write [[{key_path}]] sections")
    rules = []
    for i, entry in enumerate(data):
        path = f"{key_path}[{i}]"
        entry = r.table(
            entry, path, {"tensorflow": "release", "python": "Python version", "variant": "cpu/gpu", "cuda": "CUDA version", "platform": "e.g. linux/arm64"}
        )
        if not entry:
            raise r.fail(path, "an empty rule matches everything", "name at least one of tensorflow, python, variant, cuda, platform")
        variant = entry.get("variant")
        if variant is not None and variant not in variants:
            raise r.fail(f"{path}.variant", f"unknown variant {variant!r}", f"use one of: {', '.join(variants)}")
        rules.append(
            Rule(
                tensorflow=r.version(entry["tensorflow"], f"{path}.tensorflow", "2.21.0") if "tensorflow" in entry else None,
                python=r.version(entry["python"], f"{path}.python", "3.11") if "python" in entry else None,
                variant=variant,
                cuda=r.version(entry["cuda"], f"{path}.cuda", "12.5") if "cuda" in entry else None,
                platform=platform_name(r, entry["platform"], f"{path}.platform") if "platform" in entry else None,
                key_path=path,
            )
        )
    return tuple(rules)


def with_registry(config: Config, host: str | None = None, repository: str | None = None) -> Config:
    """The config with [registry] overridden (--registry, KERASTACK_REGISTRY, ...), validated the same way."""
    r = _Reader("--registry/--repository")
    host = host or config.registry
    repository = repository or config.repository
    _check_registry(r, host, repository, "registry", "repository")
    return dataclasses.replace(config, registry=host, repository=repository)


def _check_registry(r: _Reader, host: str, repository: str, host_key: str, repository_key: str) -> None:
    try:
        reference.check_registry_host(host)
    except reference.BadReference as exc:
        raise r.fail(
            host_key, f"{_shown(host)} is not a registry host: {exc}", 'write a host such as "ghcr.io" or "127.0.0.1:5000" (no scheme, port 1-65535)'
        ) from None
    try:
        reference.check_repository(host, repository)
    except reference.BadReference as exc:
        raise r.fail(
            repository_key, f"{_shown(repository)} is not a valid repository: {exc}", 'use lowercase path components, e.g. "kerastack/keras-jupyter"'
        ) from None
