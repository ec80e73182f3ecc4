"""images/builder/toolkit-doc-filter: the dpkg filter the toolkit step installs its .debs under.

It runs here on this Debian host's own dpkg database (read only) and on .debs the tests build with
dpkg-deb; DOC_ROOT points the listed doc trees at a temporary folder, so nothing on the host changes."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FILTER = ROOT / "images" / "builder" / "toolkit-doc-filter"

pytestmark = pytest.mark.skipif(
    shutil.which("dpkg-deb") is None or shutil.which("dpkg-query") is None, reason="needs dpkg (the images' Debian tools) on this host"
)


def host_package() -> tuple[str, str, list[str]]:
    """An installed package of this host with doc files: its name, architecture and doc paths."""
    for name in ("bash", "coreutils", "dpkg"):
        shown = subprocess.run(["dpkg-query", "--show", "--showformat=${Architecture}", name], capture_output=True, text=True)
        if shown.returncode == 0:
            files = subprocess.run(["dpkg-query", "--listfiles", name], capture_output=True, text=True, check=True).stdout.split()
            docs = [f for f in files if f.startswith(("/usr/share/doc/", "/usr/share/man/")) and os.path.isfile(f)]
            if docs:
                return name, shown.stdout, docs
    pytest.skip("no installed package with doc files found (bash, coreutils, dpkg)")


def make_deb(folder: Path, package: str, architecture: str, apt_name: bool = False) -> Path:
    """A .deb named as apt downloads it (NAME_VERSION_ARCH.deb, read from the name) or not (read from the package)."""
    tree = folder / f"{package}-tree"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: 99\nArchitecture: {architecture}\nMaintainer: t <t@example.org>\nDescription: test\n"
    )
    deb = folder / (f"{package}_1%3a99-1_{architecture}.deb" if apt_name else f"{package}.deb")
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(deb)], check=True, capture_output=True)
    return deb


def run(*args: str, doc_root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(FILTER), *args], capture_output=True, text=True, env={**os.environ, "DOC_ROOT": str(doc_root)})


def copy_docs(docs: list[str], doc_root: Path) -> None:
    for doc in docs:
        target = doc_root / doc.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("doc")


@pytest.mark.parametrize("new_architecture", ["same", "all"], ids=["same-architecture", "now-arch-independent"])
@pytest.mark.parametrize("apt_name", [True, False], ids=["apt-file-name", "other-file-name"])
def test_an_upgraded_package_keeps_its_doc_files_and_a_new_one_adds_none(tmp_path, apt_name, new_architecture):
    name, architecture, docs = host_package()
    if new_architecture == "all":
        architecture = "all"  # a package whose new version changed its architecture is still an upgrade
    doc_root = tmp_path / "root"
    copy_docs(docs, doc_root)
    (doc_root / "usr/share/doc/unrelated").mkdir(parents=True)
    (doc_root / "usr/share/doc/unrelated/README").write_text("not upgraded")
    upgrade = make_deb(tmp_path, name, architecture, apt_name)
    new = make_deb(tmp_path, "kerastack-test-new-package", "all", apt_name)
    config, snapshot = tmp_path / "filter.cfg", tmp_path / "before"

    result = run("start", str(config), str(snapshot), str(upgrade), str(new), doc_root=doc_root)

    assert result.returncode == 0, result.stderr
    lines = config.read_text().splitlines()
    rules = ["path-exclude=/usr/share/doc/*", "path-include=/usr/share/doc/*/copyright", "path-exclude=/usr/share/man/*", "path-exclude=/usr/share/info/*"]
    assert lines[:4] == rules
    assert sorted(lines[4:]) == sorted(f"path-include={d}" for d in docs)  # the upgraded package's files, only
    assert "/usr/share/doc/unrelated/README" in snapshot.read_text().splitlines()


@pytest.fixture
def started(tmp_path) -> tuple[Path, Path]:
    """A doc tree with two files, and the snapshot `start` took of it: (the tree's root, the snapshot)."""
    doc_root = tmp_path / "root"
    copy_docs(["/usr/share/doc/a/copyright", "/usr/share/man/man1/a.1.gz"], doc_root)
    snapshot = tmp_path / "before"
    assert run("start", str(tmp_path / "cfg"), str(snapshot), str(make_deb(tmp_path, "kerastack-test-x", "all")), doc_root=doc_root).returncode == 0
    return doc_root, snapshot


def test_check_passes_when_every_doc_file_is_still_there(started):
    doc_root, snapshot = started
    (doc_root / "usr/share/doc/b").mkdir()
    (doc_root / "usr/share/doc/b/copyright").write_text("added by the install: fine")

    assert run("check", str(snapshot), doc_root=doc_root).returncode == 0


def test_check_fails_naming_a_deleted_doc_file(started):
    doc_root, snapshot = started
    (doc_root / "usr/share/man/man1/a.1.gz").unlink()

    result = run("check", str(snapshot), doc_root=doc_root)

    assert result.returncode == 1
    assert "/usr/share/man/man1/a.1.gz" in result.stderr and "whiteout" in result.stderr


def test_bad_usage_is_refused(tmp_path):
    assert run("start", str(tmp_path / "cfg"), doc_root=tmp_path).returncode == 2
    assert run("frobnicate", doc_root=tmp_path).returncode == 2
