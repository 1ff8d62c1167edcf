"""Content-neighbour lists: catalog data maintained step by step, always equal to a
build from scratch; built in the background when a change is costly; no user data."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from typer.testing import CliRunner

from ownrank import Engine
from ownrank.engine import scorer_neighbours
from ownrank.engine.config import RankingConfig
from ownrank.engine.content_neighbours import LOCK_FILE, merge_list, quantize, top_lists
from ownrank.service.cli import app
from ownrank.storage.process_lock import ProcessLock

from conftest import WordHashEncoder, make_engine

WORDS = [
    "apple",
    "banana",
    "cherry",
    "date",
    "elder",
    "fig",
    "grape",
    "honey",
    "ice",
    "jam",
    "kiwi",
    "lemon",
]


def test_quantized_dot_products_are_exact_in_float32() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((300, 384))
    vectors[0] = np.abs(vectors[0])  # the largest dot products: a vector with itself
    q = quantize(vectors)
    exact = q.astype(np.int64) @ q.astype(np.int64).T
    assert np.abs(q).sum(axis=1).max() * np.abs(q).max() >= 2**20  # not trivially small
    assert np.array_equal((q @ q.T).astype(np.int64), exact)
    assert np.array_equal((q[:7] @ q.T).astype(np.int64), exact[:7])  # any block shape
    # a row's quantization does not depend on the rows beside it
    assert np.array_equal(quantize(vectors[5:6]), q[5:6])


def test_lists_break_ties_by_the_lower_row() -> None:
    sims = np.array([[0.0, 5.0, 5.0, 5.0, 1.0], [3.0, 0.0, 3.0, 9.0, 3.0]], np.float32)
    found = top_lists(sims, np.array([0, 1]), np.array([10, 11, 12, 13, 14]), 2)
    assert [r.tolist() for r, _s in found] == [[11, 12], [13, 10]]
    rows, sims_ = merge_list(
        np.array([11, 12]), np.array([5, 5], np.int32), np.array([9, 15]), np.array([5, 6]), 2
    )
    assert rows.tolist() == [15, 9] and sims_.tolist() == [6, 5]


class CatalogWrites(RuleBasedStateMachine):
    """Any sequence of catalog writes: the incrementally kept lists and reverse index
    equal a build from scratch after every step."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.tmp = tempfile.TemporaryDirectory()
        self.engine = make_engine(
            Path(self.tmp.name) / "s",
            WordHashEncoder(dimension=16),
            content_neighbours=3,
            lmdb_sync=False,
            reconcile_on_open=False,
            warm_up_on_open=False,
        )

    @rule(
        items=st.lists(
            st.tuples(st.integers(0, 25), st.lists(st.sampled_from(WORDS), min_size=1, max_size=3)),
            min_size=1,
            max_size=6,
        )
    )
    def upsert(self, items: list[tuple[int, list[str]]]) -> None:
        # a known id with new words is a re-embed; with the same words, nothing moves
        self.engine.catalog.upsert([{"id": f"i{i}", "title": " ".join(w)} for i, w in items])

    @rule(ids=st.lists(st.integers(0, 25), min_size=1, max_size=4))
    def delete(self, ids: list[int]) -> None:
        self.engine.catalog.delete([f"i{i}" for i in ids])

    @rule(item=st.integers(0, 25), value=st.integers(0, 3))
    def properties(self, item: int, value: int) -> None:
        if f"i{item}" in self.engine.catalog:
            self.engine.catalog.update_properties(f"i{item}", {"v": value})

    @invariant()
    def lists_equal_a_build_from_scratch(self) -> None:
        neighbours = self.engine.catalog.neighbours
        assert neighbours.status().current
        assert neighbours.check() == []

    @invariant()
    def lists_in_memory_equal_the_stored_ones(self) -> None:
        """Read from memory (current after every write) and from LMDB, bit for bit, the
        owners named by an array of rows (-1, a row past the lists: none); the two
        paddings may differ in width only."""
        lists = self.engine.catalog.neighbours.lists
        owners = np.array([*range(40), -1, 3, 3, 10_000], np.int64)
        with self.engine._env.read() as txn:
            memory = lists.in_memory(txn)
            assert memory is not None and memory.version == lists.version(txn)
            from_memory = lists.get_many(txn, owners)
            lists.in_memory_entries = 0
            try:
                stored = lists.get_many(txn, owners)
                singly = [None if o < 0 else lists.get(txn, int(o)) for o in owners]
            finally:
                lists.in_memory_entries = 10_000
        for (rows, sims), one in zip(zip(*from_memory, strict=True), singly, strict=True):
            want_rows, want_sims = (np.zeros(0, np.int64),) * 2 if one is None else one
            assert np.array_equal(rows[: len(want_rows)], want_rows)
            assert np.array_equal(sims[: len(want_sims)], want_sims)
            assert (rows[len(want_rows) :] == -1).all() and (sims[len(want_sims) :] == 0).all()
        width = min(from_memory[0].shape[1], stored[0].shape[1])
        for got, want in zip(from_memory, stored, strict=True):
            assert got.dtype == want.dtype and np.array_equal(got[:, :width], want[:, :width])
            assert (got[:, width:] <= 0).all() and (want[:, width:] <= 0).all()

    def teardown(self) -> None:
        self.engine.close()
        self.tmp.cleanup()


TestCatalogWrites = CatalogWrites.TestCase
TestCatalogWrites.settings = settings(
    max_examples=25,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _catalog(n: int) -> list[dict[str, str]]:
    rng = np.random.default_rng(7)
    return [{"id": f"i{i}", "title": " ".join(rng.choice(WORDS, 3))} for i in range(n)]


def test_a_costly_change_is_applied_in_the_background(tmp_path: Path) -> None:
    engine = make_engine(
        tmp_path / "s", WordHashEncoder(), content_neighbours=5, neighbour_sync_budget=0
    )
    try:
        engine.catalog.upsert(_catalog(60))
        neighbours = engine.catalog.neighbours
        deadline = time.monotonic() + 30
        while not neighbours.status().current and time.monotonic() < deadline:
            time.sleep(0.05)
        assert neighbours.status().current and neighbours.status().lists == 60
        engine.catalog.delete(["i1", "i2"])
        assert engine.catalog.neighbours.update()  # waits for the thread's step, or does it
        assert neighbours.status().current and neighbours.check() == []
    finally:
        engine.close()


def test_an_older_store_gets_its_lists_on_open(tmp_path: Path) -> None:
    encoder = WordHashEncoder()
    engine = make_engine(tmp_path / "s", encoder, content_neighbours=0)
    engine.catalog.upsert(_catalog(30))
    assert engine.catalog.neighbours.status().lists == 0
    engine.close()
    engine = make_engine(tmp_path / "s", encoder, content_neighbours=4)
    try:
        status = engine.catalog.neighbours.status()
        assert status.current and status.lists == 30 and status.k == 4
        assert engine.catalog.neighbours.check() == []
    finally:
        engine.close()


def _lists_digest(engine: Engine) -> str:
    lists = engine.catalog.neighbours.lists
    digest = hashlib.sha256()
    with engine._env.read() as txn:
        for owner, rows, sims in lists.iter_lists(txn):
            digest.update(f"{owner}:{rows.tolist()}:{sims.tolist()}".encode())
        for row, owners in lists.iter_owners(txn):
            digest.update(f"{row}<-{owners.tolist()}".encode())
        digest.update(repr((lists.seq(txn), lists.k(txn))).encode())
    return digest.hexdigest()


def test_users_never_change_the_lists(tmp_path: Path) -> None:
    engine = make_engine(tmp_path / "s", WordHashEncoder(), content_neighbours=5)
    try:
        engine.catalog.upsert(_catalog(40))
        before = _lists_digest(engine)
        engine.interact("u1", [{"kind": "like", "item_id": "i3"}])
        engine.interact("u1", [{"kind": "dislike", "item_id": "i4"}])
        engine.recommend("u1")
        engine.erase("u1")
        assert _lists_digest(engine) == before
    finally:
        engine.close()


def test_the_neighbour_score_sums_the_rated_items_lists(tmp_path: Path) -> None:
    ranking = RankingConfig(personal_weight=0.0, neighbour_weight=1.0, popularity_weight=0.0)
    engine = make_engine(tmp_path / "s", WordHashEncoder(), content_neighbours=3, ranking=ranking)
    try:
        engine.catalog.upsert(_catalog(40))
        engine.interact("u1", [{"kind": "like", "item_id": "i3"}])
        recs = engine.recommend("u1", n=5)
        with engine._env.read() as txn:
            (found,) = engine.catalog.neighbours.of_rows(
                txn, engine.catalog.keeper.live_rows(["i3"]).tolist()
            )
            assert found is not None
            listed = {engine.catalog.store.item_id_of_row(txn, int(r)) for r in found[0]}
        top = [r.item_id for r in recs[: len(listed)]]
        assert set(top) == listed  # the liked item's neighbours come first...
        for rec in recs[: len(listed)]:  # ...explained by it
            assert rec.explanation["reason"] == "neighbours"
            assert rec.explanation["because_of"] == "i3"
    finally:
        engine.close()


def test_no_list_entry_among_the_candidates_scores_zero(tmp_path: Path) -> None:
    """A filter that leaves none of the rated items' neighbours among the candidates:
    the neighbour part is 0 for every candidate (no list entry to sum)."""
    ranking = RankingConfig(personal_weight=0.0, neighbour_weight=1.0, popularity_weight=0.0)
    engine = make_engine(tmp_path / "s", WordHashEncoder(), content_neighbours=1, ranking=ranking)
    try:
        engine.catalog.upsert(_catalog(12))
        engine.interact("u1", [{"kind": "like", "item_id": "i3"}])
        with engine._env.read() as txn:
            (found,) = engine.catalog.neighbours.of_rows(
                txn, engine.catalog.keeper.live_rows(["i3"]).tolist()
            )
            assert found is not None
            (listed,) = [engine.catalog.store.item_id_of_row(txn, int(r)) for r in found[0]]
        recs = engine.recommend("u1", n=3, filters={"id": listed})  # the one neighbour only
        assert [r.item_id for r in recs] == [listed]
        recs = engine.recommend("u1", n=20, filters={"id": {"$ne": listed}})
        assert recs and all(r.explanation["parts"]["neighbours"] == 0.0 for r in recs)
    finally:
        engine.close()


@pytest.mark.parametrize("dense", [True, False], ids=["dense sums", "sorted sums"])
def test_kept_tables_sum_what_the_lists_read_anew_sum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dense: bool
) -> None:
    """A kept pool ranks from tables over the lists in memory (each entry's slot and
    closeness, built once per version of the lists); scores and explanations equal
    those from lists read from LMDB and summed by row (``scorer_neighbours.Sums``, as a
    retrieved pool's score reads them, either way of summing), bit for bit, before and
    after catalog writes that change the lists (the tables follow the new version)."""
    monkeypatch.setattr(scorer_neighbours, "DENSE_SUM_ROWS_PER_ENTRY", 10_000 if dense else 0)
    ranking = RankingConfig(personal_weight=0.0, neighbour_weight=1.0, popularity_weight=0.0)
    engine = make_engine(tmp_path / "s", WordHashEncoder(), content_neighbours=4, ranking=ranking)
    try:
        engine.catalog.upsert(_catalog(40))
        engine.interact(
            "u1",
            [
                {"kind": "like", "item_id": "i3"},
                {"kind": "like", "item_id": "i17"},
                {"kind": "dislike", "item_id": "i8"},
            ],
        )
        scorer = next(s for s in engine._users.ranking.scorers if s.name == "neighbours")
        lists = engine.catalog.neighbours.lists

        def ranked() -> list[tuple[str, float, object]]:
            return [(r.item_id, r.score, r.explanation) for r in engine.recommend("u1", n=30)]

        def both_ways() -> list[tuple[str, float, object]]:
            from_tables = ranked()
            assert scorer._kept_closeness is not None  # the tables were used
            with engine._env.read() as txn:
                assert scorer._kept_closeness[0] is lists.in_memory(txn)
            held, lists.in_memory_entries = lists.in_memory_entries, 0
            try:  # lists read from LMDB, closeness computed
                assert ranked() == from_tables
            finally:
                lists.in_memory_entries = held
            return from_tables

        before = both_ways()
        assert any(r[2].get("because_of") == "i17" for r in before)  # type: ignore[attr-defined]
        engine.catalog.delete(["i4", "i5"])
        engine.catalog.upsert([{"id": "twin", "title": _catalog(40)[17]["title"]}])
        after = both_ways()
        assert after[0][0] == "twin" and after != before
    finally:
        engine.close()


def test_dense_and_list_scores_agree_on_the_nearest_item(tmp_path: Path) -> None:
    """The lists path and the dense path (lists off) put an item's twin first."""
    ranking = RankingConfig(personal_weight=0.0, neighbour_weight=1.0, popularity_weight=0.0)
    encoder = WordHashEncoder()
    engine = make_engine(tmp_path / "s", encoder, content_neighbours=5, ranking=ranking)
    catalog = _catalog(40)
    engine.catalog.upsert([*catalog, {"id": "twin", "title": catalog[3]["title"]}])
    engine.interact("u1", [{"kind": "like", "item_id": "i3"}])
    sparse = engine.recommend("u1", n=1)[0].item_id
    engine.close()
    engine = make_engine(tmp_path / "s", encoder, content_neighbours=0, ranking=ranking)
    try:
        assert engine.recommend("u1", n=1)[0].item_id == sparse == "twin"
    finally:
        engine.close()


def test_the_cli_updates_checks_and_rebuilds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = WordHashEncoder()
    import ownrank.service.cli_common as cli_common

    monkeypatch.setattr(
        cli_common, "Engine", lambda path, config: Engine(path, config, encoder=encoder)
    )
    engine = make_engine(tmp_path / "s", encoder)
    engine.catalog.upsert(_catalog(20))
    engine.close()
    runner = CliRunner()
    for args in ([], ["--check"], ["--rebuild"]):
        result = runner.invoke(app, ["neighbours", "-d", str(tmp_path / "s"), "--json", *args])
        assert result.exit_code == 0, result.output
        assert '"current": true' in result.output and '"lists": 20' in result.output
    result = runner.invoke(app, ["neighbours", "-d", str(tmp_path / "s"), "--check"])
    assert "0 rows differ" in result.output


def test_wide_lists_equal_a_full_sort() -> None:
    """Past 64 k columns the floor comes from a sample of columns: same lists."""
    rng = np.random.default_rng(3)
    sims = rng.integers(-50, 50, size=(40, 4000)).astype(np.float32)  # many ties
    rows = np.arange(4000, dtype=np.int64) * 3 + 7
    own = rng.integers(0, 4000, size=40)
    found = top_lists(sims, own, rows, 50)
    for i, (got_rows, got_sims) in enumerate(found):
        values = sims[i].astype(np.int64)
        cols = [c for c in np.lexsort((np.arange(4000), -values)) if c != own[i]][:50]
        assert got_rows.tolist() == rows[cols].tolist()
        assert got_sims.tolist() == values[cols].tolist()


def test_the_processes_of_a_store_take_turns_at_the_lists(tmp_path: Path) -> None:
    """The service's workers each open the store: while one brings the lists up to date,
    the others compute nothing and then find them current (a second open file's
    ``flock`` conflicts like another process's). A closing engine stops waiting."""
    other = ProcessLock(tmp_path / "s" / LOCK_FILE)  # another process's turn
    # a budget of 0: every catalog write leaves the lists to the background thread
    with make_engine(tmp_path / "s", WordHashEncoder(), neighbour_sync_budget=0) as engine:
        assert other.acquire(wait=False)
        engine.catalog.upsert(_catalog(30))
        time.sleep(0.5)
        assert engine.catalog.neighbours.status().lists == 0  # waiting, not computing
        other.release()
        engine.catalog.neighbours.update()  # waits for the background thread's turn
        status = engine.catalog.neighbours.status()
        assert status.current and status.lists == 30
        assert other.acquire(wait=False)
        engine.catalog.upsert(_catalog(40)[30:])
        started = time.perf_counter()
    assert time.perf_counter() - started < 5.0  # close gave up the wait
    other.release()
    with make_engine(tmp_path / "s", WordHashEncoder()) as engine:
        engine.catalog.neighbours.update()
        assert engine.catalog.neighbours.status().lists == 40


def test_the_process_lock_examples_run() -> None:
    import doctest

    from ownrank.storage import process_lock

    failed, attempted = doctest.testmod(process_lock)
    assert attempted >= 4 and failed == 0


def test_the_lists_in_memory_examples_run() -> None:
    """``ListsInMemory.get_many`` and ``padded`` as their docstrings show them: padded
    blocks, -1 or a row without a list giving an empty row."""
    import doctest

    from ownrank.storage import lists_in_memory

    failed, attempted = doctest.testmod(lists_in_memory)
    assert attempted >= 3 and failed == 0


def test_a_kept_pool_keeps_its_list_slots_for_one_version_of_the_lists() -> None:
    """``CandidatePool.list_slots``: each entry's pool slot (one past the pool for rows
    outside it and for the padding), a last row of that spare slot; rebuilt for another
    version of the lists; never kept for a pool that is not kept (None)."""
    from dataclasses import replace

    from ownrank.engine.candidates import CandidatePool
    from ownrank.storage.lists_in_memory import ListsInMemory

    pool = CandidatePool(np.array([7, 3]), ["a", "b"], np.zeros((2, 1)), np.zeros(1), kept=True)
    sims = np.array([[9, 8], [7, 0]], np.int32)
    old = ListsInMemory(b"1", np.array([[3, 7], [9, -1]]), sims, np.array([2, 1]))
    new = ListsInMemory(b"2", np.array([[7, 5], [3, -1]]), sims, np.array([2, 1]))
    assert pool.list_slots(old).tolist() == [[1, 0], [2, 2], [2, 2]]
    assert pool.list_slots(old) is pool.list_slots(old)  # kept
    assert pool.list_slots(new).tolist() == [[0, 2], [1, 2], [2, 2]]
    assert replace(pool, kept=False).list_slots(new) is None
