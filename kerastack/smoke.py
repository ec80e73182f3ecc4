"""The smoke stage: run the project's smoke suite (tests/smoke) in real containers for the selected cells.

The suite writes one SmokeReport per cell (kerastack.smoke_report) into the report folder; publish reads
only those files. pytest's output is progress, so it goes to stderr like every other progress line.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from .matrix import Cell
from .options import Options


def pytest_command(options: Options, cells: Sequence[Cell]) -> list[str]:
    return [
        sys.executable, "-m", "pytest", str(options.layout.smoke_tests),
        f"--cells={','.join(c.id for c in cells)}", f"--smoke-report-dir={options.report_dir}",
        "-p", "no:cacheprovider", "--rootdir", str(options.root),
        *([] if options.get("build") else ["--no-build"]), *options.get("pytest_args", []),
    ]  # fmt: skip


def run(options: Options, cells: Sequence[Cell]) -> int:
    return subprocess.run(pytest_command(options, cells), cwd=options.root, stdout=sys.stderr).returncode
