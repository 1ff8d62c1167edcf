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


def test_item_cache_doctests() -> None:
    from ownrank.engine import item_cache

    failed, attempted = doctest.testmod(item_cache)
    assert attempted >= 5 and failed == 0


def test_results_name_the_items_as_stored_now_each_a_copy_of_its_own(tmp_path: Path) -> None:
    """Result items come from the decoded-item cache: each equals the stored item as of
    the call (after an update or a delete too), and changing one (its properties are a
    plain dict, nested values included) changes no later result."""
    nested = {"n": 1, "l": [1, {"x": 2}]}
    written = [
        Item(id="a", title="Roses red", properties=nested),
        Item(id="b", title="Roses white", properties={"n": 2}),
        Item(id="c", title="Tulips", properties={"n": 3}),
    ]
    with Engine(tmp_path, encoder=WordHashEncoder()) as engine:
        engine.catalog.upsert(written)

        def results() -> dict[str, Item]:
            found = {r.item_id: r.item for r in engine.recommend("nobody", 10)}
            assert found == {i: engine.catalog.get(i) for i in found}
            return found

        first = results()
        assert set(first) == {"a", "b", "c"} and first["a"].properties == nested
        first["a"].properties["l"][1]["x"] = 99  # the caller changes its copy
        first["b"].properties["n"] = 99
        again = results()
        assert again["a"].properties == nested and again["b"].properties == {"n": 2}
        assert again["a"] is not first["a"]
        engine.catalog.update_properties("b", {"n": 5})
        engine.catalog.delete(["c"])
        later = results()
        assert later["b"].properties == {"n": 5} and "c" not in later
        hits = {h.item_id: h.item for h in engine.search("roses", user_id=None, n=5)}
        assert hits["a"].properties == nested
