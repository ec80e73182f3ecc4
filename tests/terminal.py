"""A command run as a terminal runs it: its own process group (the foreground job), no stdin, output read line by line."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path


class Terminal:
    def __init__(self, command: Sequence[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            list(command), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern: re.Pattern, timeout: float) -> re.Match:
        """The first output line matching `pattern`; fails with all output so far when none comes in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            self.seen.append(line)
            if found := pattern.search(line):
                return found
        raise AssertionError(f"no line matching {pattern.pattern!r}:\n" + "".join(self.seen))

    def signal_group(self, sig: signal.Signals) -> None:
        """What the terminal does on Ctrl-C (SIGINT) or when it is closed (SIGHUP): signal the whole group."""
        os.killpg(self.process.pid, sig)

    def finish(self, timeout: float = 90) -> tuple[int, str]:
        """Exit code and all output, once the command and everything holding its output have ended."""
        code = self.process.wait(timeout=timeout)
        while (line := self.lines.get(timeout=60)) is not None:
            self.seen.append(line)
        return code, "".join(self.seen)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
