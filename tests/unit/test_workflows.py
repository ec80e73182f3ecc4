"""Offline checks of the GitHub Actions workflows in .github/workflows/.

The workflows cannot run outside GitHub, so they are held to what can be checked here: the official
workflow schema, zizmor's security audits, shellcheck on every `run:` script, pinned actions, and
consistency with the repository (nox sessions, make targets, matrix fields, permissions).
Tests that need a tool skip, with the reason, when it is not installed; `nox -s lint` installs them.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.unit.conftest import SAMPLE

pytestmark = pytest.mark.lint

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW_DIR = ROOT / ".github" / "workflows"
WORKFLOWS = sorted(p for p in WORKFLOW_DIR.glob("*.y*ml"))
EXPECTED = {"ci.yml", "release.yml"}

SHA_PIN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(?:/[^@\s]+)?@[0-9a-f]{40}$")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>[^\s#]+)\s*(?:#\s*(?P<comment>.*))?$")
EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
MATRIX_KEY = re.compile(r"(?<![\w.])matrix\.([A-Za-z_][A-Za-z0-9_-]*)")
NOX_SESSION = re.compile(r"(?:^|[\s;&|(])nox\s+(?:[^\n;&|]*?\s)?(?:-s|--sessions?)[\s=]+([A-Za-z0-9_.:-]+)", re.MULTILINE)
MAKE_TARGET = re.compile(r"(?:^|[\s;&|(])make\s+([^\n;&|]*)", re.MULTILINE)
CELL_ID_FILTER = re.compile(r"\bid=([A-Za-z0-9_.+-]+)")
READ_ONLY = {"read", "none"}


def tool(name: str) -> str | None:
    """A console script on PATH, or next to this interpreter (a venv that is not activated)."""
    return shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


def require_tool(name: str) -> str:
    found = tool(name)
    if not found:
        pytest.skip(f"{name} is not installed (it comes with the project's `lint` extra: pip install -e '.[lint]')")
    return found


@cache
def load(path: Path) -> dict[str, Any]:
    yaml = pytest.importorskip("ruamel.yaml", reason="ruamel.yaml is not installed (a dependency of check-jsonschema, in the `lint` extra)")
    # YAML 1.2 (ruamel's default) keeps the `on:` key a string; PyYAML would turn it into True.
    data = yaml.YAML(typ="safe", pure=True).load(path.read_text())
    assert isinstance(data, dict), f"{path.name}: not a mapping"
    return data


def jobs(path: Path) -> dict[str, dict[str, Any]]:
    return load(path).get("jobs") or {}


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return job.get("steps") or []


def run_scripts(path: Path) -> Iterator[tuple[str, str, str]]:
    """(job, step name, script) for every `run:` step."""
    for job_id, job in jobs(path).items():
        for index, step in enumerate(steps(job)):
            if "run" in step:
                yield job_id, str(step.get("name") or f"step {index + 1}"), str(step["run"])


def walk(node: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """(key, string) for every string in a YAML tree; the key is the mapping key it sits under."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, str(k))
    elif isinstance(node, list):
        for item in node:
            yield from walk(item, key)
    elif isinstance(node, str):
        yield key, node


def expressions(node: Any) -> Iterator[str]:
    """The bodies of every `${{ ... }}`, plus every `if:`, which is an expression even without them."""
    for key, text in walk(node):
        found = EXPRESSION.findall(text)
        yield from found
        if key == "if" and not found:
            yield text


def test_the_workflows_exist() -> None:
    assert {p.name for p in WORKFLOWS} >= EXPECTED, f"missing workflows in {WORKFLOW_DIR}"


# ------------------------------------------------------------------ (a) the official schema


def test_workflows_match_the_github_workflow_schema() -> None:
    exe = require_tool("check-jsonschema")
    # The schema ships inside check-jsonschema (vendored from SchemaStore): no network needed.
    result = subprocess.run([exe, "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------ (b) zizmor


def _where(location: dict[str, Any]) -> str:
    """file:line of a zizmor JSON location (the path's key name varies between zizmor versions)."""
    local = location.get("symbolic", {}).get("key", {}).get("Local", {})
    path = next(iter(local.values()), "?") if isinstance(local, dict) else "?"
    row = location.get("concrete", {}).get("location", {}).get("start_point", {}).get("row", -1)
    return f"{path}:{row + 1}"


def test_zizmor_reports_no_findings() -> None:
    exe = require_tool("zizmor")
    # --offline: no GitHub API (and no token); the online audits are skipped, all others run at the
    # default ("regular") persona. A zizmor.yml in the repository, if ever added, is honoured.
    env = {k: v for k, v in os.environ.items() if k not in ("GH_TOKEN", "GITHUB_TOKEN", "ZIZMOR_GITHUB_TOKEN")}
    result = subprocess.run([exe, "--offline", "--format", "json", str(WORKFLOW_DIR)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    try:
        findings = json.loads(result.stdout or "[]")
    except json.JSONDecodeError:
        pytest.fail(f"zizmor failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
    findings = [f for f in findings if not f.get("ignored")]
    summary = [
        f"{f.get('ident')} ({f.get('determinations', {}).get('severity')}): {f.get('desc')} at {', '.join(map(_where, f.get('locations', [])))}"
        for f in findings
    ]
    assert not findings, "zizmor findings:\n" + "\n".join(summary)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------ shellcheck on run: scripts


def test_run_scripts_pass_shellcheck() -> None:
    exe = require_tool("shellcheck")
    problems = []
    for path in WORKFLOWS:
        shell = ((load(path).get("defaults") or {}).get("run") or {}).get("shell", "bash")
        assert shell == "bash", f"{path.name}: the checks below assume `defaults.run.shell: bash`"
        for job_id, name, script in run_scripts(path):
            # GitHub runs `bash --noprofile --norc -eo pipefail {0}`; expressions are kept out of
            # scripts (see below), so the text is exactly what bash gets.
            result = subprocess.run([exe, "--shell=bash", "--severity=style", "-"], input=script, capture_output=True, text=True, timeout=60)
            if result.returncode:
                problems.append(f"{path.name} {job_id} / {name}:\n{result.stdout}")
    assert not problems, "\n".join(problems)


def test_run_scripts_contain_no_expressions() -> None:
    """Inputs, matrix values and outputs reach scripts through `env:` only, never `${{ }}` in `run:`."""
    offenders = [f"{p.name} {job} / {name}" for p in WORKFLOWS for job, name, script in run_scripts(p) if "${{" in script]
    assert not offenders, "move these expressions into the step's env: " + ", ".join(offenders)


# ------------------------------------------------------------------ (c) pinned actions


def test_every_action_is_pinned_to_a_full_commit_sha() -> None:
    unpinned = []
    for path in WORKFLOWS:
        for job_id, job in jobs(path).items():
            refs = [job["uses"]] if "uses" in job else []  # a reusable workflow
            refs += [step["uses"] for step in steps(job) if "uses" in step]
            for ref in refs:
                if ref.startswith("./"):
                    continue  # a local action: versioned with this repository
                if ref.startswith("docker://"):
                    if not re.search(r"@sha256:[0-9a-f]{64}$", ref):
                        unpinned.append(f"{path.name} {job_id}: {ref} (pin the image by digest)")
                elif not SHA_PIN.match(ref):
                    unpinned.append(f"{path.name} {job_id}: {ref}")
    assert not unpinned, "pin these by a full 40-hex commit SHA:\n" + "\n".join(unpinned)


def test_pins_carry_a_version_comment_and_agree_across_workflows() -> None:
    """`uses: owner/repo@<sha> # vX.Y.Z`, and one action at one version has one SHA everywhere."""
    seen: dict[str, tuple[str, str]] = {}
    problems = []
    for path in WORKFLOWS:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = USES_LINE.match(line)
            if not match or match["ref"].startswith(("./", "docker://")):
                continue
            ref, comment = match["ref"], (match["comment"] or "").strip()
            if not re.fullmatch(r"v\d+\.\d+\.\d+", comment):
                problems.append(f"{path.name}:{number}: `{ref}` needs a `# vX.Y.Z` comment naming the pinned release")
                continue
            repo = "/".join(ref.split("@")[0].split("/")[:2])
            sha = ref.split("@")[1]
            if repo in seen and seen[repo] != (sha, comment):
                problems.append(f"{path.name}:{number}: {repo} pinned as {sha} {comment} here but {seen[repo][0]} {seen[repo][1]} elsewhere")
            seen.setdefault(repo, (sha, comment))
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------ (d) nox sessions and make targets


@cache
def nox_sessions() -> frozenset[str]:
    """Session names defined in noxfile.py: `@nox.session` functions (`name=` when given), and the
    command sessions made by `_command("NAME", ...)`."""
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "_command" and node.args and isinstance(node.args[0], ast.Constant):
            names.add(node.args[0].value)
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            call = decorator if isinstance(decorator, ast.Call) else None
            target = call.func if call else decorator
            if ast.unparse(target) not in ("nox.session", "session"):
                continue
            name = node.name
            for keyword in call.keywords if call else ():
                if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                    name = keyword.value.value
            names.add(name)
    return frozenset(names)


@cache
def make_targets() -> frozenset[str]:
    targets = set()
    for line in (ROOT / "Makefile").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_./$()-][A-Za-z0-9_./$() -]*?)\s*::?(?!=)", line)
        if match and not line.startswith("\t"):
            targets.update(t for t in match[1].split() if "$" not in t)
    return frozenset(targets)


def test_the_noxfile_and_makefile_parse_to_something() -> None:
    assert {"lint", "unit", "matrix", "build-matrix", "smoke", "publish"} <= nox_sessions()
    assert {"lint", "unit", "test"} <= make_targets()


def test_every_nox_session_used_exists() -> None:
    used = {(p.name, job, session) for p in WORKFLOWS for job, _, script in run_scripts(p) for session in NOX_SESSION.findall(script)}
    assert used, "the workflows run no nox session at all?"
    unknown = sorted(f"{wf} {job}: nox -s {s}" for wf, job, s in used if s not in nox_sessions())
    assert not unknown, f"not sessions of noxfile.py ({', '.join(sorted(nox_sessions()))}):\n" + "\n".join(unknown)


def test_every_make_target_used_exists() -> None:
    unknown = []
    for path in WORKFLOWS:
        for job, _, script in run_scripts(path):
            for args in MAKE_TARGET.findall(script):
                words = [w for w in args.split() if not w.startswith("-") and "=" not in w]
                unknown += [f"{path.name} {job}: make {w}" for w in words if w not in make_targets()]
    assert not unknown, f"not targets of the Makefile ({', '.join(sorted(make_targets()))}):\n" + "\n".join(unknown)


# ------------------------------------------------------------------ (e) matrix fields


@pytest.fixture(scope="module")
def matrix_entries() -> list[dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERASTACK_")}
    command = [sys.executable, "-m", "kerastack", "--config", str(SAMPLE), "matrix", "--json", "--compact"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, f"`matrix --json --compact` must print exactly one line on stdout, got {len(lines)}"
    data = json.loads(lines[0])
    assert set(data) == {"include"}, "strategy.matrix expects {'include': [...]}"
    assert data["include"], "the matrix is empty"
    return data["include"]


def fromjson_jobs() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path in WORKFLOWS:
        for job_id, job in jobs(path).items():
            strategy_matrix = (job.get("strategy") or {}).get("matrix")
            if isinstance(strategy_matrix, str) and "fromJSON" in strategy_matrix:
                yield path.name, job_id, job


def test_matrix_fields_read_by_the_workflows_exist_in_every_entry(matrix_entries: list[dict[str, Any]]) -> None:
    found = list(fromjson_jobs())
    assert found, "no job builds its strategy.matrix from fromJSON(...)"
    for workflow, job_id, job in found:
        used = {key for expression in expressions({k: v for k, v in job.items() if k != "strategy"}) for key in MATRIX_KEY.findall(expression)}
        assert used, f"{workflow} {job_id}: reads no matrix field?"
        for entry in matrix_entries:
            missing = used - entry.keys()
            assert not missing, f"{workflow} {job_id} reads matrix.{', matrix.'.join(sorted(missing))}, absent from {entry.get('id', entry)}"


def test_the_matrix_job_passes_the_compact_json_flags() -> None:
    scripts = [script for path in WORKFLOWS for _, _, script in run_scripts(path) if re.search(r"nox\s+-s\s+matrix\b", script)]
    assert scripts, "no job computes the matrix with `nox -s matrix`"
    assert all("--json" in s and "--compact" in s for s in scripts), "`nox -s matrix` needs `-- --json --compact` for $GITHUB_OUTPUT"


def test_cell_ids_named_in_the_workflows_exist(matrix_entries: list[dict[str, Any]]) -> None:
    ids = {entry["id"] for entry in matrix_entries}
    named = {(p.name, cell) for p in WORKFLOWS for _, _, script in run_scripts(p) for cell in CELL_ID_FILTER.findall(script)}
    unknown = sorted(f"{wf}: id={cell}" for wf, cell in named if cell not in ids)
    assert not unknown, f"no such cell in versions.toml ({', '.join(sorted(ids))}):\n" + "\n".join(unknown)


# ------------------------------------------------------------------ (f) permissions


def permission_items(permissions: Any) -> dict[str, str]:
    if permissions is None:
        return {}
    if isinstance(permissions, str):
        return {"*": permissions}
    return {str(k): str(v) for k, v in permissions.items()}


def test_top_level_permissions_are_read_only_or_empty() -> None:
    for path in WORKFLOWS:
        workflow = load(path)
        assert "permissions" in workflow, f"{path.name}: set top-level `permissions:` ({{}} or contents: read); the default token may be read-write"
        permissions = workflow["permissions"]
        if isinstance(permissions, str):
            assert permissions == "read-all", f"{path.name}: top-level permissions {permissions!r}"
        else:
            writable = {k: v for k, v in permission_items(permissions).items() if v not in READ_ONLY}
            assert not writable, f"{path.name}: top-level permissions grant {writable}; grant writes per job"


def test_id_token_write_only_in_the_release_job() -> None:
    granted = set()
    for path in WORKFLOWS:
        for job_id, job in jobs(path).items():
            items = permission_items(job.get("permissions"))
            assert items.get("*") != "write-all", f"{path.name} {job_id}: write-all"
            if items.get("id-token") == "write":
                granted.add((path.name, job_id))
    assert granted == {("release.yml", "release")}, f"id-token: write must be granted to release.yml's `release` job only, found {sorted(granted)}"


def test_ci_grants_no_write_permission() -> None:
    ci = WORKFLOW_DIR / "ci.yml"
    for job_id, job in jobs(ci).items():
        writable = {k: v for k, v in permission_items(job.get("permissions")).items() if v not in READ_ONLY}
        assert not writable, f"ci.yml {job_id}: CI runs untrusted pull requests; it must not write ({writable})"


def test_only_pushing_jobs_may_write_packages() -> None:
    writers = {(p.name, job_id) for p in WORKFLOWS for job_id, job in jobs(p).items() if permission_items(job.get("permissions")).get("packages") == "write"}
    assert writers <= {("release.yml", "cell"), ("release.yml", "index"), ("release.yml", "release")}, sorted(writers)


# ------------------------------------------------------------------ release gating


def test_release_runs_only_after_every_cell_succeeded() -> None:
    release = jobs(WORKFLOW_DIR / "release.yml")
    job = release["release"]
    needs = job.get("needs")
    assert "cell" in ([needs] if isinstance(needs, str) else needs or []), "release must need the cell jobs"
    condition = re.sub(r"\s+", " ", str(job.get("if", "")))
    assert "needs.cell.result == 'success'" in condition, f"release must run only when every cell succeeded, got if: {condition!r}"
    assert (release["cell"].get("strategy") or {}).get("fail-fast") is False, "one failing cell must not cancel the others (their reports still matter)"
    assert "index" in needs and "needs.index.result == 'success'" in condition, "moving tags move only after every multi-platform index was made"


# ------------------------------------------------------------------ platforms: native runners, then the join

RUNNER = re.compile(r"^\$\{\{ matrix\.platform == '([a-z0-9/]+)' && '([A-Za-z0-9.-]+)' \|\| '([A-Za-z0-9.-]+)' \}\}$")


def test_each_platform_builds_on_a_native_runner() -> None:
    from kerastack import contract

    cell = jobs(WORKFLOW_DIR / "release.yml")["cell"]
    match = RUNNER.match(str(cell["runs-on"]))
    assert match, f"cell runs-on must pick the runner from matrix.platform, got {cell['runs-on']!r}"
    platform, when, otherwise = match.groups()
    runner = {p: when if p == platform else otherwise for p in contract.PLATFORMS}
    assert runner == {"linux/amd64": "ubuntu-24.04", "linux/arm64": "ubuntu-24.04-arm"}, runner


def test_platform_jobs_stage_and_the_index_job_joins_them_after_every_cell_job() -> None:
    release = jobs(WORKFLOW_DIR / "release.yml")
    cell_scripts = [str(step.get("run", "")) for step in steps(release["cell"])]
    assert [s for s in cell_scripts if "nox -s publish" in s and "--stage staging" in s], "the cell jobs push with --stage staging"
    index = release["index"]
    assert set(index["needs"]) >= {"matrix", "cell"}
    condition = re.sub(r"\s+", " ", str(index.get("if", "")))
    assert "needs.cell.result == 'success'" in condition, "the join runs only when every platform's job succeeded"
    assert "github.ref == 'refs/heads/main' || startsWith(github.ref, 'refs/tags/v')" in condition
    assert "inputs.dry_run" in condition, "a dry run makes no index"
    scripts = [str(step.get("run", "")) for step in steps(index)]
    assert [s for s in scripts if re.search(r"nox -s publish-index -- --report-dir \"\$\{REPORTS\}\"", s)]
    downloads = [step for step in steps(index) if str(step.get("uses", "")).startswith("actions/download-artifact@")]
    assert downloads and downloads[0]["with"]["pattern"] == "publish-*"
    uploads = [step for step in steps(index) if str(step.get("uses", "")).startswith("actions/upload-artifact@")]
    assert uploads and uploads[0]["with"]["name"].startswith("publish-"), "the release job's publish-* download must find the index report"


def test_every_platform_job_stamps_the_runs_one_build_day() -> None:
    """Jobs on either side of midnight would stamp two days, which the index job refuses to join."""
    release = jobs(WORKFLOW_DIR / "release.yml")
    day_steps = [step for step in steps(release["matrix"]) if step.get("id") == "day"]
    assert day_steps and "date -u +%Y%m%d" in day_steps[0]["run"]
    assert release["matrix"]["outputs"]["day"] == "${{ steps.day.outputs.day }}"
    assert release["cell"]["env"]["KERASTACK_BUILD_DAY"] == "${{ needs.matrix.outputs.day }}"
    matrix_step = next(step for step in steps(release["matrix"]) if step.get("id") == "matrix")
    assert matrix_step["env"]["KERASTACK_BUILD_DAY"] == "${{ steps.day.outputs.day }}", "the summary's tags are the ones pushed"


def test_untested_gpu_cells_are_published_only_from_an_explicit_dispatch_input() -> None:
    text = (WORKFLOW_DIR / "release.yml").read_text()
    data = load(WORKFLOW_DIR / "release.yml")
    dispatch = (data.get("on") or data.get(True))["workflow_dispatch"]["inputs"]
    assert dispatch["allow_untested_gpu"]["type"] == "boolean" and dispatch["allow_untested_gpu"]["default"] is False
    assert data["env"]["ALLOW_UNTESTED_GPU"] == "${{ github.event_name == 'workflow_dispatch' && inputs.allow_untested_gpu == true }}"
    flag_lines = [line.strip() for line in text.splitlines() if "--allow-untested-gpu" in line]
    assert flag_lines == ['if [[ "${ALLOW_UNTESTED_GPU}" == true ]]; then args+=(--allow-untested-gpu); fi'], flag_lines
    assert "--allow-untested-gpu" not in (WORKFLOW_DIR / "ci.yml").read_text()


# ------------------------------------------------------------------ where releases come from


PUBLISH_REF_EXPRESSION = "${{ github.ref == 'refs/heads/main' || startsWith(github.ref, 'refs/tags/v') }}"


def _pushing_steps(job: dict[str, Any]) -> list[int]:
    """Indexes of the steps that push: nox publish, cosign, or the login that lets them."""
    return [i for i, step in enumerate(steps(job)) if re.search(r"nox -s publish|cosign (sign|attest)", str(step.get("run", "")))]


def test_only_main_and_v_tags_publish_a_dispatch_from_elsewhere_stops_first() -> None:
    data = load(WORKFLOW_DIR / "release.yml")
    assert data["env"]["PUBLISH_REF"] == PUBLISH_REF_EXPRESSION
    guard = steps(jobs(WORKFLOW_DIR / "release.yml")["matrix"])
    (index,) = [i for i, step in enumerate(guard) if step.get("if") == "${{ env.PUBLISH_REF != 'true' }}"]
    assert "exit 1" in guard[index]["run"] and index <= 3, "the ref guard runs first in the first job, before anything is built"
    cell = jobs(WORKFLOW_DIR / "release.yml")["cell"]
    for i in _pushing_steps(cell):
        assert "env.PUBLISH_REF == 'true'" in str(steps(cell)[i].get("if", "")), f"cell step {steps(cell)[i].get('name')} pushes from any ref"
    for job_id in ("index", "release"):
        condition = re.sub(r"\s+", " ", str(jobs(WORKFLOW_DIR / "release.yml")[job_id].get("if", "")))
        assert "github.ref == 'refs/heads/main' || startsWith(github.ref, 'refs/tags/v')" in condition, job_id


def test_one_global_concurrency_group_covers_every_release() -> None:
    group = load(WORKFLOW_DIR / "release.yml")["concurrency"]
    assert "${{" not in str(group["group"]), "a group per ref lets two releases publish at once"
    assert group["cancel-in-progress"] is False


@pytest.mark.parametrize("job_id", ["cell", "index", "release"])
def test_the_registry_login_comes_right_before_the_pushing_steps(job_id: str) -> None:
    job = jobs(WORKFLOW_DIR / "release.yml")[job_id]
    all_steps = steps(job)
    (login,) = [i for i, step in enumerate(all_steps) if str(step.get("uses", "")).startswith("docker/login-action@")]
    first_push = min(_pushing_steps(job))
    between = [str(s.get("name")) for s in all_steps[login + 1 : first_push]]
    assert login < first_push and not [n for n in between if re.search(r"build|smoke|install|pip", n, re.I)], (
        f"{job_id}: steps between the login and the first push: {between}"
    )
    assert not [s for s in all_steps[:login] if "pip install" in str(s.get("run", "")) and "--require-hashes" not in str(s.get("run", ""))]


def test_every_pip_install_in_ci_uses_the_hash_lock() -> None:
    installs = [(p.name, job, step, script) for p in WORKFLOWS for job, step, script in run_scripts(p) if "pip install" in script]
    assert installs
    for name, job, step, script in installs:
        for line in (x for x in script.splitlines() if "pip install" in x):
            # The launcher job's subset lock, at pipeline.txt's pins (tests/unit/test_pipeline_lock.py).
            subset = (name, job) == ("ci.yml", "launcher-hosts") and "--require-hashes -r requirements/launcher-tests.txt" in line
            assert "--require-hashes -r requirements/pipeline.txt" in line or "--no-deps" in line or subset, f"{name} {job} / {step}: {line.strip()}"
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r requirements/pipeline.txt" in makefile and "pip install --quiet nox" not in makefile
    assert '"--require-hashes", "-r", PIPELINE_LOCK' in (ROOT / "noxfile.py").read_text()


# ------------------------------------------------------------------ the launcher on macOS and Windows

LAUNCHER_HOST_TESTS = ["tests/unit/test_launch.py", "tests/unit/test_launch_hosts.py"]
# What those tests, and the conftest files pytest loads with them, may import: the runners get pytest only.
PORTABLE_LOCAL_IMPORTS = {"tests.conftest", "tests.unit.conftest", "tests.unit.test_launch"}  # each checked below itself


def test_the_launcher_runs_its_portable_tests_on_macos_and_windows() -> None:
    job = jobs(WORKFLOW_DIR / "ci.yml")["launcher-hosts"]
    assert job["strategy"]["matrix"] == {"os": ["macos-latest", "windows-latest"]} and job["strategy"].get("fail-fast") is False
    assert job["runs-on"] == "${{ matrix.os }}"
    scripts = [str(step["run"]) for step in steps(job) if "run" in step]
    assert scripts == [
        "python -m pip install --require-hashes -r requirements/launcher-tests.txt",
        "python -m pytest -m hosts " + " ".join(LAUNCHER_HOST_TESTS),
    ], scripts
    setup = [step for step in steps(job) if str(step.get("uses", "")).startswith("actions/setup-python@")]
    assert setup and setup[0]["with"]["python-version"] == "${{ env.PYTHON_VERSION }}", "the lock is compiled for the workflow's Python"


def _top_level_imports(path: Path) -> set[str]:
    """Modules a file imports when it is loaded (function-level imports run only in tests that call them)."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
            names.add(node.module)
    return names


@pytest.mark.parametrize("name", [*LAUNCHER_HOST_TESTS, "tests/conftest.py", "tests/unit/conftest.py"])
def test_what_the_launcher_job_loads_needs_only_the_standard_library_and_pytest(name: str) -> None:
    imported = _top_level_imports(ROOT / name)
    foreign = {m for m in imported if m.split(".")[0] not in sys.stdlib_module_names and m != "pytest" and m not in PORTABLE_LOCAL_IMPORTS}
    assert not foreign, f"{name} imports {sorted(foreign)}: the launcher-hosts job installs pytest only (requirements/launcher-tests.txt)"


def test_the_launcher_job_selects_tests_that_exist() -> None:
    hosts_file = (ROOT / "tests/unit/test_launch_hosts.py").read_text(encoding="utf-8")
    assert "pytestmark = pytest.mark.hosts" in hosts_file
    marked = (ROOT / "tests/unit/test_launch.py").read_text(encoding="utf-8").count("@pytest.mark.hosts\n")
    assert marked >= 40, f"only {marked} tests of test_launch.py are marked `hosts`"
    markers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    assert any(m.startswith("hosts:") for m in markers), "register the `hosts` marker in pyproject.toml (--strict-markers)"
