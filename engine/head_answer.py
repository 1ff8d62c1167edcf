"""The head's retrieval answer, kept in the user's record (``"r"``).

A catalog too big to rank whole is searched around the user's head direction on
every recommend: at 100k items that search was about a fifth of the call
(bench/README.md, 2026-12-07 ninth session). Its answer depends only on the head
(the user's model, which only the user's own writes change), how many rows are
asked for, and the index at one catalog version. So a write that fits the model
also makes that search once and keeps its answer in the record, with the catalog
version it was found at and a digest of the question (the query, its size, the
index's kind, breadth and layout). A ranking call uses the kept rows, in their
order, while the index is still at that catalog version and the question is the
same (then its own search of that index finds the same rows: bit for bit the same
lists, ``tests/test_head_answer.py``); else it searches (and keeps nothing:
ranking writes nothing). Any catalog write (a new version) retires every kept
answer until its user's next write.

The search moves from the read to the write: at 100k items a recommend took 0.79x
the time and an ``interact`` of 25 events 1.13x (1.05x once writes read their items'
vectors from the index; bench/README.md, 2026-12-07 ninth session). Bulk writes
(``interact_many``) keep none, for throughput (a backfill's users are searched for
at each recommend until their next single write).

The answer is derived from the user's model and the catalog only and lives under
the user's key: an erasure deletes it with the record.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import StoreFormatError

if TYPE_CHECKING:
    from .config import EngineConfig
    from .index_keeper import IndexKeeper
    from .user_record import UserRecord

ROW_LIMIT = 1 << 32  # rows are kept as uint32: an answer with a row past it is not kept


@dataclass(frozen=True, eq=False)
class HeadAnswer:
    """The rows a head search found, best first, the catalog version of the index it
    searched, and the digest of what it was asked (``question``).

    >>> kept = HeadAnswer(7, b"12345678", np.array([5, 3, 9]))
    >>> again = HeadAnswer.unpack(kept.pack())
    >>> again.seq, again.digest, again.rows.tolist()
    (7, b'12345678', [5, 3, 9])
    """

    seq: int
    digest: bytes
    rows: np.ndarray  # int64

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HeadAnswer):
            return NotImplemented
        same = self.seq == other.seq and self.digest == other.digest
        return same and np.array_equal(self.rows, other.rows)

    __hash__ = None  # type: ignore[assignment]

    def pack(self) -> dict[str, Any]:
        return {"s": self.seq, "d": self.digest, "r": self.rows.astype("<u4").tobytes()}

    @classmethod
    def unpack(cls, raw: Any) -> HeadAnswer:
        try:
            seq, digest, rows = raw["s"], raw["d"], raw["r"]
        except (TypeError, KeyError):
            raise StoreFormatError("malformed head answer in a user record") from None
        if type(seq) is not int or type(digest) is not bytes or type(rows) is not bytes:
            raise StoreFormatError("malformed head answer in a user record")
        if len(rows) % 4:
            raise StoreFormatError("malformed head answer in a user record")
        return cls(seq, digest, np.frombuffer(rows, "<u4").astype(np.int64))

    def rows_for(self, seq: int, digest: bytes) -> np.ndarray | None:
        """The kept rows if they answer this question at this catalog version (else None)."""
        return self.rows if seq == self.seq and digest == self.digest else None


def wanted(candidates: int, n: int) -> int:
    """How many rows a recommend of ``n`` retrieves around the head: ``candidates``,
    or 3n when that is more."""
    return max(candidates, 3 * n)


def over_fetched(k: int, seen: int) -> int:
    """A search for ``k`` rows asks for up to half as many again for the ``seen``
    items it will drop (dropped after retrieval rather than excluded inside the
    index: a wider, slower search). Retrieval and ``kept_answer`` ask alike.

    >>> over_fetched(60, 0), over_fetched(60, 7), over_fetched(90, 500)
    (60, 67, 135)
    """
    return k + min(seen, k // 2)


def kept_answer(record: UserRecord, keeper: IndexKeeper, config: EngineConfig) -> HeadAnswer | None:
    """The answer a write keeps for ``record`` (its model fitted): the head search of a
    recommend of up to ``candidates / 3`` items that excludes what the user has seen,
    where ranking retrieves (a catalog too big to rank whole), with the head as the
    record stores it (float16 weights); else none."""
    model, ranking = record.model, config.ranking
    if model is None or keeper.small_pool(None, ranking.full_rank_limit) is not None:
        return None
    stored = model.weights.astype("<f2").astype(np.float32)  # (as the record reads it)
    size = over_fetched(wanted(ranking.candidates, 1), len(record.seen()))
    return search_kept(keeper, head_query(stored), size)


def most_kept_rows(keeper: IndexKeeper, config: EngineConfig) -> int:
    """The most rows a write may keep (``kept_answer``): 0 where ranking ranks the
    whole catalog (the record caps leave room for them, ``record_caps.py``)."""
    ranking = config.ranking
    if keeper.small_pool(None, ranking.full_rank_limit) is not None:
        return 0
    want = wanted(ranking.candidates, 1)
    return over_fetched(want, want)


def head_query(weights: np.ndarray) -> np.ndarray:
    """The direction a head search looks in: the head's weights at unit length."""
    return np.asarray(weights / (np.linalg.norm(weights) + 1e-12))


def question(query: np.ndarray, size: int, index: Any) -> bytes:
    """The digest of a head search: the query's bits, how many rows it asks for, and
    the index's kind, breadth and layout (a change to any of them asks something
    else). An index rebuilt at the same catalog version (a worker that rebuilt it on
    open) trains on the same sample, but FAISS's k-means may place its lists a little
    differently: an answer kept from the other index then still holds rows of that
    catalog version, the ones that index found."""
    digest = hashlib.blake2b(np.asarray(query, np.float32).tobytes(), digest_size=8)
    shape = (size, index.nprobe, index.ef_search, index.ivf_lists, index.trained_on)
    digest.update(struct.pack("<5q", *shape))
    digest.update(f"{index.kind}/{index.ivf_codes}".encode())
    return digest.digest()


def search_kept(keeper: IndexKeeper, query: np.ndarray, size: int) -> HeadAnswer | None:
    """Search the index around ``query`` for ``size`` rows as retrieval does (by
    which rows, ``exact=False``), as an answer to keep; None if the index caught up
    with a catalog write during the search (its version is then unknown) or a row
    is too large to keep."""
    keeper.sync()
    index = keeper.index
    seq = index.seq
    found = keeper.search_many(query[None, :], [size], None, exact=False)[0]
    if keeper.index is not index or index.seq != seq:
        return None
    rows = np.array([row for row, _score in found], np.int64)
    if len(rows) and int(rows.max()) >= ROW_LIMIT:
        return None
    return HeadAnswer(seq, question(query, size, index), rows)
