"""scripts/launch --requirements: the pure parts (reading the requirements file and its refusals, the lock
file and its staleness, the derived image's tag, labels and build command, pip's failures as one message).
The real resolve and build run in tests/integration/test_requirements.py."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.unit.test_launch import TOKEN, _load_launch, run_launch

LOCKED_CELLS = Path(__file__).parent / "data" / "locked" / "locks"  # the two-cell test project's committed locks
IMAGE = "ghcr.io/kerastack/keras-jupyter:2.21.0-py3.11-cpu"
IMAGE_ID = "sha256:" + "ab" * 32
OTHER_ID = "sha256:" + "cd" * 32
PACKAGES = [
    {"name": "pyarrow", "version": "22.0.0", "sha256": "1" * 64},
    {"name": "humanize", "version": "4.17.0", "sha256": "2" * 64},
]


@pytest.fixture(scope="module")
def launch():
    return _load_launch()


def parse(launch, text, allow=False):
    return launch.parse_requirements(text, "/work/requirements.txt", allow)


def refused(launch, text, allow=False):
    with pytest.raises(launch.LaunchError) as err:
        parse(launch, text, allow)
    assert err.value.code == launch.EXIT_USAGE
    return err.value.message


# ----------------------------------------------------------------------------- the requirements file


def test_names_specifiers_extras_markers_comments_and_continuations(launch):
    text = "\n".join(
        [
            "# my packages",  # 1
            "humanize",  # 2
            "",  # 3
            "pyarrow>=17,<30  # a compiled wheel",  # 4
            "tabulate[widechars] ==0.9.*",  # 5
            "polars ; python_version >= '3.10'",  # 6
            "scikit-learn \\",  # 7
            "    >=1.5",  # 8
            "zstandard (>=0.22)",  # 9
        ]
    )
    reqs = parse(launch, text)
    assert reqs.entries == [
        (2, "humanize"),
        (4, "pyarrow>=17,<30"),
        (5, "tabulate[widechars] ==0.9.*"),
        (6, "polars ; python_version >= '3.10'"),
        (7, "scikit-learn      >=1.5"),
        (9, "zstandard (>=0.22)"),
    ]
    assert reqs.options == []
    assert re.fullmatch(r"[0-9a-f]{64}", reqs.sha256)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("humanize\nfoo ==\n", ["line 2", "'foo =='", "not a requirement"]),
        ("humanize\n>=1.0\n", ["line 2", "not a requirement"]),
        ("numpy<<2\n", ["line 1"]),
        ("-e .\n", ["line 1", "-e", "editable"]),
        ("humanize\n--editable git+https://github.com/x/y\n", ["line 2", "editable"]),
        ("-r other.txt\n", ["line 1", "includes"]),
        ("-c constraints.txt\nhumanize\n", ["line 1", "constraint"]),
        ("--index-url https://my.index/simple\nhumanize\n", ["line 1", "--index-url", "--allow-index-options"]),
        ("humanize\n--extra-index-url https://my.index/simple\n", ["line 2", "--extra-index-url", "--allow-index-options"]),
        ("--find-links https://my.index/wheels\nhumanize\n", ["--find-links", "--allow-index-options"]),
        ("-i https://my.index/simple\nhumanize\n", ["-i", "--allow-index-options"]),
        ("--pre\nhumanize\n", ["line 1", "--pre", "not supported"]),
        ("humanize --hash=sha256:00\n", ["line 1"]),
        ("./mypackage\n", ["line 1", "path or URL"]),
        ("/wheels/x-1.0-py3-none-any.whl\n", ["path or URL"]),
        ("https://example.org/x-1.0-py3-none-any.whl\n", ["path or URL"]),
        ("x @ https://example.org/x-1.0-py3-none-any.whl\n", ["line 1", "URL", "cannot pin"]),
        ("# only a comment\n\n", ["lists no packages"]),
    ],
)
def test_refusals_name_the_line_and_what_to_do(launch, text, words):
    message = refused(launch, text)
    for word in words:
        assert word in message, (word, message)


def test_index_options_pass_only_when_allowed_and_never_with_credentials(launch):
    text = "--index-url https://my.index/simple\n--extra-index-url=https://other.index/simple\n-f https://my.index/wheels\nhumanize\n"
    reqs = parse(launch, text, allow=True)
    assert reqs.options == [(1, "--index-url https://my.index/simple"), (2, "--extra-index-url https://other.index/simple"), (3, "-f https://my.index/wheels")]
    assert reqs.entries == [(4, "humanize")]
    assert "credentials" in refused(launch, "--index-url https://me:secret@my.index/simple\nhumanize\n", allow=True)
    assert "local folder" in refused(launch, "--find-links ./wheels\nhumanize\n", allow=True)
    assert "editable" in refused(launch, "-e .\n", allow=True), "-e stays refused: an editable install cannot be locked"
    with pytest.raises(launch.LaunchError, match="direct URL, which the lock cannot pin"):
        parse(launch, "x @ https://example.org/x-1.0-py3-none-any.whl\n", allow=True)


def test_a_missing_unreadable_or_binary_file_is_one_error(launch, tmp_path):
    with pytest.raises(launch.LaunchError, match="does not exist"):
        launch.read_requirements(str(tmp_path / "nope.txt"), False)
    with pytest.raises(launch.LaunchError, match="is a folder"):
        launch.read_requirements(str(tmp_path), False)
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"humanize\n\xff\xfe\n")
    with pytest.raises(launch.LaunchError, match="not UTF-8"):
        launch.read_requirements(str(binary), False)
    if os.geteuid() != 0:  # root reads any file
        locked = tmp_path / "locked.txt"
        locked.write_text("humanize\n")
        locked.chmod(0)
        with pytest.raises(launch.LaunchError, match="cannot be read"):
            launch.read_requirements(str(locked), False)


def test_the_file_hash_is_of_its_bytes(launch, tmp_path):
    f = tmp_path / "requirements.txt"
    f.write_bytes(b"humanize\n")
    a = launch.read_requirements(str(f), False)
    f.write_bytes(b"humanize\n# a comment changes the file\n")
    b = launch.read_requirements(str(f), False)
    assert a.entries == b.entries and a.sha256 != b.sha256


def test_options_requirements_from_the_command_line_or_the_environment(launch, tmp_path):
    d = str(tmp_path)
    o = launch.parse_args(["--dir", d, "--requirements", "reqs.txt"], environ={}, token_factory=lambda: TOKEN)
    assert o.requirements == os.path.abspath("reqs.txt") and not o.allow_index_options
    o = launch.parse_args(["--dir", d], environ={"KERASTACK_REQUIREMENTS": "/x/r.txt"}, token_factory=lambda: TOKEN)
    assert o.requirements == "/x/r.txt"
    o = launch.parse_args(["--dir", d], environ={"KERASTACK_REQUIREMENTS": ""}, token_factory=lambda: TOKEN)
    assert o.requirements is None
    with pytest.raises(launch.LaunchError, match="only applies with --requirements"):
        launch.parse_args(["--dir", d, "--allow-index-options"], environ={}, token_factory=lambda: TOKEN)
    with pytest.raises(launch.LaunchError, match="must not be empty"):
        launch.parse_args(["--dir", d, "--requirements", " "], environ={}, token_factory=lambda: TOKEN)


def test_a_bad_requirements_file_exits_2_before_docker_is_asked(tmp_path):
    (tmp_path / "r.txt").write_text("-e .\n")
    # No docker on PATH: the refusal comes first, and nothing is written next to the file.
    r = run_launch("--dir", str(tmp_path), "--requirements", str(tmp_path / "r.txt"), env={"PATH": str(tmp_path), "HOME": str(tmp_path)})
    assert r.returncode == 2, r.stderr
    assert "line 1: -e is refused" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.txt"]


# ----------------------------------------------------------------------------- the lock file


def make_lock(launch, text="humanize\npyarrow\n", image_id=IMAGE_ID, packages=PACKAGES, options=()):
    reqs = parse(launch, text)
    return reqs, launch.render_lock(reqs, IMAGE, image_id, packages, list(options))


def test_the_lock_is_a_sorted_hash_pinned_requirements_file_with_its_origin_in_the_header(launch):
    reqs, text = make_lock(launch, options=["--index-url https://my.index/simple"])
    assert text == make_lock(launch, options=["--index-url https://my.index/simple"])[1], "same inputs, same bytes"
    lock = launch.parse_lock(text)
    assert lock.header["kerastack-lock"] == "1"
    assert lock.header["requirements-sha256"] == reqs.sha256
    assert (lock.header["image"], lock.header["image-id"]) == (IMAGE, IMAGE_ID)
    assert lock.body == (
        "--index-url https://my.index/simple\nhumanize==4.17.0 \\\n    --hash=sha256:" + "2" * 64 + "\npyarrow==22.0.0 \\\n    --hash=sha256:" + "1" * 64 + "\n"
    )
    assert lock.packages() == [("humanize", "4.17.0"), ("pyarrow", "22.0.0")]
    assert "image-digest" not in lock.header
    digest = "ghcr.io/kerastack/keras-jupyter@sha256:" + "e" * 64
    pulled = launch.parse_lock(launch.render_lock(reqs, IMAGE, IMAGE_ID, PACKAGES, [], [digest]))
    assert pulled.header["image-digest"] == digest and pulled.packages() == lock.packages()


def test_lock_status(launch, tmp_path):
    reqs, text = make_lock(launch)
    lock = launch.parse_lock(text)
    assert launch.lock_status(None, reqs, IMAGE_ID, "r.txt.lock")[0] == "missing"
    assert launch.lock_status(lock, reqs, IMAGE_ID, "r.txt.lock") == ("current", "r.txt.lock is current")
    changed = parse(launch, "humanize\npyarrow\nzstandard\n")
    status, why = launch.lock_status(lock, changed, IMAGE_ID, "/w/requirements.txt.lock")
    assert status == "stale" and "requirements.txt changed" in why
    status, why = launch.lock_status(lock, reqs, OTHER_ID, "/w/requirements.txt.lock")
    assert status == "stale" and "another image" in why and "abababababab" in why and "cdcdcdcdcdcd" in why


@pytest.mark.parametrize(
    "edit",
    [
        lambda t: t.replace("2222", "3333", 1),  # a hash
        lambda t: t.replace("pyarrow==22.0.0", "pyarrow==21.0.0"),  # a version
        lambda t: t + "extra==1.0 \\\n    --hash=sha256:" + "4" * 64 + "\n",  # a package
    ],
)
def test_an_edited_lock_is_refused(launch, edit):
    reqs, text = make_lock(launch)
    with pytest.raises(launch.LaunchError) as err:
        launch.lock_status(launch.parse_lock(edit(text)), reqs, IMAGE_ID, "r.txt.lock")
    assert err.value.code == launch.EXIT_USAGE and "was edited" in err.value.message


def test_a_file_the_launcher_did_not_write_is_never_overwritten(launch, tmp_path):
    foreign = tmp_path / "requirements.txt.lock"
    foreign.write_text("humanize==4.17.0\n")
    with pytest.raises(launch.LaunchError, match="not written by the launcher"):
        launch.read_lock(str(foreign))
    assert launch.read_lock(str(tmp_path / "missing.lock")) is None


def test_the_lock_is_written_atomically(launch, tmp_path):
    path = tmp_path / "r.txt.lock"
    launch.write_atomically(str(path), "one\n")
    launch.write_atomically(str(path), "two\n")
    assert path.read_text() == "two\n"
    assert [p.name for p in tmp_path.iterdir()] == ["r.txt.lock"]


def test_a_lock_that_cannot_be_written_is_one_clear_error(launch, tmp_path):
    missing = tmp_path / "no-such-folder" / "r.txt.lock"
    with pytest.raises(launch.LaunchError, match="cannot write .*r.txt.lock"):
        launch.write_atomically(str(missing), "one\n")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- the derived image


@pytest.mark.parametrize(
    ("parent", "expected"),
    [
        (IMAGE, "ghcr.io/kerastack/keras-jupyter:2.21.0-py3.11-cpu-x0123456789ab"),
        ("localhost:5000/me/keras:latest-gpu", "localhost:5000/me/keras:latest-gpu-x0123456789ab"),
        ("me/keras@sha256:" + "f" * 64, "me/keras:sha256-ffffffffffff-x0123456789ab"),
        ("me/keras:" + "t" * 128, "me/keras:" + "t" * 114 + "-x0123456789ab"),
    ],
)
def test_the_derived_tag_names_the_parent_and_the_lock(launch, parent, expected):
    tag = launch.derived_tag(parent, "0123456789ab" + "c" * 52)
    assert tag == expected
    launch.parse_reference(tag)  # a valid reference


def test_labels_and_build_command(launch):
    _, text = make_lock(launch)
    lock = launch.parse_lock(text)
    labels = launch.derived_labels(IMAGE, IMAGE_ID, lock, ["ghcr.io/kerastack/keras-jupyter@sha256:" + "e" * 64])
    assert labels == {
        "io.kerastack.extends.image-id": IMAGE_ID,
        "io.kerastack.extends.ref": IMAGE,
        "io.kerastack.extends.digest": "ghcr.io/kerastack/keras-jupyter@sha256:" + "e" * 64,
        "io.kerastack.extras.lock": "sha256:" + lock.sha256,
        "io.kerastack.extras.packages": "humanize==4.17.0 pyarrow==22.0.0",
    }
    cmd = launch.build_command("t:x", "/ctx", IMAGE, IMAGE_ID, "keras", lock, labels, "/etc/ssl/ca.pem")
    assert cmd[:2] == ["docker", "build"] and cmd[-1] == "/ctx"
    assert "--secret" in cmd and cmd[cmd.index("--secret") + 1] == "id=ca,src=/etc/ssl/ca.pem"
    assert "LAYER_EPOCH=315532800" in cmd and "PARENT_USER=keras" in cmd and "--no-cache" not in cmd
    no_ca = launch.build_command("t:x", "/ctx", IMAGE, IMAGE_ID, "", lock, labels, None, no_cache=True)
    assert "--secret" not in no_ca and "--no-cache" in no_ca and "PARENT_USER=root" in no_ca
    assert not any("ca.pem" in part for part in no_ca)


def test_the_derived_dockerfile_adds_one_layer_and_keeps_the_ca_out_of_it(launch):
    dockerfile = launch.DERIVED_DOCKERFILE
    final = dockerfile.split("\nFROM ${PARENT}\n", 1)[1]
    assert final.count("RUN ") == 1, "one layer on top of the parent"
    assert "secret" not in final and "COPY" not in dockerfile and "ADD " not in dockerfile
    assert "--require-hashes" in launch.INSTALL_EXTRAS and "--no-deps" in launch.INSTALL_EXTRAS
    assert "unchecked-hash" in launch.INSTALL_EXTRAS and "PYTHONHASHSEED" in launch.INSTALL_EXTRAS


def test_the_ca_bundle(launch, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert launch.find_ca_bundle({"SSL_CERT_FILE": str(ca)}) == str(ca)
    assert launch.find_ca_bundle({"REQUESTS_CA_BUNDLE": str(ca)}) == str(ca)
    with pytest.raises(launch.LaunchError, match="names no file"):
        launch.find_ca_bundle({"SSL_CERT_FILE": str(tmp_path / "none.pem")})
    assert launch.find_ca_bundle({}) in (None, *launch.HOST_CA_BUNDLES)


def test_the_resolve_request_carries_the_ca_and_nothing_is_mounted(launch):
    reqs = parse(launch, "humanize\n")
    cmd = launch.resolve_command(IMAGE)
    assert "-v" not in cmd and "--mount" not in cmd and "--rm" in cmd and "-i" in cmd
    request = launch.resolve_request(reqs, "PEM")
    assert '"ca": "PEM"' in request and '"/usr/share/kerastack/locks"' in request


def test_derived_image_is_current_only_with_the_same_parent_and_lock(launch):
    _, text = make_lock(launch)
    lock = launch.parse_lock(text)
    labels = launch.derived_labels(IMAGE, IMAGE_ID, lock, [])
    assert launch.derived_is_current({"Config": {"Labels": labels}}, IMAGE_ID, lock)
    assert not launch.derived_is_current({"Config": {"Labels": labels}}, OTHER_ID, lock)
    assert not launch.derived_is_current(None, IMAGE_ID, lock)
    assert launch.one_layer_more({"RootFS": {"Layers": ["a", "b"]}}, {"RootFS": {"Layers": ["a", "b", "c"]}})
    assert not launch.one_layer_more({"RootFS": {"Layers": ["a", "b"]}}, {"RootFS": {"Layers": ["a", "b", "c", "d"]}})


# ----------------------------------------------------------------------------- refusals from the resolve, as one message

PIP_NOT_FOUND = """\
ERROR: Could not find a version that satisfies the requirement this-package-does-not-exist-xyz (from versions: none)
ERROR: No matching distribution found for this-package-does-not-exist-xyz
"""
PIP_DEEP_CONFLICT = """\
Collecting numba==0.58.1
  Downloading numba-0.58.1-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl (3.6 MB)
INFO: pip is looking at multiple versions of numba to determine which version is compatible with other requirements.
ERROR: Cannot install -r /tmp/tmpadccvpb9/requirements.txt (line 1) because these package versions have conflicting dependencies.

The conflict is caused by:
    The user requested (constraint) numpy==2.4.6
    numba 0.58.1 depends on numpy<1.27 and >=1.22

To fix this you could try to:
1. loosen the range of package versions you've specified
2. remove package versions to allow pip attempt to solve the dependency conflict

ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/#dealing-with-dependency-conflicts
"""


def test_a_direct_conflict_names_the_package_what_was_asked_and_what_the_image_holds(launch):
    reqs = parse(launch, "humanize\nnumpy<2\n")
    conflicts = [{"line": 2, "text": "numpy<2", "name": "numpy", "asked": "<2", "holds": "2.4.6", "group": "tensorflow"}]
    message = launch.conflict_message(conflicts, reqs, IMAGE)
    assert "requirements.txt line 2: numpy<2 asked, but the image holds numpy 2.4.6" in message
    assert "Nothing was written" in message


def test_pip_failures_become_one_message(launch):
    reqs = parse(launch, "humanize\nthis-package-does-not-exist-xyz\n")
    err = launch.explain_pip_failure(PIP_NOT_FOUND, reqs, IMAGE)
    assert err.code == launch.EXIT_USAGE and "line 2" in err.message and "no package this-package-does-not-exist-xyz" in err.message
    err = launch.explain_pip_failure(PIP_DEEP_CONFLICT, parse(launch, "numba==0.58.1\n"), IMAGE)
    assert err.code == launch.EXIT_USAGE
    assert "numba 0.58.1 depends on numpy<1.27 and >=1.22" in err.message and "the image holds numpy 2.4.6" in err.message
    err = launch.explain_pip_failure("SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED]'))", reqs, IMAGE)
    assert err.code == launch.EXIT_ERROR and "SSL_CERT_FILE" in err.message
    err = launch.explain_pip_failure("ERROR: something else\n", reqs, IMAGE)
    assert err.code == launch.EXIT_ERROR and "something else" in err.message


def test_parse_resolve_output(launch):
    assert launch.parse_resolve_output('noise\nKERASTACK-RESOLVE {"ok": true, "packages": []}\n') == {"ok": True, "packages": []}
    assert launch.parse_resolve_output("KERASTACK-RESOLVE {broken") is None
    assert launch.parse_resolve_output("") is None


# ----------------------------------------------------------------------------- --check of a derived image


def test_check_lists_the_extra_packages_of_a_derived_image(launch):
    _, text = make_lock(launch)
    labels = {"io.kerastack.variant": "cpu", **launch.derived_labels(IMAGE, IMAGE_ID, launch.parse_lock(text), [])}
    facts = {"python": "3.11.2", "tensorflow": "2.21.0", "keras": "3.12.4", "devices": ["/physical_device:CPU:0"]}
    lines, code = launch.check_report(facts, False, None, labels)
    assert code == 0
    assert f"extends:            {IMAGE} (abababababab)" in lines
    assert "extra packages:     humanize 4.17.0, pyarrow 22.0.0" in lines
    plain, _ = launch.check_report(facts, False, None, {"io.kerastack.variant": "cpu"})
    assert not any(line.startswith(("extends:", "extra packages:")) for line in plain)


# ----------------------------------------------------------------------------- the resolve probe, run here on a committed lock


def run_probe(launch, tmp_path, cell, text):
    """The probe the resolve container runs, run by this Python on a cell's committed lock files: the checks
    that come before pip (syntax, conflicts with the pins) need no network."""
    import shutil
    import subprocess
    import sys

    locks = tmp_path / "locks"
    shutil.copytree(LOCKED_CELLS / cell, locks, dirs_exist_ok=True)
    request = launch.resolve_request(parse(launch, text), "").replace('"/usr/share/kerastack/locks"', json.dumps(str(locks)))
    r = subprocess.run([sys.executable, "-c", launch.RESOLVE_PROBE], input=request, capture_output=True, text=True, timeout=60)
    return launch.parse_resolve_output(r.stdout)


def test_the_gpu_images_cuda_wheels_are_part_of_the_constraints(launch, tmp_path):
    result = run_probe(launch, tmp_path, "tf2.21.0-py3.11-gpu-cuda12.5", "humanize\nnvidia-cudnn-cu12>=9.5\n")
    assert result["error"] == "conflict"
    (conflict,) = result["conflicts"]
    assert (conflict["line"], conflict["name"], conflict["asked"], conflict["holds"], conflict["group"]) == (
        2,
        "nvidia-cudnn-cu12",
        ">=9.5",
        "9.3.0.75",
        "cuda",
    )


def test_every_lock_group_pins_and_the_probe_checks_the_whole_grammar(launch, tmp_path):
    result = run_probe(launch, tmp_path, "tf2.21.0-py3.11-cpu", "Jupyter_Server<1\nkeras==3.0.0\n")
    assert [(c["name"], c["group"]) for c in result["conflicts"]] == [("jupyter-server", "jupyter"), ("keras", "tensorflow")]
    result = run_probe(launch, tmp_path, "tf2.21.0-py3.11-cpu", "humanize\nfoo; python_version >< '3'\n")
    assert (result["error"], result["line"]) == ("syntax", 2)
