"""tests/engine_control.stop_engine never takes a running container down with the engine.

The engine here is a fake (subprocess.run and os.kill replaced): these tests must never stop a real one.
"""

from __future__ import annotations

import subprocess

import pytest

from tests import engine_control


class FakeEngine:
    """dockerd as `docker info`, `docker ps`, `pgrep` and SIGTERM see it."""

    def __init__(self, containers: list[str], ps_fails: bool = False) -> None:
        self.containers = containers
        self.ps_fails = ps_fails
        self.running = True
        self.calls: list[list[str]] = []
        self.killed: list[int] = []

    def run(self, command, **kwargs):
        self.calls.append(list(command))
        answer = {"returncode": 0, "stdout": "", "stderr": ""}
        if command[:2] == ["docker", "info"]:
            answer["returncode"] = 0 if self.running else 1
        elif command[:2] == ["docker", "ps"] and self.ps_fails:
            answer = {"returncode": 1, "stdout": "", "stderr": "permission denied"}
        elif command[:2] == ["docker", "ps"]:
            answer["stdout"] = "".join(f"{c}\n" for c in self.containers)
        elif command[:1] == ["pgrep"]:
            answer["stdout"] = "4242\n" if self.running else ""
            answer["returncode"] = 0 if self.running else 1
        elif command[:1] == ["systemctl"]:
            answer["returncode"] = 3  # not under systemd: stop_engine signals dockerd itself
        return subprocess.CompletedProcess(command, **answer)

    def kill(self, pid, sig) -> None:
        self.killed.append(pid)
        self.running = False


@pytest.fixture
def fake(monkeypatch):
    def install(containers: list[str], ps_fails: bool = False) -> FakeEngine:
        engine = FakeEngine(containers, ps_fails)
        monkeypatch.setattr(engine_control.subprocess, "run", engine.run)
        monkeypatch.setattr(engine_control.os, "kill", engine.kill)
        return engine

    return install


def test_a_running_container_stops_nothing_and_is_named(fake):
    engine = fake(["0123abcd jupyter-of-a-user (python:3.12)"])
    with pytest.raises(AssertionError, match="refusing to stop the Docker engine") as refused:
        engine_control.stop_engine(timeout=1)
    assert "jupyter-of-a-user" in str(refused.value)
    assert engine.killed == [] and engine.running
    assert not [c for c in engine.calls if c[:2] == ["systemctl", "stop"]]


def test_an_engine_that_cannot_list_its_containers_is_not_stopped(fake):
    engine = fake([], ps_fails=True)
    with pytest.raises(AssertionError, match="containers are unknown"):
        engine_control.stop_engine(timeout=1)
    assert engine.killed == [] and engine.running


def test_with_no_container_running_the_engine_is_stopped(fake):
    engine = fake([])
    engine_control.stop_engine(timeout=1)
    assert engine.killed == [4242] and not engine.running


def test_an_engine_already_stopped_needs_no_container_list(fake):
    engine = fake([])
    engine.running = False
    engine_control.stop_engine(timeout=1)
    assert not [c for c in engine.calls if c[:2] == ["docker", "ps"]] and engine.killed == []
