"""Reading and writing the pipeline's own files: atomic writes, and JSON read back with one clear error."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import PipelineError

MAX_JSON_BYTES = 64_000_000  # the largest report (a GPU cell's manifest) is a few MB


def write_atomic(path: Path, text: str) -> Path:
    """Write `text` to a temporary file beside `path`, then rename it over `path`: readers see the old
    file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read_json(path: Path, what: str, fix: str) -> Any:
    """The JSON document in `path`; PipelineError naming `what` it should be and `fix` when it is not
    readable, not UTF-8, not JSON, or absurdly large or deep."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_JSON_BYTES + 1)
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read {what} ({exc.strerror or exc}); {fix}") from None
    if len(raw) > MAX_JSON_BYTES:
        raise PipelineError(f"{path}: larger than {MAX_JSON_BYTES // 1_000_000} MB, so not {what}; {fix}")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise PipelineError(f"{path}: not UTF-8 text (byte {exc.start}), so not {what}; {fix}") from None
    except RecursionError:
        raise PipelineError(f"{path}: nested too deeply, so not {what}; {fix}") from None
    except ValueError as exc:
        raise PipelineError(f"{path}: not JSON ({exc}), so not {what}; {fix}") from None
