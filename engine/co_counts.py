"""Co-occurrence counts of liked items: the collaborative statistic, exactly removable.

With ``shared_statistics="collaborative"`` each consenting user contributes the
*pairs* among their newest ``collaborative_items`` liked items (their ledger's
``"co"`` entry: that set, sorted). For every item ``a`` the ``co_pairs``
database holds one row:

- ``degree``: how many users have ``a`` in their set;
- for every item ``b`` that shares a set with ``a``: ``count(a, b)``, how many
  users have both; ``b`` is named by its 64-bit hash ``item_key(b)``
  (collisions: odds ~ n^2 / 2^65), which the catalog's ``item_keys`` database
  maps back to the id.

A row is stored as little-endian ``uint64`` degree, then the partners' 64-bit
hashes (``item_key``, ascending) and their ``uint32`` counts, columnar, so a
ranking call reads all its rows with one copy of each column (``joined_rows``).
Zero counts are left out and a row with nothing in it is deleted, so the bytes
are a pure function of the counts: adding a user and subtracting them again
(erasure, forget, consent withdrawal, log caps, a catalog delete) gives back the
very bytes of a store that never saw them, whatever the order of the writes.

Cost: a user's set changes by at most a few items per write, but every item of
the old and new set has its row rewritten (the pairs with the items that came
or went), so a write touches at most ``2 * collaborative_items`` rows and an
erasure ``collaborative_items`` rows, all merged together in one vectorised pass
(``_merged``). Size: at most
``K * (K - 1)`` partner entries (12 bytes) per user, far fewer in practice because
users share pairs.

>>> import numpy as np
>>> row = CoRow.pack(2, np.array([5, 9], np.uint64), np.array([1, 2], np.uint32))
>>> decoded = CoRow.unpack(row)
>>> decoded.degree, decoded.partners.tolist(), decoded.counts.tolist()
(2, [5, 9], [1, 2])
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..storage.catalog_store import item_key
from ..storage.lmdb_env import LmdbEnvironment

CO = "co"
_DEGREE = np.dtype("<u8")
_PARTNER = np.dtype("<u8")
_COUNT = np.dtype("<u4")


def item_keys(item_ids: Iterable[str]) -> np.ndarray:
    """``item_key`` of each id, as ``uint64``."""
    return np.array([item_key(i) for i in item_ids], dtype=np.uint64)


@dataclass(frozen=True)
class CoRow:
    """One item's row: its degree and its partners' counts (partners ascending)."""

    degree: int
    partners: np.ndarray  # uint64 item keys, ascending
    counts: np.ndarray  # uint32, > 0

    @staticmethod
    def pack(degree: int, partners: np.ndarray, counts: np.ndarray) -> bytes:
        return b"".join(
            (
                np.array([degree], _DEGREE).tobytes(),
                partners.astype(_PARTNER).tobytes(),
                counts.astype(_COUNT).tobytes(),
            )
        )

    @classmethod
    def unpack(cls, raw: bytes | memoryview) -> CoRow:
        n = (len(raw) - 8) // 12
        degree = int(np.frombuffer(raw, _DEGREE, 1)[0])
        partners = np.frombuffer(raw, _PARTNER, n, 8)
        counts = np.frombuffer(raw, _COUNT, n, 8 + 8 * n)
        return cls(degree, partners, counts)


@dataclass(frozen=True)
class JoinedRows:
    """Several rows laid end to end (what a ranking call reads): ``found`` the
    positions (in the asked ids) of the items that have a row, their ``degrees``, and
    every entry's partner, count and ``source`` (which found row it came from)."""

    found: list[int]
    degrees: np.ndarray  # uint64, one per found row
    partners: np.ndarray  # uint64
    counts: np.ndarray  # uint32
    source: np.ndarray  # int32 index into ``found``


def _key(item_id: str) -> bytes:
    return item_id.encode()


@dataclass(frozen=True)
class _Move:
    """What one row gains: ``degree`` added to its degree, ``delta`` to its count with
    each of ``changed`` (partner keys, sorted and distinct)."""

    item: str
    degree: int
    changed: np.ndarray  # uint64
    delta: np.ndarray  # int64

    @classmethod
    def of(cls, item: str, degree: int, minus: np.ndarray, plus: np.ndarray) -> _Move:
        """-1 with each of ``minus`` and +1 with each of ``plus`` (each sorted, distinct)."""
        if not len(minus) or not len(plus):  # one side: sorted, distinct, one sign
            changed = plus if len(plus) else minus
            return cls(item, degree, changed, np.full(len(changed), 1 if len(plus) else -1))
        changed, where = np.unique(np.concatenate([minus, plus]), return_inverse=True)
        signs = np.concatenate([np.full(len(minus), -1), np.ones(len(plus), np.int64)])
        return cls(item, degree, changed, np.bincount(where, signs, len(changed)).astype(np.int64))


def _merged(moves: Sequence[_Move], raws: Sequence[bytes | None]) -> list[bytes | None]:
    """The rows after ``moves`` (``raws``: their stored bytes, None for no row), merged
    all at once: the rows laid end to end, each move's partners found in its own row
    (``searchsorted``, no sort), counts changed, new partners inserted at their sorted
    places and emptied ones dropped, then each row packed as ``CoRow.pack`` would.
    None: nothing is left of that row. Each row's bytes are copied a few times
    (joined, merged, packed); the rest touches only the changed entries."""
    datas = [raw or bytes(_DEGREE.itemsize) for raw in raws]
    sizes = np.array([(len(d) - 8) // 12 for d in datas], np.int64)
    starts = np.cumsum(sizes) - sizes
    partners = np.concatenate(
        [np.frombuffer(d, _PARTNER, n, 8) for d, n in zip(datas, sizes.tolist(), strict=True)]
    )
    counts = np.concatenate(
        [np.frombuffer(d, _COUNT, n, 8 + 8 * n) for d, n in zip(datas, sizes.tolist(), strict=True)]
    )
    degrees = [
        int.from_bytes(d[:8], "little") + m.degree for d, m in zip(datas, moves, strict=True)
    ]
    # each change's place in its own row, as an index into the joined columns
    at = np.concatenate(
        [
            partners[s : s + n].searchsorted(m.changed) + s
            for m, s, n in zip(moves, starts.tolist(), sizes.tolist(), strict=True)
        ]
    )
    changed = np.concatenate([m.changed for m in moves])
    delta = np.concatenate([m.delta for m in moves])
    row_of_change = np.repeat(np.arange(len(moves)), [len(m.changed) for m in moves])
    found = at < (starts + sizes)[row_of_change]
    found[found] = partners[at[found]] == changed[found]
    value = delta.copy()  # each changed entry's new count
    value[found] += counts[at[found]]
    below = [k for k, d in enumerate(degrees) if d < 0] + row_of_change[value < 0].tolist()
    if below:
        raise RuntimeError(f"co-occurrence counts of {moves[min(below)].item!r} would go negative")
    # the new partners go in at their sorted places (``at`` never decreases): each
    # change's place in the merged columns is its ``at`` moved by the insertions before it
    fresh = ~found
    place = at + np.cumsum(fresh) - fresh
    size = len(partners) + int(fresh.sum())
    keep = np.ones(size, bool)
    keep[place[fresh]] = False
    all_partners = np.empty(size, _PARTNER)
    all_partners[keep], all_partners[place[fresh]] = partners, changed[fresh]
    all_counts = np.empty(size, _COUNT)
    all_counts[keep] = counts
    all_counts[place] = value
    sizes += np.bincount(row_of_change[fresh], minlength=len(moves))
    if not value.all():  # counts that fell to zero: their partners leave the row
        zero = value == 0
        all_partners = np.delete(all_partners, place[zero])
        all_counts = np.delete(all_counts, place[zero])
        sizes -= np.bincount(row_of_change[zero], minlength=len(moves))
    partner_view, count_view = all_partners.data, all_counts.data
    out: list[bytes | None] = []
    for degree, n, s in zip(
        degrees, sizes.tolist(), (np.cumsum(sizes) - sizes).tolist(), strict=True
    ):
        if degree == 0 and n == 0:
            out.append(None)
        else:
            out.append(
                b"".join(
                    (degree.to_bytes(8, "little"), partner_view[s : s + n], count_view[s : s + n])
                )
            )
    return out


class CoCounts:
    """The ``co_pairs`` database: reads for ranking, exact moves for ledgers."""

    def __init__(self, env: LmdbEnvironment, items: int) -> None:
        self.db = env.db("co_pairs")
        self.items = items  # K: how many of a user's newest liked items form pairs

    def ledger_items(self, positives: Sequence[str]) -> list[str]:
        """The set a user contributes: their newest ``items`` liked items (``positives``
        is oldest first), sorted; empty below two items (no pair)."""
        chosen = sorted(set(positives[-self.items :]))
        return chosen if len(chosen) >= 2 else []

    def apply(self, txn: Any, old: Sequence[str], new: Sequence[str]) -> int:
        """Move the counts from the pairs of ``old`` to those of ``new`` (each a set of
        item ids); return how many pairs changed (each counted once)."""
        before, after = set(old), set(new)
        if before == after:
            return 0
        keys = {i: item_key(i) for i in before | after}
        gone, came, kept = before - after, after - before, before & after

        def keys_of(items: Iterable[str]) -> np.ndarray:
            return np.array(sorted(keys[i] for i in items), np.uint64)

        gone_keys, came_keys = keys_of(gone), keys_of(came)
        before_keys, after_keys = keys_of(before), keys_of(after)
        # the same changes for every kept item, and one sign for the others' (shared)
        shift = _Move.of("", 0, gone_keys, came_keys)
        minus = np.full(max(len(before) - 1, 0), -1, np.int64)
        plus = np.ones(max(len(after) - 1, 0), np.int64)
        moves: list[_Move] = []
        for item in sorted(before | after):
            own = np.uint64(keys[item])
            if item in kept:  # its pairs with the items that went and came
                moves.append(_Move(item, 0, shift.changed, shift.delta))
            elif item in gone:
                moves.append(_Move(item, -1, before_keys[before_keys != own], minus))
            else:
                moves.append(_Move(item, +1, after_keys[after_keys != own], plus))
        self._write(txn, moves)
        pairs_before = len(before) * (len(before) - 1) // 2
        pairs_after = len(after) * (len(after) - 1) // 2
        pairs_kept = len(kept) * (len(kept) - 1) // 2
        return pairs_before + pairs_after - 2 * pairs_kept

    def _write(self, txn: Any, moves: Sequence[_Move]) -> None:
        """Apply ``moves`` (distinct items), all merged in one pass (``_merged``); then
        store each row, or delete it when nothing is left of it."""
        keys = [_key(m.item) for m in moves]
        got = dict(txn.cursor(db=self.db).getmulti(keys))
        for key, row in zip(keys, _merged(moves, [got.get(k) for k in keys]), strict=True):
            if row is None:
                txn.delete(key, db=self.db)
            else:
                txn.put(key, row, db=self.db)

    # -- reads --------------------------------------------------------------------------

    def joined_rows(self, txn: Any, item_ids: Sequence[str]) -> JoinedRows | None:
        """The rows of ``item_ids`` end to end (None: none has a row), one batched read
        and one copy of each column, for all rows at once (the arrays outlive ``txn``).

        >>> from ownrank.storage.lmdb_env import LmdbEnvironment
        >>> import tempfile, pathlib
        >>> env = LmdbEnvironment(pathlib.Path(tempfile.mkdtemp()) / "db", map_size=1 << 20)
        >>> co = CoCounts(env, 8)
        >>> with env.write() as txn:
        ...     _ = co.apply(txn, [], ["a", "b", "c"])
        >>> with env.read() as txn:
        ...     joined = co.joined_rows(txn, ["x", "a", "c"])
        >>> joined.found, joined.degrees.tolist(), joined.counts.tolist(), joined.source.tolist()
        ([1, 2], [1, 1], [1, 1, 1, 1], [0, 0, 1, 1])
        """
        keys = [_key(i) for i in item_ids]
        got = dict(txn.cursor(db=self.db).getmulti(keys))
        found = [k for k, key in enumerate(keys) if key in got]
        if not found:
            return None
        raws = [got[keys[k]] for k in found]
        sizes = [(len(raw) - 8) // 12 for raw in raws]
        views = [memoryview(raw) for raw in raws]
        partners = b"".join([v[8 : 8 + 8 * n] for v, n in zip(views, sizes, strict=True)])
        counts = b"".join([v[8 + 8 * n :] for v, n in zip(views, sizes, strict=True)])
        return JoinedRows(
            found,
            np.frombuffer(b"".join([v[:8] for v in views]), _DEGREE),
            np.frombuffer(partners, _PARTNER),
            np.frombuffer(counts, _COUNT),
            np.repeat(np.arange(len(found), dtype=np.int32), sizes),
        )

    def totals(self, txn: Any) -> dict[str, tuple[int, dict[int, int]]]:
        """Every row, decoded (for audits and the ledger invariant)."""
        out: dict[str, tuple[int, dict[int, int]]] = {}
        for key, raw in txn.cursor(db=self.db):
            row = CoRow.unpack(bytes(raw))
            pairs = dict(zip(row.partners.tolist(), row.counts.tolist(), strict=True))
            out[bytes(key).decode()] = (row.degree, pairs)
        return out

    def row_digests(self, txn: Any) -> dict[str, bytes]:
        """A digest of each row's bytes (which rows a recount changed, without
        decoding every pair)."""
        return {
            bytes(key).decode(): hashlib.blake2b(raw, digest_size=16).digest()
            for key, raw in txn.cursor(db=self.db)
        }

    def row_sums(self, txn: Any) -> dict[str, tuple[int, int]]:
        """Each row's degree and the sum of its counts: what an audit compares with
        the ledgers (``expected_row_sums``) without decoding every pair."""
        out: dict[str, tuple[int, int]] = {}
        for key, raw in txn.cursor(db=self.db):
            row = CoRow.unpack(raw)
            out[bytes(key).decode()] = (row.degree, int(row.counts.sum(dtype=np.int64)))
        return out

    def size(self, txn: Any) -> dict[str, int]:
        """How big the statistic is: rows, partner entries and bytes."""
        rows = entries = size = 0
        for _key_raw, raw in txn.cursor(db=self.db):
            rows += 1
            entries += (len(raw) - 8) // 12
            size += len(raw)
        return {"rows": rows, "entries": entries, "bytes": size}

    def clear(self, txn: Any) -> None:
        txn.drop(self.db, delete=False)


def expected_totals(sets: Iterable[Sequence[str]]) -> dict[str, tuple[int, dict[int, int]]]:
    """What ``CoCounts.totals`` must equal after the ledgers' sets were added (tests,
    audits)."""
    out: dict[str, tuple[int, dict[int, int]]] = {}
    for items in sets:
        chosen = sorted(set(items))
        for a in chosen:
            degree, pairs = out.get(a, (0, {}))
            for b in chosen:
                if b != a:
                    k = item_key(b)
                    pairs[k] = pairs.get(k, 0) + 1
            out[a] = (degree + 1, pairs)
    return out


def expected_row_sums(sets: Iterable[Sequence[str]]) -> dict[str, tuple[int, int]]:
    """What ``CoCounts.row_sums`` must equal after the ledgers' sets were added: an item
    in a set of n items gains 1 in degree and n - 1 in counts.

    >>> expected_row_sums([["a", "b", "c"], ["a", "b"]])
    {'a': (2, 3), 'b': (2, 3), 'c': (1, 2)}
    """
    out: dict[str, tuple[int, int]] = {}
    for items in sets:
        chosen = set(items)
        for a in sorted(chosen):
            degree, total = out.get(a, (0, 0))
            out[a] = (degree + 1, total + len(chosen) - 1)
    return dict(sorted(out.items()))
