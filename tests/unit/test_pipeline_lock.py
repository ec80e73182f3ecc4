"""requirements/pipeline.txt, the pipeline's own hash lock, is current with pyproject.toml (dependencies
and every extra) and requirements/pipeline.in (nox, uv, setuptools): every requirement is pinned there, at
a version its specifier allows, with hashes. Offline: it reads the files, it does not resolve."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "pipeline.txt"
TOOLS = ROOT / "requirements" / "pipeline.in"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


LAUNCHER_LOCK = ROOT / "requirements" / "launcher-tests.txt"  # pytest for ci.yml's launcher-hosts job


def pins(lock: Path = LOCK) -> dict[str, tuple[str, str]]:
    """name -> (version, the entry's text with its hashes)."""
    found: dict[str, tuple[str, str]] = {}
    name = ""
    for line in lock.read_text().splitlines():
        if match := PIN.match(line):
            name = canonicalize_name(match.group(1))
            found[name] = (match.group(2).rstrip(" \\"), line)
        elif name and "--hash=" in line:
            found[name] = (found[name][0], found[name][1] + line)
    return found


def wanted() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]
    lines += [x.split("#")[0].strip() for x in TOOLS.read_text().splitlines() if x.split("#")[0].strip()]
    return [Requirement(line) for line in lines]


def test_every_requirement_is_pinned_at_an_allowed_version_with_hashes():
    locked = pins()
    stale = []
    for requirement in wanted():
        name = canonicalize_name(requirement.name)
        if name not in locked:
            stale.append(f"{requirement}: not in the lock")
        elif not requirement.specifier.contains(locked[name][0], prereleases=True):
            stale.append(f"{requirement}: locked at {locked[name][0]}")
    assert not stale, f"requirements/pipeline.txt is stale, regenerate it with the command in its header: {stale}"
    assert all("--hash=sha256:" in text for _, text in locked.values()), "every pin carries its hashes"


def test_the_header_says_how_to_regenerate_it():
    header = LOCK.read_text().splitlines()[:3]
    assert any("uv pip compile pyproject.toml requirements/pipeline.in" in line and "--generate-hashes" in line for line in header)


def hashes(entry: str) -> set[str]:
    return set(re.findall(r"--hash=(sha256:[0-9a-f]{64})", entry))


def test_the_launcher_jobs_lock_is_pipeline_txt_at_the_same_pins_and_hashes():
    """requirements/launcher-tests.txt (pytest, for the macOS and Windows runners, where pipeline.txt does not
    install) holds nothing pipeline.txt does not: each entry at the same version with the same hashes."""
    launcher, pipeline = pins(LAUNCHER_LOCK), pins()
    assert "pytest" in launcher
    differ = [
        f"{name}=={version}"
        for name, (version, entry) in launcher.items()
        if name not in pipeline or (version, hashes(entry)) != (pipeline[name][0], hashes(pipeline[name][1]))
    ]
    assert not differ, f"requirements/launcher-tests.txt disagrees with pipeline.txt, regenerate it with the command in its header: {differ}"
    assert all(hashes(entry) for _, entry in launcher.values())
    header = LAUNCHER_LOCK.read_text().splitlines()[:3]
    assert any("uv pip compile requirements/launcher-tests.in -c requirements/pipeline.txt" in line and "--generate-hashes" in line for line in header)
