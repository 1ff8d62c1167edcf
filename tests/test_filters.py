"""Property filters: parsing, validation, column-wise evaluation over a PropertyTable."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ownrank import Item
from ownrank.engine.filters import (
    MAX_DEPTH,
    MAX_IN_VALUES,
    MISSING,
    Column,
    Leaf,
    Node,
    evaluate,
    parse_filter,
)
from ownrank.engine.property_table import PropertyTable, filter_fields
from ownrank.errors import InvalidFilterError, InvalidInputError
from ownrank.storage.catalog_store import StoredItem


def table_of(rows: dict[int, dict[str, Any]]) -> PropertyTable:
    table = PropertyTable()
    for row, fields in rows.items():
        table.set(row, fields)
    return table


def match(table: PropertyTable, spec: Any) -> list[int]:
    rows: list[int] = table.matching_rows(parse_filter(spec)).tolist()
    return rows


# A small catalog: row -> fields, with gaps between row numbers as in a real catalog.
ROWS: dict[int, dict[str, Any]] = {
    0: {"color": "red", "size": 3, "price": 9.5, "on_sale": True, "colors": ["red", "blue"]},
    2: {"color": "blue", "size": 1, "price": 20.0, "on_sale": False, "colors": ["blue"]},
    5: {"color": "Red", "size": 1.0, "price": 3, "on_sale": 1, "note": None},
    7: {"color": "1", "size": 0, "on_sale": 0, "colors": []},
    9: {"size": "3", "price": 20, "colors": ["green", 3, True]},
}


@pytest.fixture
def table() -> PropertyTable:
    return table_of(ROWS)


# -- parsing ----------------------------------------------------------------------------


def test_parse_builds_the_expected_tree() -> None:
    assert parse_filter({"a": 1}) == Leaf("a", "$eq", 1)
    assert parse_filter({"a": {"$gte": 1, "$lt": 5}}) == Node(
        "and", (Leaf("a", "$gte", 1), Leaf("a", "$lt", 5))
    )
    assert parse_filter({"$or": [{"a": 1}, {"b": 2}]}) == Node(
        "or", (Leaf("a", "$eq", 1), Leaf("b", "$eq", 2))
    )
    assert parse_filter({"$not": {"a": None}}) == Node("not", (Leaf("a", "$eq", None),))
    assert parse_filter({"a": 1, "b": "x"}) == Node(
        "and", (Leaf("a", "$eq", 1), Leaf("b", "$eq", "x"))
    )


# -- equality ----------------------------------------------------------------------------


def test_equality_on_strings_is_exact_and_case_sensitive(table: PropertyTable) -> None:
    assert match(table, {"color": "red"}) == [0]
    assert match(table, {"color": "Red"}) == [5]
    assert match(table, {"color": {"$eq": "blue"}}) == [2]
    assert match(table, {"color": "purple"}) == []


def test_equality_on_numbers_ignores_int_float_difference(table: PropertyTable) -> None:
    assert match(table, {"size": 1}) == [2, 5]  # 1 and 1.0
    assert match(table, {"size": 1.0}) == [2, 5]
    assert match(table, {"price": 20}) == [2, 9]  # 20.0 and 20
    assert match(table, {"price": 9.5}) == [0]
    assert match(table, {"size": 3}) == [0]  # the string "3" of row 9 is not the number 3


def test_strings_and_numbers_never_equal(table: PropertyTable) -> None:
    assert match(table, {"size": "3"}) == [9]
    assert match(table, {"color": 1}) == []  # row 7 holds the string "1"


def test_booleans_do_not_equal_one_or_zero(table: PropertyTable) -> None:
    assert match(table, {"on_sale": True}) == [0]
    assert match(table, {"on_sale": False}) == [2]
    assert match(table, {"on_sale": 1}) == [5]
    assert match(table, {"on_sale": 0}) == [7]
    assert match(table, {"on_sale": {"$in": [1, 0]}}) == [5, 7]
    assert match(table, {"on_sale": {"$in": [True]}}) == [0]


def test_null_equality_matches_null_but_not_missing(table: PropertyTable) -> None:
    assert match(table, {"note": None}) == [5]
    assert match(table, {"note": {"$exists": True}}) == [5]


def test_missing_fields_match_only_ne_nin_and_not_exists(table: PropertyTable) -> None:
    # price is missing on row 7, color on row 9
    assert match(table, {"price": {"$ne": 20}}) == [0, 5, 7]
    assert match(table, {"price": {"$nin": [20, 9.5]}}) == [5, 7]
    assert match(table, {"color": {"$ne": "red"}}) == [2, 5, 7, 9]
    assert match(table, {"price": {"$exists": False}}) == [7]
    assert match(table, {"price": {"$exists": True}}) == [0, 2, 5, 9]
    assert match(table, {"nowhere": {"$exists": False}}) == [0, 2, 5, 7, 9]
    assert match(table, {"nowhere": {"$ne": 1}}) == [0, 2, 5, 7, 9]
    for spec in ({"nowhere": None}, {"nowhere": {"$in": [None, 0, ""]}}, {"nowhere": {"$gt": 0}}):
        assert match(table, spec) == []


def test_in_and_nin(table: PropertyTable) -> None:
    assert match(table, {"color": {"$in": ["red", "blue"]}}) == [0, 2]
    assert match(table, {"color": {"$nin": ["red", "blue"]}}) == [5, 7, 9]
    assert match(table, {"color": {"$in": []}}) == []
    assert match(table, {"color": {"$nin": []}}) == [0, 2, 5, 7, 9]
    assert match(table, {"size": {"$in": [0, 3.0]}}) == [0, 7]


def test_in_accepts_exactly_max_in_values(table: PropertyTable) -> None:
    values = list(range(MAX_IN_VALUES))
    assert match(table, {"size": {"$in": values}}) == [0, 2, 5, 7]


# -- ranges ------------------------------------------------------------------------------


def test_numeric_ranges(table: PropertyTable) -> None:
    assert match(table, {"price": {"$gt": 9.5}}) == [2, 9]
    assert match(table, {"price": {"$gte": 9.5}}) == [0, 2, 9]
    assert match(table, {"price": {"$lt": 9.5}}) == [5]
    assert match(table, {"price": {"$lte": 9.5}}) == [0, 5]
    assert match(table, {"price": {"$gte": 3, "$lt": 20}}) == [0, 5]  # several ops = AND
    # only numbers compare: booleans, strings and missing values never match a range
    assert match(table, {"on_sale": {"$gte": 0}}) == [5, 7]
    assert match(table, {"size": {"$gte": 3}}) == [0]
    assert match(table, {"color": {"$gt": -1e300}}) == []


DATED: dict[int, dict[str, Any]] = {
    1: {"released": "2023-06-01"},
    2: {"released": "2024-01-15T08:30:00Z"},
    3: {"released": "2024-01-15T10:30:00+02:00"},  # 08:30 UTC, same instant as row 2
    4: {"released": "2025-12-31T23:59:59"},  # naive: read as UTC
    5: {"released": "not a date"},
    6: {},
}


def test_date_ranges_on_iso_string_properties() -> None:
    table = table_of(DATED)
    assert match(table, {"released": {"$gte": "2024-01-01"}}) == [2, 3, 4]
    assert match(table, {"released": {"$lt": "2024-01-15T08:30:00Z"}}) == [1]
    assert match(table, {"released": {"$lte": "2024-01-15T08:30:00+00:00"}}) == [1, 2, 3]
    assert match(table, {"released": {"$gt": "2024-01-15T09:30:00+01:00"}}) == [4]
    assert match(table, {"released": {"$gte": "2023-01-01", "$lt": "2024-01-01"}}) == [1]
    assert match(table, {"released": {"$gt": "2025-12-31T23:59:59Z"}}) == []


def stored(item_id: str, row: int, **fields: Any) -> StoredItem:
    item = Item(id=item_id, title=f"title of {item_id}", **fields)
    return StoredItem(item, item.content_hash(), row, 0.0, 0.0)


def test_filter_fields_exposes_properties_id_tags_and_published_at() -> None:
    s = stored(
        "a-1",
        4,
        tags=("news", "tech"),
        properties={"lang": "en", "score": 2},
        published_at="2024-03-01T12:00:00+02:00",
    )
    fields = filter_fields(s)
    assert fields == {
        "lang": "en",
        "score": 2,
        "id": "a-1",
        "tags": ["news", "tech"],
        "published_at": "2024-03-01T10:00:00+00:00",
    }
    assert "published_at" not in filter_fields(stored("b", 5))
    assert filter_fields(stored("b", 5))["tags"] == []


@pytest.fixture
def item_table() -> PropertyTable:
    items = [
        stored("a", 10, tags=("news", "tech"), published_at="2024-01-01T00:00:00Z"),
        stored("b", 11, tags=("sports",), published_at="2024-06-30T23:00:00-02:00"),
        stored("c", 12, tags=("tech",), properties={"lang": "de"}),
        stored("d", 13, published_at=datetime(2023, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ]
    table = PropertyTable()
    for s in items:
        table.set(s.row, filter_fields(s))
    return table


def test_date_ranges_on_published_at(item_table: PropertyTable) -> None:
    assert match(item_table, {"published_at": {"$gte": "2024-01-01"}}) == [10, 11]
    assert match(item_table, {"published_at": {"$lt": "2024-01-01T00:00:00Z"}}) == [13]
    # b was published 2024-07-01T01:00 UTC
    assert match(item_table, {"published_at": {"$gt": "2024-07-01T00:30:00Z"}}) == [11]
    assert match(item_table, {"published_at": {"$lte": "2024-07-01T02:30:00+02:00"}}) == [10, 13]
    assert match(item_table, {"published_at": {"$exists": False}}) == [12]


def test_tags_and_id(item_table: PropertyTable) -> None:
    assert match(item_table, {"tags": "tech"}) == [10, 12]
    assert match(item_table, {"tags": {"$in": ["sports", "news"]}}) == [10, 11]
    assert match(item_table, {"tags": {"$nin": ["tech"]}}) == [11, 13]
    assert match(item_table, {"tags": {"$ne": "tech"}}) == [11, 13]
    assert match(item_table, {"id": "c"}) == [12]
    assert match(item_table, {"id": {"$in": ["a", "d", "zz"]}}) == [10, 13]
    assert match(item_table, {"tags": "tech", "lang": "de"}) == [12]


def test_list_valued_properties_match_when_any_element_equals(table: PropertyTable) -> None:
    assert match(table, {"colors": "blue"}) == [0, 2]
    assert match(table, {"colors": "red"}) == [0]
    assert match(table, {"colors": 3}) == [9]
    assert match(table, {"colors": True}) == [9]
    assert match(table, {"colors": 1}) == []  # True in a list is not 1 either
    assert match(table, {"colors": {"$in": ["green", "red"]}}) == [0, 9]
    assert match(table, {"colors": {"$ne": "blue"}}) == [5, 7, 9]  # missing and [] included
    assert match(table, {"colors": {"$exists": True}}) == [0, 2, 7, 9]


def test_nested_values_inside_lists_and_dict_values_never_equal() -> None:
    table = table_of({0: {"x": [[1], {"a": 1}, 2]}, 1: {"x": {"a": 1}}})
    assert match(table, {"x": 2}) == [0]
    assert match(table, {"x": 1}) == []
    assert match(table, {"x": {"$exists": True}}) == [0, 1]
    assert match(table, {"x": {"$ne": 2}}) == [1]


# -- logic -------------------------------------------------------------------------------


def test_and_or_not_and_implicit_and(table: PropertyTable) -> None:
    assert match(table, {"color": "red", "size": 3}) == [0]
    assert match(table, {"color": "red", "size": 1}) == []
    assert match(table, {"$and": [{"size": 1}, {"price": {"$lt": 10}}]}) == [5]
    assert match(table, {"$or": [{"color": "red"}, {"price": 20}]}) == [0, 2, 9]
    assert match(table, {"$or": [{"color": "red"}]}) == [0]
    assert match(table, {"$not": {"color": "red"}}) == [2, 5, 7, 9]
    assert match(table, {"$not": {"$or": [{"size": 1}, {"size": 0}]}}) == [0, 9]
    assert match(
        table,
        {"$or": [{"$and": [{"size": {"$gte": 1}}, {"on_sale": True}]}, {"price": 20}], "size": "3"},
    ) == [9]


def test_exists(table: PropertyTable) -> None:
    assert match(table, {"color": {"$exists": True}}) == [0, 2, 5, 7]
    assert match(table, {"color": {"$exists": False}}) == [9]


def test_evaluate_and_column_directly() -> None:
    columns = {
        "n": Column([1, 2.5, MISSING, True, "7", [2.5]]),
        "d": Column(["2024-01-01", 0, MISSING, "junk", None, "2020-02-02T00:00:00Z"]),
    }
    n = columns["n"]
    np.testing.assert_array_equal(n.present(), [True, True, False, True, True, True])
    np.testing.assert_array_equal(np.isnan(n.numbers()), [False, False, True, True, True, True])
    assert n.numbers()[:2].tolist() == [1.0, 2.5]
    dates = columns["d"].dates()
    assert dates[0] == datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    assert np.isnan(dates[[1, 2, 3, 4]]).all()  # numbers are never dates

    def run(spec: Any) -> list[bool]:
        mask: list[bool] = evaluate(parse_filter(spec), columns.__getitem__, 6).tolist()
        return mask

    assert run({"n": 2.5}) == [False, True, False, False, False, True]
    assert run({"n": {"$gt": 1}}) == [False, True, False, False, False, False]
    assert run({"d": {"$lt": "2021-01-01"}}) == [False, False, False, False, False, True]
    assert run({"n": {"$exists": False}, "d": {"$exists": True}}) == [False] * 6


def test_table_updates_and_removals_invalidate_cached_columns() -> None:
    table = table_of({1: {"x": 1}, 2: {"x": 2}})
    assert match(table, {"x": {"$gte": 1}}) == [1, 2]
    table.set(3, {"x": 3})
    table.set(1, {"x": 0})
    assert match(table, {"x": {"$gte": 1}}) == [2, 3]
    table.remove(2)
    table.remove(99)  # unknown rows are ignored
    assert len(table) == 2
    assert match(table, {"x": {"$gte": 1}}) == [3]
    assert table.rows().tolist() == [1, 3]


def test_rows_are_found_by_item_id_across_reembedding_and_removal() -> None:
    """An item re-embedded gets a new row; the catch-up may set the new row before it
    removes the old one, and the id must then still lead to the new row."""
    table = table_of({1: {"id": "a"}, 2: {"id": "b"}})
    assert (table.row_of("a"), table.row_of("b"), table.row_of("c")) == (1, 2, None)
    table.set(3, {"id": "a"})  # "a" re-embedded: new row first
    table.remove(1)  # then its old row goes
    assert table.row_of("a") == 3
    assert table.item_ids_of([1, 2, 3, 4]).tolist() == [None, "b", "a", None]
    table.set(2, {"id": "c"})  # a row reused for another id drops the old mapping
    assert (table.row_of("b"), table.row_of("c")) == (None, 2)
    assert table.item_ids_of([2]).tolist() == ["c"]
    table.remove(3)
    assert table.row_of("a") is None
    assert table.item_ids_of([3]).tolist() == [None]
    table.set(50_000, {"id": "far"})  # rows past the id array's size grow it
    assert table.item_ids_of([50_000, 49_999, 2, 10**9]).tolist() == ["far", None, "c", None]


def test_empty_table_matches_nothing() -> None:
    assert match(PropertyTable(), {"x": {"$ne": 1}}) == []


# -- invalid filters ---------------------------------------------------------------------


def nested(depth: int, logical: str) -> dict[str, Any]:
    """``{"color": "red"}`` wrapped in ``depth`` levels of ``logical``."""
    spec: dict[str, Any] = {"color": "red"}
    for _ in range(depth):
        spec = {"$not": spec} if logical == "$not" else {logical: [spec]}
    return spec


INVALID_FILTERS: list[tuple[str, Any]] = [
    ("not a dict: list", [{"x": 1}]),
    ("not a dict: string", "x = 1"),
    ("not a dict: None", None),
    ("empty dict", {}),
    ("empty operator object", {"x": {}}),
    ("empty key", {"": 1}),
    ("non-string key", {1: "a"}),
    ("unknown operator", {"x": {"$regex": "a.*"}}),
    ("operator without $", {"x": {"gt": 1}}),
    ("unknown logical", {"$xor": [{"x": 1}]}),
    ("unknown logical $nor", {"$nor": [{"x": 1}]}),
    ("top-level field operator", {"$eq": 1}),
    ("$and not a list", {"$and": {"x": 1}}),
    ("$or empty list", {"$or": []}),
    ("$and with a non-dict child", {"$and": [{"x": 1}, 2]}),
    ("$not not a dict", {"$not": [{"x": 1}]}),
    ("$not empty", {"$not": {}}),
    ("$in not a list", {"x": {"$in": "abc"}}),
    ("$nin not a list", {"x": {"$nin": 3}}),
    ("$in a tuple", {"x": {"$in": (1, 2)}}),
    ("too many $in values", {"x": {"$in": list(range(MAX_IN_VALUES + 1))}}),
    ("too many $nin values", {"x": {"$nin": ["v"] * (MAX_IN_VALUES + 1)}}),
    ("$in with a nested list", {"x": {"$in": [[1]]}}),
    ("$in with a dict", {"x": {"$in": [{"a": 1}]}}),
    ("$in with NaN", {"x": {"$in": [float("nan")]}}),
    ("range operand bool", {"x": {"$gt": True}}),
    ("range operand None", {"x": {"$lt": None}}),
    ("range operand list", {"x": {"$gte": [1]}}),
    ("range operand non-date string", {"x": {"$lte": "yesterday"}}),
    ("range operand numeric string", {"x": {"$gt": "5"}}),
    ("range operand NaN", {"x": {"$gt": float("nan")}}),
    ("range operand infinity", {"x": {"$lt": float("inf")}}),
    ("equality NaN", {"x": float("nan")}),
    ("$eq NaN", {"x": {"$eq": float("nan")}}),
    ("$ne -infinity", {"x": {"$ne": float("-inf")}}),
    ("equality with nested dict (read as operators)", {"x": {"a": 1}}),
    ("$eq with a dict", {"x": {"$eq": {"a": 1}}}),
    ("$ne with a dict", {"x": {"$ne": {"$gt": 1}}}),
    ("equality with a list", {"x": [1, 2]}),
    ("equality with a tuple", {"x": (1,)}),
    ("$exists not a bool", {"x": {"$exists": 1}}),
    ("$exists string", {"x": {"$exists": "true"}}),
    ("one bad op among good ones", {"x": {"$gt": 1, "$bogus": 2}}),
    ("bad leaf deep inside", {"$or": [{"x": 1}, {"$and": [{"y": {"$in": 5}}]}]}),
    ("nested $not deeper than MAX_DEPTH", nested(MAX_DEPTH + 1, "$not")),
    ("nested $and deeper than MAX_DEPTH", nested(MAX_DEPTH + 1, "$and")),
    ("nested $or far deeper than MAX_DEPTH", nested(10 * MAX_DEPTH, "$or")),
]


@pytest.mark.parametrize(
    "spec", [spec for _, spec in INVALID_FILTERS], ids=[name for name, _ in INVALID_FILTERS]
)
def test_invalid_filters_raise_invalid_filter_error(spec: Any) -> None:
    with pytest.raises(InvalidFilterError) as info:
        parse_filter(spec)
    assert isinstance(info.value, InvalidInputError)
    assert isinstance(info.value, ValueError)
    assert info.value.code == "invalid_filter"


@pytest.mark.parametrize("logical", ["$not", "$and", "$or"])
@pytest.mark.parametrize("depth", [MAX_DEPTH - 1, MAX_DEPTH])
def test_nesting_up_to_max_depth_is_accepted(
    logical: str, depth: int, table: PropertyTable
) -> None:
    flips = depth % 2 == 1 and logical == "$not"
    assert match(table, nested(depth, logical)) == ([2, 5, 7, 9] if flips else [0])


# -- bugs --------------------------------------------------------------------------------


def test_huge_integer_range_operand_is_rejected_or_evaluated() -> None:
    table = table_of({0: {"x": 1}})
    try:
        expr = parse_filter({"x": {"$gt": 10**400}})  # json.loads("1" + "0" * 400) gives this
    except InvalidFilterError:
        return
    assert table.matching_rows(expr).tolist() == []


def test_string_never_equals_a_boolean() -> None:
    table = table_of({0: {"x": "\x00true"}, 1: {"x": True}})
    assert match(table, {"x": True}) == [1]


def test_numeric_property_does_not_match_a_date_range() -> None:
    table = table_of({0: {"year": 2021}, 1: {"year": "2021-05-01"}})
    assert match(table, {"year": {"$lt": "2022-01-01"}}) == [1]


# -- property test against a reference evaluator -----------------------------------------

FIELDS = ["a", "b", "d"]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([-1.5, 0.0, 0.5, 1.0, 2.0, 3.25]),
    st.sampled_from(["", "a", "b", "1", "true"]),
)
DATE_STRINGS = st.sampled_from(
    ["2024-01-01", "2024-01-01T12:00:00Z", "2024-01-01T13:00:00+02:00", "2023-06-30T00:00:00"]
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3))
# "d" holds dates and non-numbers (numbers under a date range never match: tested above)
NON_NUMBERS = st.one_of(st.none(), st.booleans(), st.sampled_from(["", "a", "1", "2024"]))
ROW_FIELDS = st.fixed_dictionaries(
    {}, optional={"a": VALUES, "b": VALUES, "d": st.one_of(DATE_STRINGS, NON_NUMBERS)}
)
TABLES = st.dictionaries(st.integers(0, 40), ROW_FIELDS, max_size=12)
NUMBERS = st.one_of(st.integers(-3, 3), st.sampled_from([-1.5, 0.5, 1.0, 2.0]))
LEAVES = st.one_of(
    st.builds(lambda f, v: {f: v}, st.sampled_from(FIELDS), SCALARS),
    st.builds(
        lambda f, op, v: {f: {op: v}},
        st.sampled_from(FIELDS),
        st.sampled_from(["$eq", "$ne"]),
        SCALARS,
    ),
    st.builds(
        lambda f, op, v: {f: {op: v}},
        st.sampled_from(FIELDS),
        st.sampled_from(["$in", "$nin"]),
        st.lists(SCALARS, max_size=3),
    ),
    st.builds(
        lambda f, op, v: {f: {op: v}},
        st.sampled_from(["a", "b"]),
        st.sampled_from(["$gt", "$gte", "$lt", "$lte"]),
        NUMBERS,
    ),
    st.builds(
        lambda op, v: {"d": {op: v}}, st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), DATE_STRINGS
    ),
    st.builds(lambda f, v: {f: {"$exists": v}}, st.sampled_from(FIELDS), st.booleans()),
)
FILTERS = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.builds(lambda fs: {"$and": fs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda fs: {"$or": fs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda f: {"$not": f}, inner),
    ),
    max_leaves=4,
)

_ABSENT = object()


def ref_scalar_equal(value: Any, operand: Any) -> bool:
    if isinstance(value, bool) or isinstance(operand, bool):
        return isinstance(value, bool) and isinstance(operand, bool) and value == operand
    if isinstance(value, str) != isinstance(operand, str):
        return False
    return bool(value == operand)


def ref_equal(value: Any, operand: Any) -> bool:
    if value is _ABSENT:
        return False
    if isinstance(value, list):
        return any(ref_scalar_equal(v, operand) for v in value)
    return ref_scalar_equal(value, operand)


def ref_timestamp(text: str) -> float | None:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def ref_compare(value: Any, op: str, operand: Any) -> bool:
    if isinstance(operand, str):  # a date range: only ISO-string values take part
        left = ref_timestamp(value) if isinstance(value, str) else None
        right = ref_timestamp(operand)
    else:  # a number range: only numbers (not booleans) take part
        number = isinstance(value, int | float) and not isinstance(value, bool)
        left, right = (value if number else None), operand
    if left is None or right is None:
        return False
    return {
        "$gt": left > right,
        "$gte": left >= right,
        "$lt": left < right,
        "$lte": left <= right,
    }[op]


def ref_holds(spec: dict[str, Any], row: dict[str, Any]) -> bool:
    """A filter evaluated on one row, straight from the grammar."""
    results = []
    for key, cond in spec.items():
        if key == "$and":
            results.append(all(ref_holds(c, row) for c in cond))
        elif key == "$or":
            results.append(any(ref_holds(c, row) for c in cond))
        elif key == "$not":
            results.append(not ref_holds(cond, row))
        else:
            value = row.get(key, _ABSENT)
            ops = cond if isinstance(cond, dict) else {"$eq": cond}
            for op, operand in ops.items():
                if op == "$eq":
                    results.append(ref_equal(value, operand))
                elif op == "$ne":
                    results.append(not ref_equal(value, operand))
                elif op == "$in":
                    results.append(any(ref_equal(value, o) for o in operand))
                elif op == "$nin":
                    results.append(not any(ref_equal(value, o) for o in operand))
                elif op == "$exists":
                    results.append((value is not _ABSENT) == operand)
                else:
                    results.append(value is not _ABSENT and ref_compare(value, op, operand))
    return all(results)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(rows=TABLES, spec=FILTERS)
def test_matching_rows_equals_reference_evaluation(
    rows: dict[int, dict[str, Any]], spec: dict[str, Any]
) -> None:
    table = table_of(rows)
    expected = [r for r in sorted(rows) if ref_holds(spec, rows[r])]
    assert table.matching_rows(parse_filter(spec)).tolist() == expected
