"""The pure core stays pure: its modules never run processes, talk to Docker or read the environment.

docs/architecture.md draws the rings: the pure core (data in, data out), the effects (each outside tool
behind one module) and the stages that orchestrate both. This test reads each core module's imports
with `ast`, follows them inside the package, and fails on the first forbidden one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "kerastack"
PURE = (
    "contract", "layout", "errors", "versions", "reference", "files", "config", "matrix", "tags", "plan", "lock_plan", "publish_plan",
    "changes", "manifest", "image_compare", "layers", "build_report", "smoke_report", "options", "ca",
    "oci_index",
)  # fmt: skip
FORBIDDEN_MODULES = {"subprocess", "python_on_whales", "socket", "urllib", "http", "docker"}
EFFECTS = {"docker_client", "engine", "base_images", "git", "lock", "publish", "build", "smoke", "reproduce", "bench", "hub", "cli", "emulation"}


def imports(module: str) -> set[str]:
    """Top-level names of what `module` imports: `subprocess`, or `kerastack.<name>` for the package's own."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(), filename=f"kerastack/{module}.py")
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from . import x / from .x import y
                found |= {f"kerastack.{node.module.split('.')[0]}"} if node.module else {f"kerastack.{a.name}" for a in node.names}
            elif node.module:
                found.add(node.module.split(".")[0] if not node.module.startswith("kerastack") else "kerastack." + node.module.split(".")[1])
    return found


def reads_the_environment(module: str) -> list[int]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os" and node.attr in ("environ", "getenv", "putenv")
    ]


def forbidden(module: str, seen: frozenset[str] = frozenset()) -> str | None:
    """The first forbidden import reachable from `module`, as a chain, or None."""
    for name in sorted(imports(module)):
        if name in FORBIDDEN_MODULES:
            return f"{module} imports {name}"
        if name.startswith("kerastack."):
            inner = name.split(".", 1)[1]
            if inner in EFFECTS:
                return f"{module} imports kerastack.{inner}, an effects module"
            if inner not in seen and (PACKAGE / f"{inner}.py").exists():
                chain = forbidden(inner, seen | {module})
                if chain:
                    return f"{module} -> {chain}"
    return None


@pytest.mark.parametrize("module", PURE)
def test_a_pure_module_imports_no_effect(module):
    assert forbidden(module) is None, f"kerastack/{module}.py is in the pure core (docs/architecture.md): {forbidden(module)}"


@pytest.mark.parametrize("module", PURE)
def test_a_pure_module_reads_no_environment(module):
    assert reads_the_environment(module) == [], f"kerastack/{module}.py reads os.environ (lines {reads_the_environment(module)}): the options resolve it once"


def test_below_the_cli_no_module_reads_the_environment():
    readers = {p.stem: reads_the_environment(p.stem) for p in PACKAGE.glob("*.py") if p.stem != "cli"}
    assert {m: lines for m, lines in readers.items() if lines} == {}


def test_only_the_adapter_imports_python_on_whales():
    users = sorted(p.stem for p in PACKAGE.glob("*.py") if "python_on_whales" in imports(p.stem))
    assert users == ["docker_client"]


def test_every_module_is_placed_in_a_ring():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert modules == set(PURE) | EFFECTS, "a new module must be named in tests/unit/test_purity.py and docs/architecture.md"


def test_the_check_sees_a_forbidden_import(tmp_path):
    """The test itself can fail: a core module that imports subprocess, or the adapter, is caught."""
    for name, source in (("fake_core", "import subprocess\n"), ("fake_core2", "from . import docker_client\n"), ("fake_core3", "from .fake_core import x\n")):
        (tmp_path / f"{name}.py").write_text(source)
    globals()["PACKAGE"], old = tmp_path, PACKAGE
    try:
        assert forbidden("fake_core") == "fake_core imports subprocess"
        assert forbidden("fake_core2") == "fake_core2 imports kerastack.docker_client, an effects module"
        assert forbidden("fake_core3") == "fake_core3 -> fake_core imports subprocess"
    finally:
        globals()["PACKAGE"] = old
