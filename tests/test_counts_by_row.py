"""The popularity counts held by row (``engine/counts_by_row.py``) are those of the
snapshot a call reads, whatever writes, erasures and older readers came between."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ownrank.engine.config import RankingConfig
from ownrank.engine.counts_by_row import CountsByRow
from ownrank.engine.scorer_popularity import Popularity

from conftest import WordHashEncoder, make_engine
from test_catalog import catalog_items

ROWS = 12


class Snapshot:
    def __init__(self, snapshot: int) -> None:
        self.snapshot = snapshot

    def id(self) -> int:
        return self.snapshot


class Store:
    """Counts by item id, one state per snapshot (what LMDB's snapshots give)."""

    def __init__(self) -> None:
        self.states: list[dict[str, int]] = [{}]
        self.reads: list[list[str]] = []

    def read(self, txn: Any, ids: Sequence[str]) -> np.ndarray:
        self.reads.append(list(ids))
        state = self.states[txn.id()]
        return np.array([state.get(i, 0) for i in ids], np.int64)


step = st.one_of(
    # a write: some items' counts change (a like, an unlike, an erasure)
    st.tuples(
        st.just("write"), st.dictionaries(st.integers(0, ROWS - 1), st.integers(0, 9)), st.just([])
    ),
    # a ranking call on the newest snapshot, or on one taken a few writes before
    st.tuples(st.just("read"), st.integers(0, 3), st.lists(st.integers(0, ROWS - 1), max_size=8)),
    st.tuples(st.just("forget"), st.just(0), st.just([])),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(step, max_size=40))
def test_every_read_gives_the_counts_of_its_own_snapshot(steps: list[Any]) -> None:
    store = Store()
    table = CountsByRow(store.read)
    for kind, arg, rows in steps:
        if kind == "write":
            state = dict(store.states[-1])
            state.update({f"item{row}": count for row, count in arg.items()})
            store.states.append(state)
        elif kind == "forget":
            table.forget()
        else:
            snapshot = max(0, len(store.states) - 1 - arg)
            asked = np.asarray(rows, np.int64)
            ids = [f"item{row}" for row in rows]
            got = table.counts(Snapshot(snapshot), asked, ids)
            assert got.tolist() == [store.states[snapshot].get(i, 0) for i in ids]


def test_a_snapshot_reads_each_row_once_and_a_write_starts_again() -> None:
    store = Store()
    store.states.append({"item1": 4, "item2": 7})
    table = CountsByRow(store.read)
    assert table.counts(Snapshot(1), np.array([1, 2]), ["item1", "item2"]).tolist() == [4, 7]
    assert table.counts(Snapshot(1), np.array([2, 3]), ["item2", "item3"]).tolist() == [7, 0]
    assert store.reads == [["item1", "item2"], ["item3"]]  # row 2 was held
    store.states.append({"item1": 5})
    assert table.counts(Snapshot(2), np.array([1, 2]), ["item1", "item2"]).tolist() == [5, 0]
    assert store.reads[-1] == ["item1", "item2"]


def test_ranking_reads_the_counts_once_per_snapshot_and_sees_every_write(
    tmp_path: Path,
) -> None:
    """A catalog ranked by retrieval (``full_rank_limit=0``): every count a ranking
    call gets is LMDB's as of its snapshot; a second call on the same snapshot reads
    no count the first one read; after another user's likes and an erasure the
    counts are read again, and the scores are those of a store that never had the
    erased user."""
    items = catalog_items(24)
    ids = [item["id"] for item in items]

    def fill(path: Path, users: list[str]) -> Any:
        ranking = RankingConfig(full_rank_limit=0)  # every call retrieves
        engine = make_engine(path, WordHashEncoder(), ranking=ranking)
        engine.catalog.upsert(items)
        for k, user in enumerate(users):
            liked = ids[k : k + 6]
            engine.interact(user, [{"kind": "like", "item_id": i} for i in liked])
        return engine

    users = ["a", "b", "c", "erased"]
    with fill(tmp_path / "one", users) as one, fill(tmp_path / "two", users[:3]) as two:
        popularity: Popularity = one._users.ranking.popularity
        table, reads = popularity.by_row, []
        held_counts = table.counts

        def checked(txn: Any, rows: np.ndarray, asked: Sequence[str]) -> np.ndarray:
            got = held_counts(txn, rows, asked)
            assert got.tolist() == popularity.shared.counts(txn, asked).tolist()
            return got

        def counting(txn: Any, asked: Sequence[str], read: Any = table._read) -> np.ndarray:
            reads.append(len(asked))
            return read(txn, asked)

        table.counts, table._read = checked, counting  # type: ignore[method-assign]
        first = [r.item_id for r in one.recommend("a", 5)]
        assert reads and reads[0] > 0
        held = len(reads)
        assert [r.item_id for r in one.recommend("a", 5)] == first
        assert len(reads) == held  # the same pool, the same snapshot: nothing read
        for engine in (one, two):  # another user's likes move the counts
            engine.interact("d", [{"kind": "like", "item_id": i} for i in ids[:9]])
        one.recommend("a", 5)
        assert len(reads) > held
        one.erase("erased")
        after = [(r.item_id, r.score) for r in one.recommend("a", 5)]
        assert after == [(r.item_id, r.score) for r in two.recommend("a", 5)]


def test_the_module_examples_run() -> None:
    import doctest

    from ownrank.engine import counts_by_row

    failed, attempted = doctest.testmod(counts_by_row)
    assert attempted > 0 and failed == 0
