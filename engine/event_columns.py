"""A user's event log as columns: how a record stores its events (format 4).

A recommend reads the whole log of the user (the net feedback per item, the items
already seen), and decoding it event by event into Python objects cost more than
half of what the call spent on the user's data. As columns, the log decodes to
a few arrays and two short lists: the distinct items and queries the events name
(``refs``), the distinct ``(kind, value, weight)`` triples (a log holds few:
``combos``), and per event an index into each, its time and its id. The events as
objects (``StoredEvent``, in ``user_record.py``) are built only when a caller
asks for them (``rows``).

Stored as a msgpack map (``pack``; ``unpack`` checks every field)::

    {"r": [ref, ...]          the distinct items and query texts, by first event
     "s": bytes               one byte per ref: 1 = a query text, 0 = an item id
     "k": [[kind, value, weight], ...]
                              the distinct triples, by first event
     "i": bytes               per event: its ref's index, unsigned little-endian of
                              1, 2 or 4 bytes (the width is len(i) / len(d))
     "j": bytes               per event: its triple's index (likewise)
     "t": bytes               per event: Unix seconds, uint32 (int64 if out of range)
     "d": [id, ...]}          per event: the client's 16-byte id or a sequence number
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from ..errors import StoreFormatError
from .events import KindCode

_KINDS = tuple(KindCode)  # by code: a tuple index is faster than KindCode(code)
_UNSIGNED: dict[int, np.dtype[Any]] = {1: np.dtype("u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4")}
_ID_TYPES = frozenset([bytes, int])
_TIMES: dict[int, np.dtype[Any]] = {4: np.dtype("<u4"), 8: np.dtype("<i8")}

# one event as a tuple: (kind, ref, value, weight, ts, id), as ``StoredEvent`` is
EventTuple = tuple[KindCode, str, float | None, float, int, bytes | int]
Combo = tuple[KindCode, float | None, float]
E = TypeVar("E", bound=tuple[Any, ...])


@dataclass(frozen=True, eq=False)
class EventColumns:
    """The events of a log, oldest first, as columns (see the module's docstring).

    >>> cols = EventColumns.from_events([(KindCode.like, "a", None, 1.0, 10, 0),
    ...                                  (KindCode.search, "a", None, 1.0, 11, 1),
    ...                                  (KindCode.like, "a", None, 1.0, 12, 2)])
    >>> cols.refs, cols.ref_of.tolist(), len(cols.combos), cols.item_ids()
    (['a', 'a'], [0, 1, 0], 2, {'a'})
    >>> EventColumns.unpack(cols.pack()).rows(tuple) == cols.rows(tuple)
    True
    """

    refs: list[str]
    is_query: np.ndarray  # bool, per ref
    ref_of: np.ndarray  # unsigned, per event
    combos: list[Combo]
    combo_of: np.ndarray  # unsigned, per event
    ts: np.ndarray  # uint32 or int64, per event
    eids: list[bytes | int]

    def __len__(self) -> int:
        return len(self.eids)

    @classmethod
    def from_events(cls, events: Iterable[EventTuple]) -> EventColumns:
        """The columns of events given oldest first (``StoredEvent`` or tuples)."""
        search = KindCode.search
        refs: dict[tuple[str, bool], int] = {}
        combos: dict[Combo, int] = {}
        ref_of: list[int] = []
        combo_of: list[int] = []
        times: list[int] = []
        eids: list[bytes | int] = []
        for kind, ref, value, weight, ts, eid in events:
            ref_of.append(refs.setdefault((ref, kind is search), len(refs)))
            combo_of.append(combos.setdefault((kind, value, weight), len(combos)))
            times.append(ts)
            eids.append(eid)
        in_range = not times or (min(times) >= 0 and max(times) < 2**32)
        return cls(
            [ref for ref, _query in refs],
            np.array([query for _ref, query in refs], bool),
            _indices(ref_of, len(refs)),
            list(combos),
            _indices(combo_of, len(combos)),
            np.array(times, _TIMES[4] if in_range else _TIMES[8]),
            eids,
        )

    def rows(self, make: type[E]) -> list[E]:
        """Every event as a ``make`` tuple (``StoredEvent``), oldest first;
        StoreFormatError if an id read is neither bytes nor an int."""
        if not set(map(type, self.eids)) <= _ID_TYPES:
            raise StoreFormatError("malformed event ids in a user record")
        refs, new = self.refs, tuple.__new__
        combos = map(self.combos.__getitem__, self.combo_of.tolist())
        return [
            new(make, (c[0], refs[i], c[1], c[2], t, d))
            for i, c, t, d in zip(
                self.ref_of.tolist(), combos, self.ts.tolist(), self.eids, strict=True
            )
        ]

    def item_ids(self) -> set[str]:
        """The items (not queries) the events name."""
        if not self.is_query.any():  # (the usual log: items only)
            return set(self.refs)
        return {
            ref for ref, query in zip(self.refs, self.is_query.tolist(), strict=True) if not query
        }

    def refs_at(self, events: Sequence[int]) -> list[str]:
        """The item or query of each event at these positions (those past the end
        are left out)."""
        ref_of, refs, count = self.ref_of, self.refs, len(self)
        return [refs[int(ref_of[i])] for i in events if 0 <= i < count]

    def pack(self) -> dict[str, Any]:
        return {
            "r": self.refs,
            "s": self.is_query.astype("u1").tobytes(),
            "k": [
                [int(kind), _compact(value), _compact(weight)]
                for kind, value, weight in self.combos
            ],
            "i": self.ref_of.tobytes(),
            "j": self.combo_of.tobytes(),
            "t": self.ts.tobytes(),
            "d": self.eids,
        }

    @classmethod
    def unpack(cls, raw: Any) -> EventColumns:
        """The columns of a stored map; StoreFormatError when it is malformed."""
        try:
            return _unpack(raw)
        except (KeyError, TypeError, ValueError, IndexError):
            raise StoreFormatError("malformed event columns in a user record") from None


def _unpack(raw: dict[str, Any]) -> EventColumns:
    """Checked so that every later use is safe; the ids only when the events are
    built (``rows``: a recommend never reads them). Written for speed: a recommend
    reads the whole log (checks in C where one exists, e.g. ``join`` for strings)."""
    refs, query, combos_raw, eids = raw["r"], raw["s"], raw["k"], raw["d"]
    if not (type(refs) is list and type(query) is bytes and type(eids) is list):
        raise TypeError
    "".join(refs)  # TypeError unless every ref is a string
    if len(query) != len(refs) or query.translate(None, b"\x00\x01"):
        raise ValueError  # not one flag of 0 or 1 per ref
    combos = [_combo(c) for c in combos_raw]
    count = len(eids)
    ref_of = _column(raw["i"], count, _UNSIGNED)
    combo_of = _column(raw["j"], count, _UNSIGNED)
    ts = _column(raw["t"], count, _TIMES)
    is_query = np.frombuffer(query, bool)
    # each ref and triple once, each ref named by some event, no index past the end:
    # what ``from_events`` builds (an unused triple would be harmless)
    if len(set(combos)) != len(combos):
        raise ValueError
    distinct = len(set(refs))  # fewer: an item and a query of the same text, or a repeat
    if distinct != len(refs) and len(set(zip(refs, is_query.tolist(), strict=True))) != len(refs):
        raise ValueError
    if count:
        uses = np.bincount(ref_of, minlength=len(refs))
        if len(uses) != len(refs) or not uses.all() or int(combo_of.max()) >= len(combos):
            raise ValueError
    elif refs or combos:
        raise ValueError
    return EventColumns(refs, is_query, ref_of, combos, combo_of, ts, eids)


def _combo(raw: Any) -> Combo:
    kind, value, weight = raw
    if not (type(kind) is int and 0 <= kind < len(_KINDS)):
        raise ValueError
    if value is not None and type(value) not in (int, float):
        raise TypeError
    if type(weight) not in (int, float):
        raise TypeError
    return _KINDS[kind], None if value is None else float(value), float(weight)


def _column(raw: Any, count: int, widths: dict[int, np.dtype[Any]]) -> np.ndarray:
    """One per-event column, its width from its length."""
    if type(raw) is not bytes:
        raise TypeError
    if count == 0:
        if raw:
            raise ValueError
        return np.zeros(0, widths[min(widths)])
    width, rest = divmod(len(raw), count)
    if rest or width not in widths:
        raise ValueError
    return np.frombuffer(raw, widths[width])


def _indices(values: list[int], bound: int) -> np.ndarray:
    """Indices in the narrowest unsigned type that holds them."""
    width = 1 if bound <= 2**8 else 2 if bound <= 2**16 else 4
    return np.array(values, _UNSIGNED[width])


def _compact(value: float | None) -> float | int | None:
    """A whole float as an int (msgpack writes it in fewer bytes; read back as float)."""
    return int(value) if value is not None and float(value).is_integer() else value
