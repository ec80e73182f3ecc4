"""tests/unit/data/docker-stacks-applicability.toml: which of docker-stacks' image tests apply, and why not.

Every entry names one of their tests; an applicable one, or one checked another way, names the tests of
ours that check the same behaviour, and those tests exist; one that does not apply says why.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = tomllib.loads((ROOT / "tests" / "unit" / "data" / "docker-stacks-applicability.toml").read_text())
THEIR_IMAGES = ("docker-stacks-foundation", "base-notebook", "minimal-notebook", "scipy-notebook", "tensorflow-notebook")


def test_the_source_is_one_commit_of_docker_stacks():
    assert DATA["source"]["repository"] == "jupyter/docker-stacks"
    assert re.fullmatch(r"[0-9a-f]{40}", DATA["source"]["commit"])


def entries():
    return [(kind, e) for kind in ("applies", "another_way", "does_not_apply") for e in DATA[kind]]


@pytest.mark.parametrize(("kind", "entry"), entries(), ids=lambda v: v if isinstance(v, str) else v["test"])
def test_every_entry_names_their_test_and_says_why_or_which_of_ours(kind, entry):
    assert entry["test"].strip()
    if kind == "applies":
        assert entry["test"].split("/")[0] in THEIR_IMAGES, f"{entry['test']}: not one of the images whose tests apply"
    if kind in ("another_way", "does_not_apply"):
        assert len(entry.get("reason", "")) > 20, f"{entry['test']}: say why it does not apply as it is"
    if kind in ("applies", "another_way"):
        assert entry["ours"], f"{entry['test']}: name the test of ours that checks the same"


def our_tests():
    return sorted({name for _, e in entries() for name in e.get("ours", ())})


@pytest.mark.parametrize("node", our_tests())
def test_the_tests_of_ours_it_names_exist(node):
    path, _, function = node.partition("::")
    source = (ROOT / path).read_text()
    assert re.search(rf"^def {re.escape(function)}\(", source, flags=re.M), f"{node} does not exist"


def test_no_test_is_listed_twice():
    names = [e["test"] for _, e in entries()]
    assert len(names) == len(set(names))


def test_the_import_list_has_each_module_once():
    modules = DATA["imports"]["modules"]
    assert modules and len(modules) == len(set(modules))
