"""Errors the pipeline reports to users: one message that names what is wrong and the fix."""

from __future__ import annotations


class PipelineError(Exception):
    """A problem the user can fix; the CLI prints it without a traceback and exits non-zero."""

    exit_code = 2


class ConfigError(PipelineError):
    """versions.toml (or a filter given on the command line) is wrong."""

    def __init__(self, file: str, key_path: str, problem: str, fix: str) -> None:
        self.file = file
        self.key_path = key_path
        self.problem = problem
        self.fix = fix
        where = f"{file}: {key_path}" if key_path else file
        super().__init__(f"{where}: {problem}\n  fix: {fix}")


class EngineError(PipelineError):
    """The Docker engine, CLI or buildx is missing or unreachable."""

    exit_code = 3
