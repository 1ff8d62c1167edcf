"""Shared statistics always equal the sum of the ledgers of the users that exist."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ownrank import Engine, UserErasedError
from ownrank.engine.shared_stats import f_pop, q_vec

from conftest import WordHashEncoder, make_engine
from test_catalog import catalog_items

USERS = ["u0", "u1", "u2", "u3"]
ITEMS = [i["id"] for i in catalog_items(24)]

op = st.one_of(
    st.tuples(st.just("like"), st.sampled_from(USERS), st.sampled_from(ITEMS)),
    st.tuples(st.just("dislike"), st.sampled_from(USERS), st.sampled_from(ITEMS)),
    st.tuples(st.just("forget"), st.sampled_from(USERS), st.sampled_from(ITEMS)),
    st.tuples(st.just("erase"), st.sampled_from(USERS), st.just("")),
    st.tuples(st.just("consent"), st.sampled_from(USERS), st.sampled_from(["yes", "no"])),
    st.tuples(st.just("delete-item"), st.just(""), st.sampled_from(ITEMS)),
    st.tuples(st.just("retitle-item"), st.just(""), st.sampled_from(ITEMS)),
    st.tuples(st.just("recommend"), st.sampled_from(USERS), st.just("")),
)


def check_invariant(engine: Engine, users: list[str] = USERS) -> None:
    """Counts, contributing users, popvec and the rank index all equal what the
    ledgers of the existing users add up to, and nothing else is stored."""
    expected: dict[str, int] = {}
    contributing = 0
    for user_id in users:
        record = engine.users.record(user_id)
        if record is None:
            continue
        items = record.ledger.get("pop", [])
        contributing += bool(items)
        for item_id in items:
            expected[item_id] = expected.get(item_id, 0) + 1
    with engine.env.read() as txn:
        totals = engine.shared.totals(txn)
        assert totals == expected
        assert engine.shared.users(txn) == contributing
        dim = engine.identity.dimension
        popvec = np.zeros(dim + 1, dtype=np.int64)  # + the intercept feature
        for item_id, count in totals.items():
            stored = engine.catalog.store.get_item(txn, item_id)
            if stored is not None:
                found = engine.catalog.store.get_vector(txn, stored.row, dim)
                assert found is not None
                q = q_vec(found[1])
                popvec += f_pop(count) * q
        assert (engine.shared.popvec(txn) == popvec).all()
        keys = [bytes(k) for k in txn.cursor(db=engine.shared.counts_db).iternext(values=False)]
        assert {k for k in keys if not k.startswith(b"pop\x00")} <= {b"users", b"popvec"}
        ranked = engine.shared.top(txn, 1000)
        assert ranked == sorted(totals, key=lambda i: (-totals[i], i))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, min_size=1, max_size=25))
def test_shared_counts_equal_the_sum_of_ledgers(ops: list[tuple[str, str, str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp, make_engine(Path(tmp), WordHashEncoder()) as engine:
        engine.catalog.upsert(catalog_items(24))
        erased: set[str] = set()
        for kind, user, arg in ops:
            if kind in ("like", "dislike", "consent") and user in erased:
                with pytest.raises(UserErasedError):  # the tombstone stands
                    engine.set_consent(user, True)
                engine.recreate_user(user)  # explicitly
                erased.discard(user)
            if kind in ("like", "dislike"):
                if arg in engine.catalog:
                    engine.interact(user, [{"kind": kind, "item_id": arg}])
            elif kind == "forget":
                if engine.users.record(user) is not None:
                    engine.forget(user, [arg])
            elif kind == "erase":
                engine.erase(user)
                erased.add(user)
            elif kind == "consent":
                engine.set_consent(user, arg == "yes")
            elif kind == "delete-item":
                engine.catalog.delete([arg])
            elif kind == "retitle-item":
                engine.catalog.upsert([{"id": arg, "title": f"{arg} rewritten entirely"}])
            else:
                engine.recommend(user, 5)  # may replay a user whose items were deleted
            check_invariant(engine)
