"""Property filters: a small, validated query language evaluated column-wise.

Grammar (MongoDB/Chroma style, JSON-friendly)::

    filter  := {field: scalar}                    equality
             | {field: {op: operand, ...}}        several ops on one field = AND
             | {"$and": [filter, ...]} | {"$or": [filter, ...]} | {"$not": filter}
    op      := $eq $ne $in $nin $gt $gte $lt $lte $exists

Several keys in one object are AND-ed. A field is a property name, or one of
the item fields ``id``, ``tags`` and ``published_at``. Ranges compare numbers
with numbers, or dates when the operand is an ISO-8601 string: then property
values that are ISO-8601 strings (and ``published_at``) are compared as dates,
and numbers never match. Equality on a
list-valued property (and on ``tags``) matches when any element is equal.
Booleans equal only booleans (``true`` does not match ``1``). Missing fields
match ``$ne``/``$nin``/``{"$exists": false}`` and nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InvalidFilterError

_RANGE_OPS = {"$gt", "$gte", "$lt", "$lte"}
_ALL_OPS = _RANGE_OPS | {"$eq", "$ne", "$in", "$nin", "$exists"}
MAX_IN_VALUES = 1_000
MAX_DEPTH = 16

Mask = npt.NDArray[np.bool_]
Filter = Mapping[str, Any]


def parse_datetime(value: str) -> float | None:
    """Seconds since the epoch for an ISO-8601 string, else None."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


class _Missing:
    """Marker stored in columns for a field an item does not have."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING = _Missing()


class _BoolKey:
    """Equality key of a boolean: equal only to itself, never to 0, 1 or a string."""

    def __init__(self, value: bool) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"<{str(self.value).lower()}>"


_TRUE, _FALSE = _BoolKey(True), _BoolKey(False)


def _key(value: Any) -> Any:
    """Equality key: keeps booleans apart from the integers 0 and 1."""
    if isinstance(value, bool):
        return _TRUE if value else _FALSE
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# -- the parsed tree ----------------------------------------------------------------------


@dataclass(frozen=True)
class Leaf:
    field: str
    op: str
    operand: Any


@dataclass(frozen=True)
class Node:
    kind: str  # "and" | "or" | "not"
    children: tuple[Leaf | Node, ...]


Expr = Leaf | Node


def _check_scalar(value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidFilterError(f"{where}: numbers must be finite")
    if not (value is None or isinstance(value, str | int | float | bool)):
        raise InvalidFilterError(f"{where}: expected a string, number, boolean or null")


def _parse_ops(field: str, spec: Mapping[str, Any]) -> list[Expr]:
    if not spec:
        raise InvalidFilterError(f"{field}: empty operator object")
    out: list[Expr] = []
    for op, operand in spec.items():
        where = f"{field}.{op}"
        if op not in _ALL_OPS:
            raise InvalidFilterError(f"{where}: unknown operator (use one of {sorted(_ALL_OPS)})")
        if op in ("$in", "$nin"):
            if not isinstance(operand, list):
                raise InvalidFilterError(f"{where}: expects a list")
            if len(operand) > MAX_IN_VALUES:
                raise InvalidFilterError(f"{where}: at most {MAX_IN_VALUES} values")
            for value in operand:
                _check_scalar(value, where)
        elif op == "$exists":
            if not isinstance(operand, bool):
                raise InvalidFilterError(f"{where}: expects true or false")
        elif op in _RANGE_OPS:
            if isinstance(operand, bool) or not isinstance(operand, int | float | str):
                raise InvalidFilterError(f"{where}: expects a number or an ISO-8601 date")
            if isinstance(operand, str) and parse_datetime(operand) is None:
                raise InvalidFilterError(f"{where}: {operand!r} is not an ISO-8601 date")
            if not isinstance(operand, str):
                try:
                    finite = math.isfinite(float(operand))
                except OverflowError:
                    finite = False
                if not finite:
                    raise InvalidFilterError(f"{where}: numbers must be finite")
            _check_scalar(operand, where)
        else:
            _check_scalar(operand, where)
        out.append(Leaf(field, op, operand))
    return out


def parse_filter(spec: Any, _depth: int = 0) -> Expr:
    """Validate a filter object and return its tree; ``InvalidFilterError`` explains why not."""
    if _depth > MAX_DEPTH:
        raise InvalidFilterError(f"filter nested deeper than {MAX_DEPTH} levels")
    if not isinstance(spec, Mapping) or not spec:
        raise InvalidFilterError("a filter is a non-empty JSON object")
    parts: list[Expr] = []
    for key, value in spec.items():
        if not isinstance(key, str) or not key:
            raise InvalidFilterError("filter keys must be non-empty strings")
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise InvalidFilterError(f"{key} expects a non-empty list of filters")
            children = tuple(parse_filter(v, _depth + 1) for v in value)
            parts.append(Node(key[1:], children))
        elif key == "$not":
            parts.append(Node("not", (parse_filter(value, _depth + 1),)))
        elif key.startswith("$"):
            raise InvalidFilterError(f"unknown logical operator {key!r} (use $and, $or, $not)")
        elif isinstance(value, Mapping):
            parts.extend(_parse_ops(key, value))
        else:
            _check_scalar(value, key)
            parts.append(Leaf(key, "$eq", value))
    return parts[0] if len(parts) == 1 else Node("and", tuple(parts))


def fields_of(expr: Expr) -> set[str]:
    if isinstance(expr, Leaf):
        return {expr.field}
    return set().union(*(fields_of(c) for c in expr.children))


# -- evaluation over a column store -----------------------------------------------------


class Column:
    """One field's values for every row of a table, with lazily built views."""

    def __init__(self, values: list[Any]) -> None:
        self.values = values
        self._keys: npt.NDArray[Any] | None = None
        self._lists: dict[int, set[Any]] | None = None
        self._positions: dict[Any, npt.NDArray[np.int64]] | None = None
        self._numbers: npt.NDArray[np.float64] | None = None
        self._dates: npt.NDArray[np.float64] | None = None
        self._present: Mask | None = None

    def present(self) -> Mask:
        if self._present is None:
            self._present = np.fromiter(
                (v is not MISSING for v in self.values), dtype=bool, count=len(self.values)
            )
        return self._present

    def _equality_views(self) -> tuple[npt.NDArray[Any], dict[int, set[Any]]]:
        if self._keys is None or self._lists is None:
            keys = np.empty(len(self.values), dtype=object)
            lists: dict[int, set[Any]] = {}
            for i, v in enumerate(self.values):
                if isinstance(v, list):
                    keys[i] = MISSING
                    lists[i] = {_key(x) for x in v if not isinstance(x, dict | list)}
                elif isinstance(v, dict):
                    keys[i] = MISSING
                else:
                    keys[i] = _key(v)
            self._keys, self._lists = keys, lists
        return self._keys, self._lists

    def _positions_of(self) -> dict[Any, npt.NDArray[np.int64]]:
        """Rows of each scalar value (an inverted index): equality costs O(matches)."""
        if self._positions is None:
            keys, _lists = self._equality_views()
            grouped: dict[Any, list[int]] = {}
            for i, k in enumerate(keys):
                if k is not MISSING:
                    grouped.setdefault(k, []).append(i)
            self._positions = {k: np.asarray(v, dtype=np.int64) for k, v in grouped.items()}
        return self._positions

    def equals_any(self, operands: Iterable[Any]) -> Mask:
        _keys, lists = self._equality_views()
        positions = self._positions_of()
        wanted = {_key(v) for v in operands}
        mask = np.zeros(len(self.values), dtype=bool)
        for w in wanted:
            found = positions.get(w)
            if found is not None:
                mask[found] = True
        for i, members in lists.items():
            if members & wanted:
                mask[i] = True
        return mask

    def numbers(self) -> npt.NDArray[np.float64]:
        if self._numbers is None:
            self._numbers = np.fromiter(
                (
                    float(v) if isinstance(v, int | float) and not isinstance(v, bool) else np.nan
                    for v in self.values
                ),
                dtype=np.float64,
                count=len(self.values),
            )
        return self._numbers

    def dates(self) -> npt.NDArray[np.float64]:
        if self._dates is None:
            out = np.full(len(self.values), np.nan)
            for i, v in enumerate(self.values):
                if isinstance(v, str):
                    ts = parse_datetime(v)
                    if ts is not None:
                        out[i] = ts
            self._dates = out
        return self._dates


_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "$gt": np.greater,
    "$gte": np.greater_equal,
    "$lt": np.less,
    "$lte": np.less_equal,
}


def evaluate(expr: Expr, column: Callable[[str], Column], n: int) -> Mask:
    """Boolean mask over the ``n`` rows of a table for which ``expr`` holds."""
    if isinstance(expr, Node):
        masks = [evaluate(c, column, n) for c in expr.children]
        if expr.kind == "not":
            return ~masks[0]
        reducer = np.logical_and if expr.kind == "and" else np.logical_or
        return reducer.reduce(masks) if len(masks) > 1 else masks[0]
    col = column(expr.field)
    op, operand = expr.op, expr.operand
    if op == "$exists":
        present = col.present()
        return present if operand else ~present
    if op == "$eq":
        return col.equals_any([operand])
    if op == "$ne":
        return ~col.equals_any([operand])
    if op == "$in":
        return col.equals_any(operand)
    if op == "$nin":
        return ~col.equals_any(operand)
    if isinstance(operand, str):
        values, bound = col.dates(), parse_datetime(operand)
    else:
        values, bound = col.numbers(), float(operand)
    with np.errstate(invalid="ignore"):
        return np.asarray(_COMPARE[op](values, bound), dtype=bool)
