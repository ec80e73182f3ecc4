"""QEMU user-mode emulation on this Linux machine: whether the kernel runs another architecture's binaries.

Builds and containers of a platform other than the engine's own (linux/arm64 on an amd64 host) run every
RUN step and process under `qemu-<arch>-static`, registered with the kernel's binfmt_misc. The handler
needs the F flag ("fix binary": the interpreter is opened at registration), or containers and chroots,
which do not have the interpreter inside, cannot start it. This module reads the registration and says
what is missing and how to fix it; it changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import PipelineError

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
# The binfmt_misc handler name for each platform's architecture (qemu-user-static's names).
QEMU_HANDLERS = {"linux/arm64": "qemu-aarch64", "linux/amd64": "qemu-x86_64"}
FIX = "install and register QEMU: `sudo scripts/install-test-deps.sh` (Debian/Ubuntu: apt-get install qemu-user-static binfmt-support)"


@dataclass(frozen=True)
class Handler:
    """One binfmt_misc registration, as the kernel shows it."""

    name: str
    enabled: bool
    flags: str
    interpreter: str


def parse_handler(name: str, text: str) -> Handler:
    """A handler file's text (`enabled`, `interpreter ...`, `flags: PF`, ...), pure."""
    lines = [line.strip() for line in text.splitlines()]
    fields = dict(line.split(" ", 1) for line in lines if " " in line)
    flags = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("flags:")), "")
    return Handler(name, "enabled" in lines, flags, fields.get("interpreter", ""))


def problem(platform: str, binfmt_dir: Path = BINFMT_DIR) -> str:
    """Why this kernel cannot run `platform`'s binaries under emulation, or "" when it can."""
    name = QEMU_HANDLERS.get(platform)
    if name is None:
        return f"no emulator is known for {platform}"
    if not (binfmt_dir / "status").exists():
        return f"{binfmt_dir} is not mounted (as root: mount -t binfmt_misc binfmt_misc {binfmt_dir}), so no emulator is registered for {platform}"
    try:
        text = (binfmt_dir / name).read_text()
    except FileNotFoundError:
        return f"no {name} handler is registered in {binfmt_dir}, so {platform} binaries cannot run here"
    except OSError as exc:
        return f"cannot read {binfmt_dir / name} ({exc.strerror}): whether {platform} binaries run here is unknown"
    handler = parse_handler(name, text)
    if not handler.enabled:
        return f"the {name} handler is registered but disabled (as root: update-binfmts --enable {name})"
    if "F" not in handler.flags:
        return f"the {name} handler lacks the F flag (flags {handler.flags or 'none'}), so containers cannot start its interpreter {handler.interpreter}"
    return ""


def require(platform: str, binfmt_dir: Path = BINFMT_DIR) -> None:
    """Raise one clear error when `platform`'s binaries cannot run here under emulation."""
    why = problem(platform, binfmt_dir)
    if why:
        raise PipelineError(f"cannot build or run {platform} images on this machine: {why}; {FIX}")
