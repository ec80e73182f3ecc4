"""Docker's reference grammar, implemented once in kerastack/reference.py and carried verbatim by scripts/launch."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kerastack import reference
from tests.conftest import ROOT, load_launcher

MARKERS = re.compile(r"# ---- reference grammar: begin.*?# ---- reference grammar: end\n", re.S)
DIGEST = "sha256:" + "a" * 64

GOOD = [
    "python",
    "python:3.11",
    "library/python:3.11-slim",
    "docker.io/library/python:3.11-slim@" + DIGEST,
    "localhost/kj",
    "localhost:5000/kj:latest",
    "127.0.0.1:5000/kerastack/i12:2.21.0-py3.11-cpu",
    "[::1]:5000/kj",
    "ghcr.io/kerastack/keras-jupyter:latest-gpu",
    "a.b-c.example:65535/x__y/z.w-v:TAG_1.2-3",
    "kj@" + DIGEST,
    "r.example/" + "a" * (255 - len("r.example/")),
]
BAD = [
    ("https://ghcr.io/kerastack/kj:1", "is a URL"),
    ("ghcr..io/kj", "empty DNS label"),
    (".ghcr.io/kj", "empty DNS label"),
    ("ghcr.io./kj", "empty DNS label"),
    ("-ghcr.io/kj", "DNS label"),
    ("ghcr.io:0/kj", "from 1 to 65535"),
    ("ghcr.io:65536/kj", "from 1 to 65535"),
    ("ghcr.io:/kj", "from 1 to 65535"),
    ("ghcr.io:\u0665\u0660\u0660\u0660/kj", "from 1 to 65535"),
    ("[::g]:5000/kj", "not an IPv6 address"),
    ("r.example/" + "a" * (256 - len("r.example/")), "at most 255"),
    ("ghcr.io/Kerastack/kj", "lowercase"),
    ("ghcr.io/kerastack//kj", "lowercase"),
    ("ghcr.io/kj-", "lowercase"),
    ("kj:.tag", "tag"),
    ("kj:" + "t" * 129, "tag"),
    ("kj@sha256:abc", "digest"),
    ("kj@sha256:" + "A" * 64, "digest"),
    ("", "empty"),
]


@pytest.fixture(scope="module")
def launch():
    return load_launcher()


def test_the_launcher_carries_the_grammar_verbatim():
    ours = MARKERS.search((ROOT / "kerastack" / "reference.py").read_text())
    theirs = MARKERS.search((ROOT / "scripts" / "launch").read_text())
    assert ours and theirs, "both files must keep the `reference grammar` markers"
    assert ours.group(0) == theirs.group(0), "copy the block between the markers from kerastack/reference.py into scripts/launch"


@pytest.mark.parametrize("ref", GOOD)
def test_valid_references_parse(ref):
    reference.parse_reference(ref)


@pytest.mark.parametrize("ref, problem", BAD, ids=[b[1] + str(i) for i, b in enumerate(BAD)])
def test_invalid_references_name_what_is_wrong(ref, problem):
    with pytest.raises(reference.BadReference, match=re.escape(problem)):
        reference.parse_reference(ref)


@pytest.mark.parametrize("ref", GOOD + [b[0] for b in BAD])
def test_the_launcher_agrees_on_the_corpus(launch, ref):
    assert _verdict(launch.parse_reference, launch.BadReference, ref) == _verdict(reference.parse_reference, reference.BadReference, ref)


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(alphabet=st.sampled_from("aZ09.-_:/@[]sha256é٣ "), max_size=40) | st.text(max_size=20))
def test_the_launcher_agrees_on_random_references(launch, ref):
    assert _verdict(launch.parse_reference, launch.BadReference, ref) == _verdict(reference.parse_reference, reference.BadReference, ref)


def _verdict(parse, error, ref):
    try:
        return parse(ref)
    except error as exc:
        return str(exc)


def test_the_repository_length_counts_the_host():
    reference.check_repository("ghcr.io", "a" * (255 - len("ghcr.io/")))
    with pytest.raises(reference.BadReference, match="at most 255"):
        reference.check_repository("ghcr.io", "a" * (256 - len("ghcr.io/")))


@pytest.mark.parametrize(
    "args",
    [
        ["--image", "https://ghcr.io/kerastack/kj:1"],
        ["--image", "ghcr..io/kj:1"],
        ["--image", "ghcr.io:99999/kj"],
        ["--repo", "ghcr.io/" + "k" * 260],
        ["--repo", "Ghcr.io:0/kj"],
        ["--tag", "\u0662.21"],
    ],
)
def test_the_launcher_refuses_bad_references_with_exit_2(launch, tmp_path, args):
    with pytest.raises(launch.LaunchError) as info:
        launch.parse_args(args + ["--dir", str(tmp_path)], environ={}, token_factory=lambda: "t" * 48)
    assert info.value.code == 2
