"""The neighbour lists held by owner (``storage/lists_by_owner.py``) equal LMDB's, bit
for bit, after any sequence of catalog writes, warm-ups, another process's writes and
reads from older snapshots."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from ownrank.storage.neighbour_lists import NeighbourLists

from conftest import WordHashEncoder, make_engine
from test_content_neighbours import WORDS

OWNERS = st.lists(st.integers(-1, 45), min_size=1, max_size=12)


def same_entries(got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray]) -> None:
    """The same entries in the same order; the paddings may differ in width only."""
    width = min(got[0].shape[1], want[0].shape[1])
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a[:, :width], b[:, :width])
        assert (a[:, width:] <= 0).all() and (b[:, width:] <= 0).all()


def held_and_stored(lists: NeighbourLists, txn: Any, owners: list[int]) -> None:
    """``get_many`` through the held table (the lists are not held whole) against
    ``read_many`` from LMDB, in the same transaction."""
    asked = np.asarray(owners, np.int64)
    whole, lists.in_memory_entries = lists.in_memory_entries, 0
    try:
        got = lists.get_many(txn, asked)
    finally:
        lists.in_memory_entries = whole
    same_entries(got, lists.read_many(txn, asked))


class HeldLists(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.engine = make_engine(
            Path(self.tmp.name) / "s",
            WordHashEncoder(dimension=16),
            content_neighbours=3,
            lmdb_sync=False,
            reconcile_on_open=False,
            warm_up_on_open=False,
        )
        self.lists = self.engine.catalog.neighbours.lists
        self.engine.catalog.upsert([{"id": f"i{i}", "title": WORDS[i % 12]} for i in range(8)])

    @rule(
        items=st.lists(
            st.tuples(st.integers(0, 25), st.lists(st.sampled_from(WORDS), min_size=1, max_size=3)),
            min_size=1,
            max_size=5,
        )
    )
    def upsert(self, items: list[tuple[int, list[str]]]) -> None:
        self.engine.catalog.upsert([{"id": f"i{i}", "title": " ".join(w)} for i, w in items])

    @rule(ids=st.lists(st.integers(0, 25), min_size=1, max_size=4))
    def delete(self, ids: list[int]) -> None:
        self.engine.catalog.delete([f"i{i}" for i in ids])

    @rule(owners=OWNERS)
    def read(self, owners: list[int]) -> None:
        with self.engine._env.read() as txn:
            held_and_stored(self.lists, txn, owners)

    @rule()
    def hold_all(self) -> None:
        whole, self.lists.in_memory_entries = self.lists.in_memory_entries, 0
        try:
            self.lists.hold_all()
        finally:
            self.lists.in_memory_entries = whole

    @rule()
    def another_process_writes(self) -> None:
        """A write of the lists this process's table is not told of (a new version)."""
        with self.engine._env.write() as txn:
            self.lists._changed(txn)

    @rule(
        words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=3),
        item=st.integers(0, 25),
        owners=OWNERS,
    )
    def read_an_older_snapshot(self, words: list[str], item: int, owners: list[int]) -> None:
        """A call that began before a write reads the lists of its own snapshot."""
        with self.engine._env.read() as old:
            self.engine.catalog.upsert([{"id": f"i{item}", "title": " ".join(words)}])
            held_and_stored(self.lists, old, owners)
        with self.engine._env.read() as txn:
            held_and_stored(self.lists, txn, owners)

    @invariant()
    def some_held_lists_equal_the_stored_ones(self) -> None:
        # (a third of the owners: others stay unheld across the writes that follow)
        with self.engine._env.read() as txn:
            held_and_stored(self.lists, txn, list(range(0, 40, 3)))

    def teardown(self) -> None:
        self.engine.close()
        self.tmp.cleanup()


TestHeldLists = HeldLists.TestCase
TestHeldLists.settings = settings(
    max_examples=30,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_own_writes_keep_the_held_lists_and_another_version_starts_again(
    tmp_path: Path,
) -> None:
    """After a warm-up every list is held; this process's catalog write replaces the
    lists it rewrote and keeps the others (nothing read again); a version it was not
    told of empties the table."""
    engine = make_engine(
        tmp_path / "s",
        WordHashEncoder(dimension=16),
        content_neighbours=3,
        lmdb_sync=False,
        neighbour_lists_in_memory=0,  # (so the lists are held by owner)
    )
    with engine:
        engine.catalog.upsert([{"id": f"i{i}", "title": WORDS[i % 12]} for i in range(20)])
        lists = engine.catalog.neighbours.lists
        assert lists.held is not None
        lists.hold_all()
        rows_before = int(engine.catalog.keeper.live_rows([f"i{i}" for i in range(20)]).max())
        assert lists.held.entries == (rows_before + 1) * 3  # every owner row, held
        reads: list[int] = []
        read_many = lists.read_many

        def counting(txn: Any, owners: np.ndarray) -> Any:
            reads.append(len(owners))
            return read_many(txn, owners)

        lists.read_many = counting  # type: ignore[method-assign]
        engine.catalog.upsert([{"id": "i3", "title": "kiwi lemon"}])  # a re-embed: a new row
        new_row = int(engine.catalog.keeper.live_rows(["i3"])[0])
        assert new_row > rows_before
        with engine._env.read() as txn:
            before = np.arange(rows_before + 1)
            got = lists.get_many(txn, before)
            assert reads == []  # every list was still held, the rewritten ones too
            same_entries(got, read_many(txn, before))
            every = np.arange(new_row + 1)
            same_entries(lists.get_many(txn, every), read_many(txn, every))
            assert reads == [new_row - rows_before]  # only the new rows' lists were read
        with engine._env.write() as txn:
            lists._changed(txn)
        with engine._env.read() as txn:
            lists.get_many(txn, every)
        assert reads[-1] == new_row + 1 and lists.held.entries == (new_row + 1) * 3


def test_the_module_examples_run() -> None:
    import doctest

    from ownrank.storage import lists_by_owner

    failed, attempted = doctest.testmod(lists_by_owner)
    assert attempted > 0 and failed == 0
