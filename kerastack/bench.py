"""`nox -s bench`: how close to Docker's floor Jupyter and the first kernel are, measured side by side.

Two comparisons, each the median of N runs taken in alternation on the same machine in one run:

- start to URL: `scripts/launch --detach` (image present) until it prints the URL, against a plain
  `docker run -d` of the same image plus polling Jupyter's `/api` every 50 ms;
- the first `import tensorflow, keras` in a fresh container, against the same import in a container
  where root compiled the bytecode at run time first (`python -m compileall /opt/venv`);
- a JupyterHub spawn (kerastack/hub.py: the DockerSpawner example on a real hub), from the API request
  until the user's server answers through the hub's proxy, against the launcher's start to URL.

The pure parts (medians, ratios, the Markdown) are unit-tested; `run` talks to the real engine.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import contract, hub
from .docker_client import Docker
from .errors import PipelineError
from .files import write_atomic
from .layout import BENCH_REPORT, BENCH_REPORT_MD

POLL_INTERVAL = 0.05
READY_TIMEOUT = 180.0
URL_LINE = re.compile(r"Jupyter is ready: http://")
IMPORT_SNIPPET = "import tensorflow, keras"
# Times one fresh interpreter importing TF + Keras, from inside the container (container start excluded).
TIME_IMPORT = (
    "import subprocess, sys, time; t = time.perf_counter(); "
    f"subprocess.run([sys.executable, '-c', {IMPORT_SNIPPET!r}], check=True, stderr=subprocess.DEVNULL); "
    "print('SECONDS', time.perf_counter() - t)"
)
COMPILE_AT_RUN_TIME = "python -m compileall -q -j 0 /opt/venv >/dev/null 2>&1 || true"


@dataclass(frozen=True)
class Comparison:
    """One measured thing against its floor: `ratio` = median(measured) / median(floor) <= `target`."""

    name: str
    measured_label: str
    floor_label: str
    measured: list[float]
    floor: list[float]
    target: float

    @property
    def measured_median(self) -> float:
        return statistics.median(self.measured)

    @property
    def floor_median(self) -> float:
        return statistics.median(self.floor)

    @property
    def ratio(self) -> float:
        return self.measured_median / self.floor_median

    @property
    def within_target(self) -> bool:
        return self.ratio <= self.target


@dataclass
class BenchReport:
    image: str
    runs: int
    created: str
    comparisons: list[Comparison] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.within_target for c in self.comparisons)

    def to_json(self) -> str:
        data = asdict(self)
        for entry, c in zip(data["comparisons"], self.comparisons, strict=True):
            entry |= {"measured_median": round(c.measured_median, 3), "floor_median": round(c.floor_median, 3), "ratio": round(c.ratio, 3)}
            entry["within_target"] = c.within_target
        return json.dumps(data, indent=2) + "\n"

    def to_markdown(self) -> str:
        lines = [
            f"# Benchmark ({self.created})",
            "",
            f"Image `{self.image}`; medians of {self.runs} runs of each side, taken in alternation on the same machine.",
            "",
            "| what | measured | median s | floor | median s | ratio | target | |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in self.comparisons:
            verdict = "✓" if c.within_target else "✗ over target"
            lines.append(
                f"| {c.name} | {c.measured_label} | {c.measured_median:.2f} | {c.floor_label} | {c.floor_median:.2f} | "
                f"{c.ratio:.2f}× | ≤ {c.target:.2f}× | {verdict} |"
            )
        lines += ["", "All runs (seconds):", ""]
        for c in self.comparisons:
            lines.append(f"- {c.name}: measured {', '.join(f'{s:.2f}' for s in c.measured)}; floor {', '.join(f'{s:.2f}' for s in c.floor)}")
        return "\n".join(lines) + "\n"


def alternate(runs: int, first: Callable[[], float], second: Callable[[], float]) -> tuple[list[float], list[float]]:
    """Run both sides `runs` times, swapping which goes first each round, so drift hits both alike."""
    a: list[float] = []
    b: list[float] = []
    for i in range(runs):
        if i % 2 == 0:
            a.append(first())
            b.append(second())
        else:
            b.append(second())
            a.append(first())
    return a, b


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api_answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def launcher_to_url(docker: Docker, launcher: Path, image: str, folder: Path, log: Callable[[str], None]) -> float:
    port, name = _free_port(), f"kerastack-bench-{secrets.token_hex(4)}"
    command = [sys.executable, str(launcher), "--image", image, "--pull", "never", "--detach", "--dir", str(folder), "--port", str(port), "--name", name]
    start = time.perf_counter()
    try:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in process.stdout:
            if URL_LINE.search(line):
                seconds = time.perf_counter() - start
                break
        else:
            raise PipelineError(f"the launcher printed no URL: {process.stderr.read()[-1000:]}")
        process.wait(timeout=60)
        log(f"  launcher: {seconds:.2f} s")
        return seconds
    finally:
        docker.remove_container(name)


def docker_run_to_api(docker: Docker, image: str, folder: Path, log: Callable[[str], None]) -> float:
    port, name = _free_port(), f"kerastack-bench-{secrets.token_hex(4)}"
    start = time.perf_counter()
    try:
        docker.start(
            image, remove=True, name=name, publish=[(f"127.0.0.1:{port}", contract.PORT)], volumes=[(str(folder), contract.MOUNT_POINT)],
            envs={"JUPYTER_TOKEN": secrets.token_hex(16)},
        )  # fmt: skip
        deadline = start + READY_TIMEOUT
        while not _api_answers(port):
            if time.perf_counter() > deadline:
                raise PipelineError(f"Jupyter in {image} did not answer /api within {READY_TIMEOUT:.0f} s")
            time.sleep(POLL_INTERVAL)
        seconds = time.perf_counter() - start
        log(f"  docker run + /api: {seconds:.2f} s")
        return seconds
    finally:
        docker.remove_container(name)


def first_import(docker: Docker, image: str, compile_first: bool, log: Callable[[str], None]) -> float:
    """Seconds of the first `import tensorflow, keras` in a new container (after a run-time compileall as root)."""
    script = (f"{COMPILE_AT_RUN_TIME}; " if compile_first else "") + f'python -c "{TIME_IMPORT}"'
    output = docker.run(image, ["-c", script], user="root", entrypoint="bash", networks=["none"])
    found = re.search(r"SECONDS ([0-9.]+)", output)
    if not found:
        raise PipelineError(f"the import timing printed nothing in {image}: {output[-500:]}")
    seconds = float(found.group(1))
    log(f"  import ({'compiled at run time' if compile_first else 'as shipped'}): {seconds:.2f} s")
    return seconds


@dataclass(frozen=True)
class BenchOptions:
    """Derived from the command's Options: the image, the run count, where the launcher and reports are."""

    image: str
    launcher: Path
    runs: int = 5
    report_dir: Path = Path("reports")
    start_target: float = 1.15
    import_target: float = 1.1
    hub_target: float = 1.3
    install_hub_script: Path | None = None  # with the example config: measure a hub spawn too
    hub_example_config: Path | None = None


HUB_BENCH_USER = "bench"


def hub_spawn(docker: Docker, options: BenchOptions, launcher_folder: Path, log: Callable[[str], None]) -> Comparison:
    """Hub spawns (API request -> /user/NAME/api through the proxy) alternated with launcher starts, on one hub."""
    assert options.install_hub_script and options.hub_example_config
    home = hub.install(options.install_hub_script)
    with tempfile.TemporaryDirectory(prefix="kerastack-bench-hub-") as work:
        settings = hub.HubSettings(options.image, options.hub_example_config, home, Path(work), (HUB_BENCH_USER,))
        with hub.running_hub(settings, docker, log) as running:
            token = running.user_token(HUB_BENCH_USER)

            def one_spawn() -> float:
                seconds = running.spawn(HUB_BENCH_USER, token)
                running.stop_server(HUB_BENCH_USER)
                log(f"  hub spawn: {seconds:.2f} s")
                return seconds

            spawned, launched = alternate(options.runs, one_spawn, lambda: launcher_to_url(docker, options.launcher, options.image, launcher_folder, log))
    return Comparison(
        "hub spawn", "JupyterHub API request -> server answers through the proxy", "scripts/launch --detach to URL", spawned, launched, options.hub_target
    )


def run(docker: Docker, options: BenchOptions, log: Callable[[str], None]) -> BenchReport:
    if not docker.exists(options.image):
        raise PipelineError(f"{options.image} is not on this machine: build it first (nox -s build-matrix -- id=...), or pass --image")
    report = BenchReport(image=options.image, runs=options.runs, created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    with tempfile.TemporaryDirectory(prefix="kerastack-bench-") as tmp:
        folder = Path(tmp)
        os.chmod(folder, 0o777)  # the container's keras user may write there, whoever runs the bench
        log("start to URL: launcher vs docker run -d + polling /api")
        launched, floor = alternate(
            options.runs,
            lambda: launcher_to_url(docker, options.launcher, options.image, folder, log),
            lambda: docker_run_to_api(docker, options.image, folder, log),
        )
        report.comparisons.append(
            Comparison("start to URL", "scripts/launch --detach", "docker run -d + /api every 50 ms", launched, floor, options.start_target)
        )
        if options.install_hub_script and options.hub_example_config:
            log("hub spawn: JupyterHub + DockerSpawner vs the launcher")
            report.comparisons.append(hub_spawn(docker, options, folder, log))
    log("first import tensorflow, keras: as shipped vs after compileall as root")
    shipped, compiled = alternate(options.runs, lambda: first_import(docker, options.image, False, log), lambda: first_import(docker, options.image, True, log))
    report.comparisons.append(
        Comparison("first `import tensorflow, keras`", "fresh container", "after run-time compileall", shipped, compiled, options.import_target)
    )
    write_atomic(options.report_dir / BENCH_REPORT, report.to_json())
    write_atomic(options.report_dir / BENCH_REPORT_MD, report.to_markdown())
    return report
