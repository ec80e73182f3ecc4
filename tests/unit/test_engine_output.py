"""engine.ensure installs the engine without a word on stdout (callers capture stdout as their result)."""

from __future__ import annotations

import pytest

from kerastack import engine


def test_installing_writes_progress_to_stderr_only(monkeypatch, tmp_path, capfd):
    script = tmp_path / "install-docker.sh"
    script.write_text("echo 'apt-get says hello on stdout'\necho 'install-docker: ok' >&2\n")
    states = iter([engine.EngineStatus(cli=True, daemon=False, buildx=True, detail="no socket"), engine.EngineStatus(True, True, True, "20.10.24")])
    monkeypatch.setattr(engine, "probe", lambda docker: next(states))
    status = engine.ensure(None, install=True, install_script=script)
    out, err = capfd.readouterr()
    assert status.ready
    assert out == ""
    assert "installing with install-docker.sh" in err and "apt-get says hello on stdout" in err


def test_a_failed_install_is_an_engine_error(monkeypatch, tmp_path, capfd):
    script = tmp_path / "install-docker.sh"
    script.write_text("echo partial output; exit 7\n")
    monkeypatch.setattr(engine, "probe", lambda docker: engine.EngineStatus(cli=True, daemon=False, buildx=True))
    with pytest.raises(engine.EngineError, match="exit 7"):
        engine.ensure(None, install=True, install_script=script)
    assert capfd.readouterr().out == ""
