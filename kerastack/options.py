"""Options, resolved once: the command line plus the environment, into one typed, frozen object. Pure.

Precedence, for every setting: the command-line option, then its environment variable, then the
project's default. Only the CLI reads the process environment; it passes a copy here, and every command
takes the resulting `Options`. Checks that need no engine (a missing CA bundle, a report folder that is
a file, a bad run count) fail here, before Docker is asked anything.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from . import ca, contract, matrix
from . import config as config_module
from .errors import PipelineError
from .layout import Layout

REGISTRY_ENV = "KERASTACK_REGISTRY"  # overrides [registry].host, as --registry does
REPOSITORY_ENV = "KERASTACK_REPOSITORY"  # overrides [registry].repository, as --repository does
BUILDER_ENV = "BUILDX_BUILDER"
OFFLINE_BASE_ENV = "KERASTACK_OFFLINE_BASE"  # "1": bootstrap the offline base, do not pull the official one
MIRROR_ENV = "DEBIAN_MIRROR"
# YYYYMMDD: the day in the immutable tags, instead of today's (UTC). A release computes it once, so its
# platform jobs stamp one day even when they run on either side of midnight (the join refuses two days).
BUILD_DAY_ENV = "KERASTACK_BUILD_DAY"
PLATFORM_ENV = "KERASTACK_PLATFORM"  # the platform `image` serves (the Makefile's PLATFORM), as --platform does
NO_INSTALL_ENV = "KERASTACK_NO_INSTALL"  # set: never install or start the engine
REGISTRY_USER_ENV, REGISTRY_PASSWORD_ENV = "REGISTRY_USER", "REGISTRY_PASSWORD"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
MIN_BENCH_RUNS = 5


@dataclass(frozen=True)
class Options:
    """Everything a command needs to know about how it was asked to run."""

    command: str
    layout: Layout
    config_path: Path
    report_dir: Path  # --report-dir, relative to --project-dir
    filter: tuple[str, ...] = ()
    registry: str | None = None  # --registry, else KERASTACK_REGISTRY, else versions.toml
    repository: str | None = None
    # building
    ca_bundle: Path | None = None
    builder: str | None = None
    cache_from: str | None = None
    cache_to: str | None = None
    no_cache: bool = False
    naive: bool = False
    offline_base: bool = False
    debian_mirror: str = DEFAULT_MIRROR
    install_engine: bool = False  # may install and start a missing engine (root, and not KERASTACK_NO_INSTALL)
    work_dir: Path | None = None
    platform: str | None = None  # `image`: --platform, else KERASTACK_PLATFORM; None: the engine's own
    build_day: str | None = None  # KERASTACK_BUILD_DAY (YYYYMMDD); None: the day of the build (UTC)
    # publishing
    registry_credentials: tuple[str, str] | None = field(default=None, repr=False)
    # the rest of one command's own options (--json, --stage, --runs, ...), by name
    extra: Mapping[str, object] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.layout.root

    def get(self, name: str, default: object = None) -> object:
        return self.extra.get(name, default)


@dataclass(frozen=True)
class Selection:
    """The validated versions file, its whole matrix, and the cells the filter selects."""

    config: config_module.Config
    all_cells: tuple[matrix.Cell, ...]
    selected: tuple[matrix.Cell, ...]


_COMMON = {"command", "func", "project_dir", "config", "registry", "repository", "filter", "report_dir", "ca_bundle", "builder", "cache_from", "cache_to",
           "no_cache", "naive", "work_dir", "platform"}  # fmt: skip


def resolve(args: argparse.Namespace, environ: Mapping[str, str], *, is_root: bool) -> Options:
    """The one place where arguments and environment become options."""
    project = Path(args.project_dir).resolve()
    if not project.is_dir():
        what = "is not a folder" if project.exists() else "does not exist"
        raise PipelineError(f"--project-dir {project} {what}: give the project folder (the one with versions.toml, locks/ and images/)")
    layout = Layout(project)
    report_dir = _folder(project, getattr(args, "report_dir", None) or layout.default_reports, "--report-dir")
    work_dir = getattr(args, "work_dir", None)
    explicit_bundle = getattr(args, "ca_bundle", None)
    runs = getattr(args, "runs", None)
    if runs is not None and runs < MIN_BENCH_RUNS:
        raise PipelineError(f"--runs {runs}: medians need at least {MIN_BENCH_RUNS} runs of each side")
    image = getattr(args, "image", None)
    if getattr(args, "command", "") == "bench" and image is not None:
        from . import reference

        try:
            reference.parse_reference(image)
        except reference.BadReference as exc:
            raise PipelineError(f"--image: {exc}") from None
    platform = _platform(getattr(args, "platform", None), environ.get(PLATFORM_ENV)) if hasattr(args, "platform") else None
    return Options(
        command=args.command,
        layout=layout,
        config_path=Path(args.config) if args.config else layout.versions,
        report_dir=report_dir,
        filter=tuple(getattr(args, "filter", None) or ()),
        registry=args.registry or environ.get(REGISTRY_ENV) or None,
        repository=args.repository or environ.get(REPOSITORY_ENV) or None,
        ca_bundle=ca.find_bundle(explicit_bundle, environ) if hasattr(args, "ca_bundle") else None,  # the commands that build
        builder=getattr(args, "builder", None) or environ.get(BUILDER_ENV) or None,
        cache_from=getattr(args, "cache_from", None),
        cache_to=getattr(args, "cache_to", None),
        no_cache=bool(getattr(args, "no_cache", False)),
        naive=bool(getattr(args, "naive", False)),
        offline_base=environ.get(OFFLINE_BASE_ENV) == "1",
        debian_mirror=environ.get(MIRROR_ENV) or DEFAULT_MIRROR,
        install_engine=is_root and not environ.get(NO_INSTALL_ENV),
        work_dir=_folder(project, work_dir, "--work-dir") if work_dir else None,
        platform=platform,
        build_day=_build_day(environ.get(BUILD_DAY_ENV)),
        registry_credentials=_credentials(environ),
        extra={k: v for k, v in vars(args).items() if k not in _COMMON},
    )


def _platform(option: str | None, env: str | None) -> str | None:
    """--platform, else KERASTACK_PLATFORM (empty: unset, as the Makefile passes an unset PLATFORM); one of the
    platforms images are built for, written in full."""
    value, source = (option, "--platform") if option else (env, PLATFORM_ENV)
    if not value:
        return None
    if value not in contract.PLATFORMS:
        full = [p for p in contract.PLATFORMS if p.endswith("/" + value)]
        fix = f"write it in full: {full[0]}" if full else f"use one of: {', '.join(contract.PLATFORMS)}"
        raise PipelineError(f"{source} {value!r} is not a platform images are built for: {fix}")
    return value


def _build_day(value: str | None) -> str | None:
    """KERASTACK_BUILD_DAY as YYYYMMDD, a real calendar day (empty: unset)."""
    if not value:
        return None
    problem = f"{BUILD_DAY_ENV}={value!r} is not a day: write it as YYYYMMDD (UTC), e.g. $(date -u +%Y%m%d)"
    if not re.fullmatch(r"\d{8}", value):
        raise PipelineError(problem)
    try:
        date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        raise PipelineError(problem) from None
    return value


def _folder(project: Path, value: str | Path, option: str) -> Path:
    folder = Path(value)
    folder = folder if folder.is_absolute() else project / folder
    if folder.exists() and not folder.is_dir():
        raise PipelineError(f"{option} {folder} is a file, not a folder: give a folder (it is created when missing)")
    return folder


def _credentials(environ: Mapping[str, str]) -> tuple[str, str] | None:
    user, password = environ.get(REGISTRY_USER_ENV), environ.get(REGISTRY_PASSWORD_ENV)
    if bool(user) != bool(password):
        raise PipelineError(f"set both {REGISTRY_USER_ENV} and {REGISTRY_PASSWORD_ENV}, or neither (then `docker login` is used)")
    return (user, password) if user and password else None


def select(options: Options, filter_words: Sequence[str] | None = None) -> Selection:
    """Load and validate versions.toml (with the registry overrides), build the matrix, apply the filter."""
    config = config_module.load(options.config_path)
    if options.registry or options.repository:
        config = config_module.with_registry(config, options.registry, options.repository)
    all_cells = matrix.cells(config)
    words = options.filter if filter_words is None else filter_words
    selected = matrix.Filter.parse(words).select(all_cells, config.path)
    return Selection(config, tuple(all_cells), tuple(selected))
