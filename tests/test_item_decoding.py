"""Items decoded from the store (``items.trusted_item``) are the items that were
written, as pydantic's own ``model_construct`` would build them."""

from __future__ import annotations

import copy
import doctest
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ownrank import Engine
from ownrank.engine import items as items_module
from ownrank.engine.items import Item, trusted_item

from conftest import WordHashEncoder


def test_items_doctests() -> None:
    failed, attempted = doctest.testmod(items_module)
    assert attempted >= 2 and failed == 0


def test_decoded_items_equal_the_written_ones(tmp_path: Path) -> None:
    written = [
        Item(id="a", title="Roses", tags=("garden",), properties={"n": 1, "l": [1, {"x": 2}]}),
        Item(id="b", body="Bread", published_at=datetime(2024, 5, 1, tzinfo=UTC)),
    ]
    with Engine(tmp_path, encoder=WordHashEncoder()) as engine:
        engine.catalog.upsert(written)
        for item in written:
            read = engine.catalog.get(item.id)
            assert read == item
            assert read.model_dump() == item.model_dump()
            assert read.model_dump_json() == item.model_dump_json()
            assert read == Item.model_construct(**read.__dict__)
            assert read.model_fields_set == set(Item.model_fields)
            assert copy.deepcopy(read) == read and read.model_copy() == read
            with pytest.raises(Exception, match="frozen"):
                read.title = "changed"  # type: ignore[misc]
            with engine._env.read() as txn:  # the item alone, as results decode it
                assert engine.catalog.store.get_item_only(txn, item.id) == item
        with engine._env.read() as txn:
            assert engine.catalog.store.get_item_only(txn, "gone") is None


def test_a_missing_or_unknown_field_is_refused() -> None:
    fields = {"id": "a", "title": "T", "body": "", "tags": (), "properties": {}}
    with pytest.raises(ValueError, match="stored fields"):
        trusted_item(fields)
    with pytest.raises(ValueError, match="stored fields"):
        trusted_item({**fields, "published_at": None, "extra": 1})
