"""CONTRIBUTING.md's map checks itself: every path it names exists, and every name it places in
a module (``Name`` (`path.py`)) is defined there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAP = (REPO / "CONTRIBUTING.md").read_text(encoding="utf-8")
PATHS = sorted(set(re.findall(r"(?<![\w/])((?:alta|tests|docs|benchmarks|examples)/[\w./*-]*[\w*/])", MAP)))
PLACED = sorted(set(re.findall(r"`([A-Za-z_][\w.]*)`\s*\(`((?:alta|tests)/[\w./-]+\.py)`\)", MAP)))


def test_the_map_names_paths():
    assert len(PATHS) > 30 and len(PLACED) > 10


@pytest.mark.parametrize("path", PATHS)
def test_every_path_the_map_names_exists(path):
    if "*" in path:
        assert list(REPO.glob(path)), f"CONTRIBUTING.md names {path}, which matches nothing"
    else:
        assert (REPO / path).exists(), f"CONTRIBUTING.md names {path}, which does not exist"


@pytest.mark.parametrize("name, path", PLACED)
def test_every_name_the_map_places_is_defined_there(name, path):
    text = (REPO / path).read_text(encoding="utf-8")
    last = name.split(".")[-1]
    defined = re.search(rf"^\s*(?:def|class)\s+{re.escape(last)}\b|^\s*{re.escape(last)}\s*[:=]|\b{re.escape(last)}\b\s*=",
                        text, re.MULTILINE)
    assert defined or f'"{last}"' in text, f"CONTRIBUTING.md places {name} in {path}, which does not define it"
