"""Shared statistics derived from users, kept exactly removable.

Only integer quantities are shared, so removing a contribution restores the
state bit for bit (integer addition is exact and order-free). Each user record
holds a *ledger* of what it contributed; every write of a user applies the
difference between its old and new ledger in the same LMDB transaction, and
erasure applies ``new = {}``. Invariant (tested): every shared quantity equals
the sum over the ledgers of the users that exist.

The ``popularity`` statistic (``shared_statistics="popularity"``; per-user
consent can opt out):

- ``pop/<item>``: how many users have net-positive feedback on the item;
- ``users``: how many users contribute;
- ``popvec``: sum over catalog items of F(count) * Q(embedding), with
  F(c) = round(log(1 + c) * 2^16) and Q(e) = [round(e * 2^15), 2^15] (the last
  entry is the regression's intercept): the right-hand side of a ridge
  regression of log-popularity on content over the catalog, whose Gram matrix
  is the catalog's own (catalog data, no user data); it predicts the
  popularity of items nobody has rated yet (cold start). One 3 KiB value, so a
  user write stays small;
- the ``popular_rank`` database orders the popular items (count >= ``RANK_MIN_COUNT``)
  by a coarse count bucket (quarter octaves: ``floor(4 * log2(count))``), then id,
  for popular candidates. Coarse on purpose: an item's key moves only when its
  count crosses a bucket edge, so most writes (and erasures) leave this database
  untouched, and a durable commit writes fewer pages. It is
  still a pure function of the counts, so an erased user leaves no trace in it.
  Items below the threshold (the long tail) are found by a scan of the counts
  when the index runs out, which happens only in stores with few users.

The ``collaborative`` mode adds to these the co-occurrence counts of liked pairs
(``co_counts.py``; ledger entry ``"co"``), which the collaborative scorer reads.

With ``shared_statistics="none"`` nothing here is ever written.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgpack
import numpy as np

from ..storage.catalog_store import CatalogStore
from ..storage.lmdb_env import LmdbEnvironment
from .co_counts import CO, CoCounts

POP = "pop"
F_SCALE = 65_536
Q_SCALE = 32_768
_COUNT = struct.Struct(">q")
_COUNT_DTYPE = np.dtype(">i8")  # _COUNT, for reading many at once
_ZERO_COUNT = _COUNT.pack(0)
_BUCKET = struct.Struct(">H")
_BUCKET_TOP = 2**16 - 1
RANK_MIN_COUNT = 8  # items with fewer positive users are not in ``popular_rank``
RANK_FORMAT = 2  # 1: exact counts in every key; 2: buckets above RANK_MIN_COUNT

Ledger = dict[str, list[str]]


def f_pop(count: int) -> int:
    return round(math.log1p(count) * F_SCALE) if count > 0 else 0


def q_vec(vector: np.ndarray) -> np.ndarray:
    """Q(e): the embedding in fixed point, plus a constant feature (the regression's
    intercept) of 1 in the same scale."""
    row: np.ndarray = q_matrix(np.asarray(vector)[None, :])[0]
    return row


def q_matrix(vectors: np.ndarray) -> np.ndarray:
    """Q(e) of each row (see ``q_vec``), as int64."""
    q = np.rint(np.asarray(vectors, dtype=np.float64) * Q_SCALE).astype(np.int64)
    return np.hstack([q, np.full((len(q), 1), Q_SCALE, dtype=np.int64)])


def _pop_key(item_id: str) -> bytes:
    return b"pop\x00" + item_id.encode()


def rank_bucket(count: int) -> int | None:
    """``floor(4 * log2(count))`` in exact integer arithmetic (the largest b with
    2^b <= count^4); None below ``RANK_MIN_COUNT`` (not indexed)."""
    return None if count < RANK_MIN_COUNT else (count**4).bit_length() - 1


def _rank_key(bucket: int, item_id: str) -> bytes:
    return _BUCKET.pack(_BUCKET_TOP - bucket) + item_id.encode()


class SharedStatistics:
    def __init__(
        self,
        env: LmdbEnvironment,
        catalog: CatalogStore,
        mode: str,
        dim: int,
        collaborative_items: int = 64,
    ) -> None:
        self.enabled = mode in ("popularity", "collaborative")
        self.collaborative = mode == "collaborative"
        # always there: a ledger's "co" entry is subtracted exactly even after the
        # store's mode changed (the upgrade on open rewrites every ledger)
        self.co = CoCounts(env, collaborative_items)
        self.catalog = catalog
        self.counts_db = env.db("shared_counts")
        self.rank_db = env.db("popular_rank")
        self.dim = dim
        self.qdim = dim + 1  # Q(e) carries the intercept feature
        if self.enabled:
            self._upgrade_rank_index(env, catalog)

    def _upgrade_rank_index(self, env: LmdbEnvironment, catalog: CatalogStore) -> None:
        """Rebuild ``popular_rank`` from the counts once, when the store's index has
        an older layout."""
        with env.read() as txn:
            current = catalog.get_meta(txn, "rank_format")
        if current == RANK_FORMAT:
            return
        with env.write() as txn:
            if catalog.get_meta(txn, "rank_format") == RANK_FORMAT:
                return  # another process upgraded it meanwhile
            txn.drop(self.rank_db, delete=False)
            for item_id, count in self.totals(txn).items():
                bucket = rank_bucket(count)
                if bucket is not None:
                    txn.put(_rank_key(bucket, item_id), b"", db=self.rank_db)
            catalog.put_meta(txn, "rank_format", RANK_FORMAT)

    # -- ledgers ------------------------------------------------------------------------

    def ledger_for(self, consent: bool, positive_items: Sequence[str]) -> Ledger:
        """What a user contributes: their liked items (``positive_items``, oldest
        first) and, in the collaborative mode, the set their pairs come from."""
        if not (self.enabled and consent):
            return {}
        items = sorted(set(positive_items))
        ledger = {POP: items} if items else {}
        if self.collaborative and (pairs := self.co.ledger_items(positive_items)):
            ledger[CO] = pairs
        return ledger

    def apply(self, txn: Any, old: Ledger, new: Ledger) -> int:
        """Move shared state from ``old`` to ``new`` contributions; return units changed."""
        changed = self.co.apply(txn, old.get(CO, ()), new.get(CO, ()))
        before, after = set(old.get(POP, ())), set(new.get(POP, ()))
        steps: list[int] = []  # F(new count) - F(old count) of each item in the catalog
        vectors: list[np.ndarray] = []
        for item_id, delta in [
            *((i, -1) for i in sorted(before - after)),
            *((i, +1) for i in sorted(after - before)),
        ]:
            old_count, vector = self._add(txn, item_id, delta)
            changed += 1
            if vector is not None:
                steps.append(f_pop(old_count + delta) - f_pop(old_count))
                vectors.append(vector)
        content = np.zeros(self.qdim, dtype=np.int64)
        if vectors:  # sum of step * Q(e), in exact integer arithmetic
            content = np.asarray(steps, dtype=np.int64) @ q_matrix(np.stack(vectors))
        if content.any():
            vec = self.popvec(txn) + content
            if vec.any():
                txn.put(b"popvec", vec.astype("<i8").tobytes(), db=self.counts_db)
            else:
                txn.delete(b"popvec", db=self.counts_db)
        if bool(before) != bool(after):
            self._add_int(txn, b"users", 1 if after else -1)
            changed += 1
        return changed

    def rebuild(self, txn: Any, ledgers: Iterable[Ledger]) -> int:
        """Recount everything from ``ledgers`` (those of every user that exists);
        return how many units changed. Used when a record became unreadable (its
        data key is gone), so its own ledger cannot be subtracted."""
        before = self.totals(txn)
        users_before = self.users(txn)
        co_before = self.co.row_digests(txn)
        txn.drop(self.counts_db, delete=False)
        txn.drop(self.rank_db, delete=False)
        self.co.clear(txn)
        for ledger in ledgers:
            self.apply(txn, {}, ledger)
        after = self.totals(txn)
        changed = sum(abs(after.get(i, 0) - before.get(i, 0)) for i in {*before, *after})
        co_after = self.co.row_digests(txn)
        changed += sum(co_before.get(i) != co_after.get(i) for i in {*co_before, *co_after})
        return changed + abs(self.users(txn) - users_before)

    # -- reads --------------------------------------------------------------------------

    def count(self, txn: Any, item_id: str) -> int:
        raw = txn.get(_pop_key(item_id), db=self.counts_db)
        return 0 if raw is None else int(_COUNT.unpack(raw)[0])

    def counts(self, txn: Any, item_ids: Sequence[str]) -> np.ndarray:
        """``count`` of each item, in one batched LMDB read (the ranking hot path)."""
        keys = [_pop_key(i) for i in item_ids]
        found = dict(txn.cursor(db=self.counts_db).getmulti(keys))
        packed = b"".join([found.get(k, _ZERO_COUNT) for k in keys])
        return np.frombuffer(packed, dtype=_COUNT_DTYPE).astype(np.int64)

    def users(self, txn: Any) -> int:
        raw = txn.get(b"users", db=self.counts_db)
        return 0 if raw is None else int(msgpack.unpackb(raw))

    def top(self, txn: Any, n: int, keep: Callable[[str], bool] | None = None) -> list[str]:
        """Up to ``n`` popular item ids that ``keep`` accepts, most popular first:
        by count bucket (within ~19% of each other), then id; below
        ``RANK_MIN_COUNT`` by exact count, then id."""
        out: list[str] = []
        for key in txn.cursor(db=self.rank_db).iternext(keys=True, values=False):
            item_id = bytes(key[_BUCKET.size :]).decode()
            if keep is None or keep(item_id):
                out.append(item_id)
                if len(out) >= n:
                    return out
        tail = sorted(
            (-count, item_id)
            for item_id, count in self.totals(txn).items()
            if count < RANK_MIN_COUNT
        )
        for _neg, item_id in tail:
            if keep is None or keep(item_id):
                out.append(item_id)
                if len(out) >= n:
                    break
        return out

    def popvec(self, txn: Any) -> np.ndarray:
        raw = txn.get(b"popvec", db=self.counts_db)
        if raw is None:
            return np.zeros(self.qdim, dtype=np.int64)
        return np.frombuffer(raw, dtype="<i8").copy()

    def totals(self, txn: Any) -> dict[str, int]:
        """Every per-item count (for audits and the ledger invariant)."""
        out: dict[str, int] = {}
        cursor = txn.cursor(db=self.counts_db)
        if cursor.set_range(b"pop\x00"):
            for key, raw in cursor:
                if not bytes(key).startswith(b"pop\x00"):
                    break
                out[bytes(key[4:]).decode()] = int(_COUNT.unpack(raw)[0])
        return out

    # -- writes -------------------------------------------------------------------------

    def _add(self, txn: Any, item_id: str, delta: int) -> tuple[int, np.ndarray | None]:
        """Change one item's count; return its old count and its vector (None if not
        in the catalog)."""
        old = self.count(txn, item_id)
        new = old + delta
        if new < 0:
            raise RuntimeError(f"shared count of {item_id!r} would go negative")
        if new:
            txn.put(_pop_key(item_id), _COUNT.pack(new), db=self.counts_db)
        else:
            txn.delete(_pop_key(item_id), db=self.counts_db)
        old_bucket, new_bucket = rank_bucket(old), rank_bucket(new)
        if old_bucket != new_bucket:
            if old_bucket is not None:
                txn.delete(_rank_key(old_bucket, item_id), db=self.rank_db)
            if new_bucket is not None:
                txn.put(_rank_key(new_bucket, item_id), b"", db=self.rank_db)
        return old, self._vector(txn, item_id)

    def _vector(self, txn: Any, item_id: str) -> np.ndarray | None:
        return self.catalog.vector_of(txn, item_id, self.dim)

    def _add_int(self, txn: Any, key: bytes, delta: int) -> None:
        raw = txn.get(key, db=self.counts_db)
        value = (0 if raw is None else int(msgpack.unpackb(raw))) + delta
        if value:
            txn.put(key, msgpack.packb(value), db=self.counts_db)
        else:
            txn.delete(key, db=self.counts_db)

    def on_item_vector(
        self, txn: Any, item_id: str, old: np.ndarray | None, new: np.ndarray | None
    ) -> None:
        """Catalog hook: an item was added, re-embedded or deleted (inside its transaction).

        ``popvec`` covers catalog items only, so an item leaving the catalog takes
        its F(count) * Q(e) out, and one (re-)entering puts it back in.
        """
        if not self.enabled:
            return
        f = f_pop(self.count(txn, item_id))
        if not f:
            return
        vec = self.popvec(txn)
        if old is not None:
            vec -= f * q_vec(old)
        if new is not None:
            vec += f * q_vec(new)
        if vec.any():
            txn.put(b"popvec", vec.astype("<i8").tobytes(), db=self.counts_db)
        else:
            txn.delete(b"popvec", db=self.counts_db)
