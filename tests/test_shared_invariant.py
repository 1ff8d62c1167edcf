"""Shared statistics always equal the sum of the ledgers of the users that exist."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ownrank import Engine, UserErasedError
from ownrank.engine.co_counts import CO, CoRow, expected_totals
from ownrank.engine.shared_stats import RANK_MIN_COUNT, f_pop, q_vec, rank_bucket

from conftest import WordHashEncoder, make_engine
from test_catalog import catalog_items

USERS = ["u0", "u1", "u2", "u3"]
ITEMS = [i["id"] for i in catalog_items(24)]

op = st.one_of(
    st.tuples(st.just("like"), st.sampled_from(USERS), st.sampled_from(ITEMS)),
    st.tuples(st.just("dislike"), st.sampled_from(USERS), st.sampled_from(ITEMS)),
    st.tuples(st.just("rate"), st.sampled_from(USERS), st.sampled_from(ITEMS)),
    st.tuples(st.just("forget"), st.sampled_from(USERS), st.sampled_from(ITEMS)),
    st.tuples(st.just("erase"), st.sampled_from(USERS), st.just("")),
    st.tuples(st.just("consent"), st.sampled_from(USERS), st.sampled_from(["yes", "no"])),
    st.tuples(st.just("delete-item"), st.just(""), st.sampled_from(ITEMS)),
    st.tuples(st.just("retitle-item"), st.just(""), st.sampled_from(ITEMS)),
    st.tuples(st.just("re-add-item"), st.just(""), st.sampled_from(ITEMS)),
    st.tuples(st.just("recommend"), st.sampled_from(USERS), st.just("")),
)


def check_in_memory_lookups(engine: Engine) -> None:
    """What ranking reads from the in-memory index and property table (item rows, the
    vectors of a user's items) is what LMDB holds, whatever the catalog went through
    (deletions, re-embedding to a new row)."""
    keeper = engine.catalog.keeper
    keeper.sync()
    with engine._env.read() as txn:
        rows = [engine.catalog.store.row_of(txn, i) for i in ITEMS]
        for user_id in USERS:
            record = engine._users.record(user_id)
            if record is not None:
                from_lmdb = engine.catalog.vectors_of(txn, record.item_ids())
                from_index = engine._users.ranking.candidates.user_vectors(record)
                assert from_index.keys() == from_lmdb.keys()
                for item_id, vector in from_lmdb.items():
                    assert from_index[item_id].tobytes() == vector.tobytes()
    assert keeper.live_rows(ITEMS).tolist() == [-1 if r is None else r for r in rows]


def check_invariant(engine: Engine, users: list[str] = USERS) -> None:
    """Counts, contributing users, popvec and the rank index all equal what the
    ledgers of the existing users add up to, and nothing else is stored."""
    expected: dict[str, int] = {}
    contributing = 0
    sets: list[list[str]] = []
    for user_id in users:
        record = engine._users.record(user_id)
        if record is None:
            continue
        if record.ledger.get(CO):
            sets.append(record.ledger[CO])
            assert record.ledger[CO] == sorted(set(record.ledger[CO]))
            assert set(record.ledger[CO]) <= set(record.ledger["pop"])
        items = record.ledger.get("pop", [])
        contributing += bool(items)
        for item_id in items:
            expected[item_id] = expected.get(item_id, 0) + 1
    with engine._env.read() as txn:
        # the co-occurrence rows decode to the pairs of the ledgers' sets, and are
        # stored canonically (partners ascending, no zero count, no empty row)
        assert engine._shared.co.totals(txn) == expected_totals(sets)
        for _key, raw in txn.cursor(db=engine._shared.co.db):
            row = CoRow.unpack(bytes(raw))
            assert (row.partners[1:] > row.partners[:-1]).all() and row.counts.all()
            assert bytes(raw) == CoRow.pack(row.degree, row.partners, row.counts)
        totals = engine._shared.totals(txn)
        assert totals == expected
        assert engine._shared.users(txn) == contributing
        dim = engine._identity.dimension
        popvec = np.zeros(dim + 1, dtype=np.int64)  # + the intercept feature
        for item_id, count in totals.items():
            stored = engine.catalog.store.get_item(txn, item_id)
            if stored is not None:
                found = engine.catalog.store.get_vector(txn, stored.row, dim)
                assert found is not None
                q = q_vec(found[1])
                popvec += f_pop(count) * q
        assert (engine._shared.popvec(txn) == popvec).all()
        asked = [*sorted(totals), "not-an-item"]  # the batched read ranking uses
        assert engine._shared.counts(txn, asked).tolist() == [totals.get(i, 0) for i in asked]
        # and the counts ranking holds by row (filled by the run's recommends, if any)
        rows = engine.catalog.keeper.live_rows(ITEMS)
        live = [i for i, row in zip(ITEMS, rows.tolist(), strict=True) if row >= 0]
        held = engine._users.ranking.popularity.by_row.counts(txn, rows[rows >= 0], live)
        assert held.tolist() == [totals.get(i, 0) for i in live]
        keys = [bytes(k) for k in txn.cursor(db=engine._shared.counts_db).iternext(values=False)]
        assert {k for k in keys if not k.startswith(b"pop\x00")} <= {b"users", b"popvec"}
        assert engine._shared.top(txn, 1000) == popular_order(totals)
        indexed = txn.stat(engine._shared.rank_db)["entries"]
        assert indexed == sum(1 for c in totals.values() if c >= RANK_MIN_COUNT)


def popular_order(totals: dict[str, int]) -> list[str]:
    """The documented order of ``top``: indexed items by count bucket then id, then
    the tail (below ``RANK_MIN_COUNT``) by exact count then id."""

    def key(item_id: str) -> tuple[int, int, str]:
        bucket = rank_bucket(totals[item_id])
        return (0, -bucket, item_id) if bucket is not None else (1, -totals[item_id], item_id)

    return sorted(totals, key=key)


def rank_and_counts(engine: Engine) -> list[list[tuple[bytes, bytes]]]:
    with engine._env.read() as txn:
        return [
            [(bytes(k), bytes(v)) for k, v in txn.cursor(db=db)]
            for db in (engine._shared.counts_db, engine._shared.rank_db)
        ]


def test_popular_items_are_indexed_by_count_bucket_and_erasure_leaves_no_trace() -> None:
    """Counts up to 12: the items at or above the threshold are in the rank index,
    ordered by bucket then id; erasing users gives the bytes of a store that only
    ever saw the others."""
    users = [f"u{k:02d}" for k in range(12)]
    erased = {"u00", "u05", "u11"}

    def fill(engine: Engine, who: list[str]) -> None:
        engine.catalog.upsert(catalog_items(24))
        for k, user in enumerate(users):  # user k likes items 0 .. 11 - k
            if user in who:
                engine.interact(user, [{"kind": "like", "item_id": i} for i in ITEMS[: 12 - k]])

    with (
        tempfile.TemporaryDirectory() as tmp,
        make_engine(Path(tmp) / "a", WordHashEncoder()) as a,
    ):
        fill(a, users)
        with a._env.read() as txn:
            totals = a._shared.totals(txn)
            assert totals[ITEMS[0]] == 12 and totals[ITEMS[11]] == 1
            top = a._shared.top(txn, 24)
        assert top[0] == ITEMS[0]  # the only item in the highest bucket
        assert top == popular_order(totals)
        assert set(top[:5]) == set(ITEMS[:5])  # counts 12..8: indexed, first
        check_invariant(a, users)
        for user in sorted(erased):
            a.erase(user)
            check_invariant(a, users)
        with make_engine(Path(tmp) / "b", WordHashEncoder()) as b:
            fill(b, [u for u in users if u not in erased])
            assert rank_and_counts(a) == rank_and_counts(b)


def test_an_older_rank_index_is_rebuilt_on_open() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        users = [f"u{k:02d}" for k in range(10)]
        with make_engine(Path(tmp), WordHashEncoder()) as engine:
            engine.catalog.upsert(catalog_items(24))
            for user in users:
                engine.interact(user, [{"kind": "like", "item_id": i} for i in ITEMS[:3]])
            expected = rank_and_counts(engine)
            with engine._env.write() as txn:  # a store from before the bucketed layout
                engine.catalog.store.put_meta(txn, "rank_format", 1)
                txn.drop(engine._shared.rank_db, delete=False)
                txn.put(b"\x00" * 8 + b"stale", b"", db=engine._shared.rank_db)
        with make_engine(Path(tmp), WordHashEncoder()) as engine:
            assert rank_and_counts(engine) == expected
            check_invariant(engine, users)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, min_size=1, max_size=25))
def test_shared_counts_equal_the_sum_of_ledgers(ops: list[tuple[str, str, str]]) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        make_engine(
            Path(tmp),
            WordHashEncoder(),
            shared_statistics="collaborative",  # popularity and the pairs
            collaborative_items=3,
            max_events=8,  # the log cap drops events (and their pairs) during a run
        ) as engine,
    ):
        engine.catalog.upsert(catalog_items(24))
        erased: set[str] = set()
        for kind, user, arg in ops:
            if kind in ("like", "dislike", "rate", "consent") and user in erased:
                with pytest.raises(UserErasedError):  # the tombstone stands
                    engine.set_consent(user, True)
                engine.recreate_user(user)  # explicitly
                erased.discard(user)
            if kind in ("like", "dislike"):
                if arg in engine.catalog:
                    engine.interact(user, [{"kind": kind, "item_id": arg}])
            elif kind == "rate":
                if arg in engine.catalog:
                    value = 1.0 + (sum(map(ord, user + arg)) % 5)
                    engine.interact(user, [{"kind": "rating", "item_id": arg, "value": value}])
            elif kind == "forget":
                if engine._users.record(user) is not None:
                    engine.forget(user, [arg])
            elif kind == "erase":
                engine.erase(user)
                erased.add(user)
            elif kind == "consent":
                engine.set_consent(user, arg == "yes")
            elif kind == "delete-item":
                engine.catalog.delete([arg])
            elif kind == "re-add-item":  # back in the catalog, under its old id
                engine.catalog.upsert([i for i in catalog_items(24) if i["id"] == arg])
            elif kind == "retitle-item":
                engine.catalog.upsert([{"id": arg, "title": f"{arg} rewritten entirely"}])
            else:
                engine.recommend(user, 5)  # may replay a user whose items were deleted
            check_invariant(engine)
            check_in_memory_lookups(engine)
