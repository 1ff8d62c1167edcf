"""The neighbour lists held by owner (``storage/lists_by_owner.py``) equal LMDB's, bit
for bit, after any sequence of catalog writes, warm-ups, another process's writes and
reads from older snapshots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule
from test_content_neighbours import WORDS, CatalogWrites

from ownrank.storage.neighbour_lists import NeighbourLists

from conftest import WordHashEncoder, make_engine

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


class HeldLists(CatalogWrites):
    """``CatalogWrites``'s catalog writes (and its checks of the lists against a build
    from scratch), with the held table read, filled and bypassed in between."""

    def __init__(self) -> None:
        super().__init__()
        self.lists = self.engine.catalog.neighbours.lists
        self.engine.catalog.upsert([{"id": f"i{i}", "title": WORDS[i % 12]} for i in range(8)])

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

    @rule(
        items=st.lists(st.integers(0, 25), min_size=1, max_size=3),
        words=st.booleans(),
        then=st.integers(-1, 25),
    )
    def another_process_writes(self, items: list[int], words: bool, then: int) -> None:
        """Catalog writes this process's table is not told of, as another process's
        are: items re-embedded (their lists and their neighbours' rewritten), or only
        a new version of the lists; ``then`` (unless -1): an item this process
        re-embeds right after, before any read."""
        if words:
            held, self.lists.held = self.lists.held, None
            try:
                title = " ".join(WORDS[(3 * i) % 12] for i in items)
                self.engine.catalog.upsert([{"id": f"i{i}", "title": title} for i in items])
            finally:
                self.lists.held = held
        else:
            with self.engine._env.write() as txn:
                self.lists._changed(txn)
        if then >= 0:
            self.engine.catalog.upsert([{"id": f"i{then}", "title": f"{WORDS[then % 12]} fig"}])

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


TestHeldLists = HeldLists.TestCase
TestHeldLists.settings = settings(
    max_examples=30,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_lists_are_held_as_written_and_at_warm_up_and_another_version_starts_again(
    tmp_path: Path,
) -> None:
    """The process that writes the lists holds them (nothing read from LMDB after a
    catalog built in it); a process that opens the store holds them all after its
    warm-up, and its own catalog writes keep them held; a version of the lists it
    was not told of (another process's write) empties the table."""
    config: dict[str, Any] = {
        "content_neighbours": 3,
        "lmdb_sync": False,
        "neighbour_lists_in_memory": 0,  # (so the lists are held by owner)
    }
    items = [{"id": f"i{i}", "title": WORDS[i % 12]} for i in range(20)]
    reads: list[int] = []

    def counted(lists: NeighbourLists) -> Any:
        read_many = lists.read_many

        def counting(txn: Any, owners: np.ndarray) -> Any:
            reads.append(len(owners))
            return read_many(txn, owners)

        lists.read_many = counting  # type: ignore[method-assign]
        return read_many

    def every_list_held(lists: NeighbourLists, read_many: Any) -> np.ndarray:
        every = engine.catalog.keeper.live_rows([item["id"] for item in items])
        with engine._env.read() as txn:
            same_entries(lists.get_many(txn, every), read_many(txn, every))
        assert reads == []
        return every

    with make_engine(tmp_path / "s", WordHashEncoder(dimension=16), **config) as engine:
        engine.catalog.upsert(items)
        lists = engine.catalog.neighbours.lists
        every_list_held(lists, counted(lists))
    with make_engine(tmp_path / "s", WordHashEncoder(dimension=16), **config) as engine:
        lists = engine.catalog.neighbours.lists
        assert lists.held is not None and lists.held.entries >= 20 * 3  # the warm-up read
        read_many = counted(lists)
        old_row = int(engine.catalog.keeper.live_rows(["i3"])[0])
        engine.catalog.upsert([{"id": "i3", "title": "kiwi lemon"}])  # a re-embed: a new row
        every = every_list_held(lists, read_many)
        assert old_row not in every.tolist()
        with engine._env.write() as txn:
            lists._changed(txn)
        with engine._env.read() as txn:
            lists.get_many(txn, every)
        assert reads == [20] and lists.held.entries == 20 * 3


def test_the_module_examples_run() -> None:
    import doctest

    from ownrank.storage import lists_by_owner

    failed, attempted = doctest.testmod(lists_by_owner)
    assert attempted > 0 and failed == 0
