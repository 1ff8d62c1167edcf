"""The examples in the docstrings of ``Engine``'s public methods run, over a small
catalog of six items and the fast word-hash encoder (so the suite stays fast)."""

from __future__ import annotations

import doctest
from pathlib import Path

from ownrank import Engine
from ownrank.engine import diagnostics as diagnostics_module
from ownrank.engine import engine as engine_module

from conftest import WordHashEncoder

ITEMS = [
    {"id": "a1", "title": "Pruning roses in late winter", "properties": {"topic": "gardening"}},
    {"id": "a2", "title": "Climbing roses on a north wall", "properties": {"topic": "gardening"}},
    {"id": "a3", "title": "Sourdough bread at home", "properties": {"topic": "cooking"}},
    {"id": "a4", "title": "Bread knives compared", "properties": {"topic": "cooking"}},
    {"id": "a5", "title": "Fixing a bicycle chain", "properties": {"topic": "cycling"}},
    {"id": "a6", "title": "Cycling through winter rain", "properties": {"topic": "cycling"}},
]


def test_engine_docstring_examples(tmp_path: Path) -> None:
    with Engine(tmp_path, encoder=WordHashEncoder()) as engine:
        engine.catalog.upsert(ITEMS)
        failed, attempted = doctest.testmod(
            engine_module, extraglobs={"engine": engine}, optionflags=doctest.ELLIPSIS
        )
        diag_failed, diag_attempted = doctest.testmod(
            diagnostics_module, extraglobs={"engine": engine}, optionflags=doctest.ELLIPSIS
        )
    assert attempted >= 30
    assert failed == 0
    assert diag_attempted >= 3
    assert diag_failed == 0
