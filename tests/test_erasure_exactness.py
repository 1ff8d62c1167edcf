"""Erasure is exact: after ``erase``, the store is the store that never saw the user.

A hypothesis state machine drives two stores side by side with the same fixed
clock: store A sees every operation, store B every operation except those of
one designated target user (after each erasure, a fresh target id). Whenever
the current target has no record (all the earlier ones were erased), everyone
else must see the same world in both stores, bit for bit: the same
recommendations with the same float scores, the same exports, the same shared
statistics down to the bytes of the ``shared_counts``, ``popular_rank`` and
``co_pairs`` databases (the stores run the collaborative layer, which includes
popularity); and in A nothing of the target is left (record, data key, ledger,
raw id or queries anywhere under the data directory).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from ownrank import Engine, UserErasedError
from ownrank.engine.config import EngineConfig, RankingConfig

from conftest import WordHashEncoder
from test_catalog import TOPICS, catalog_items
from test_shared_invariant import check_invariant

ORDINARY = ["u0", "u1", "u2"]
# never a substring of item titles, bodies, ids or ordinary queries (the audit scans for it)
TARGET_PREFIX = "tgt-7f3a"
# a word only the target ever searches for: it must not survive the erasure anywhere on disk
TARGET_QUERY_WORD = "zqxwtargetonly"
POOL = catalog_items(24)
ITEM_IDS = [item["id"] for item in POOL]
INITIAL = 16
START = 1_770_000_000.0
MAX_EVENTS = 6  # small, so the per-user cap drops old events during a run

item_id = st.sampled_from([*ITEM_IDS, "not-in-catalog"])


def event_strategy(query_words: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """One feedback event of any kind, with the clock's time or an explicit offset."""
    offset = st.none() | st.integers(-86_400, 0)
    on_item = st.builds(
        lambda kind, item, ts: {"kind": kind, "item_id": item, "ts": ts},
        st.sampled_from(["like", "dislike", "click", "view", "skip"]),
        item_id,
        offset,
    )
    rating = st.builds(
        lambda item, value, ts: {"kind": "rating", "item_id": item, "value": value, "ts": ts},
        item_id,
        st.sampled_from([1.0, 2.5, 3.0, 4.0, 5.0]),
        offset,
    )
    dwell = st.builds(
        lambda item, value, ts: {"kind": "dwell", "item_id": item, "value": value, "ts": ts},
        item_id,
        st.sampled_from([0.0, 30.0, 400.0]),
        offset,
    )
    search = st.builds(
        lambda words, ts: {"kind": "search", "query": " ".join(words), "ts": ts},
        st.lists(st.sampled_from(query_words), min_size=1, max_size=3),
        offset,
    )
    return st.one_of(on_item, on_item, rating, dwell, search)


TARGET = "<target>"  # stands for the current target id in rules
# the target is drawn as often as two ordinary users together
users = st.sampled_from([*ORDINARY, TARGET, TARGET])
ordinary_events = st.lists(event_strategy(TOPICS), min_size=1, max_size=4)
target_events = st.lists(event_strategy([*TOPICS, TARGET_QUERY_WORD]), min_size=1, max_size=4)


class FakeClock:
    """A clock both stores share; rules move it forward."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def retitled(index: int, variant: int) -> dict[str, Any]:
    """Pool item ``index``, with its original text (variant 0) or a rewritten one."""
    item = dict(POOL[index])
    if variant:
        topic = TOPICS[index % len(TOPICS)]
        item["title"] = f"{topic} story retold {variant} {TOPICS[(index + variant) % len(TOPICS)]}"
    return item


def store_snapshot(engine: Engine) -> dict[str, Any]:
    """Shared statistics (decoded and byte for byte) and the store's entry counts."""
    with engine._env.read() as txn:
        return {
            "totals": engine._shared.totals(txn),
            "users": engine._shared.users(txn),
            "popvec": engine._shared.popvec(txn).tolist(),
            "co": engine._shared.co.totals(txn),
            **{
                db: list(txn.cursor(db=engine._env.db(db)))
                for db in ("shared_counts", "popular_rank", "co_pairs")
            },
            "records": engine._users.records.count(txn),
            "data_keys": engine._keystore.count(),
        }


class ErasureExactness(RuleBasedStateMachine):
    """Store A sees everything; store B everything but the target's operations."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="ownrank-exact-"))
        self.clock = FakeClock()
        self.a = self._open("a")
        self.b = self._open("b")
        self.target_no = 0
        self.targets = [self.target]
        self.erased: set[str] = set()  # ordinary users erased (in both) and not recreated
        for engine in self.stores:
            engine.catalog.upsert(POOL[:INITIAL])

    def _open(self, name: str) -> Engine:
        engine = Engine(
            self.tmp / name,
            EngineConfig(
                lmdb_sync=False,
                max_events=MAX_EVENTS,
                # the collaborative layer on (it includes popularity), with a small set so
                # pairs come and go as likes arrive, and a weight so it moves every score
                shared_statistics="collaborative",
                collaborative_items=3,
                ranking=RankingConfig(collaborative_weight=0.5),
            ),
            encoder=WordHashEncoder(),
            # every part of the engine reads this one clock (patching attributes
            # afterwards missed the write path, whose wall-clock times made the two
            # stores' records differ by a second now and then)
            clock=self.clock,
        )
        return engine

    @property
    def stores(self) -> tuple[Engine, Engine]:
        return self.a, self.b

    @property
    def target(self) -> str:
        return f"{TARGET_PREFIX}-{self.target_no}"

    @property
    def target_live(self) -> bool:
        """The current target has a record in A (every write of it creates one)."""
        return self.a._users.record(self.target) is not None

    def teardown(self) -> None:
        try:
            self.a.close()
            self.b.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _events(self, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for spec in specs:
            event = {k: v for k, v in spec.items() if k != "ts"}
            if spec["ts"] is not None:
                event["timestamp"] = int(self.clock.now) + spec["ts"]
            out.append(event)
        return out

    def _revive(self, user: str) -> None:
        """An ordinary user erased earlier comes back explicitly (as the SDK requires)."""
        if user in self.erased:
            for engine in self.stores:
                try:
                    engine.set_consent(user, True)
                    raise AssertionError("a write recreated an erased user")
                except UserErasedError:
                    pass
                engine.recreate_user(user)
            self.erased.discard(user)

    @initialize(
        picks=st.lists(st.sampled_from(ITEM_IDS[:INITIAL]), min_size=1, max_size=4, unique=True),
        shared=st.sampled_from(ORDINARY),
    )
    def target_has_history(self, picks: list[str], shared: str) -> None:
        """The target starts with likes (so a ledger), one of them also liked by an
        ordinary user (so a shared count the erasure must bring down, not remove)."""
        self.a.interact(self.target, [{"kind": "like", "item_id": i} for i in picks])
        for engine in self.stores:
            engine.interact(shared, [{"kind": "like", "item_id": picks[0]}])

    # -- the catalog (both stores) --------------------------------------------------------

    @rule(
        picks=st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=4, unique=True),
        variant=st.integers(0, 2),
    )
    def upsert(self, picks: list[int], variant: int) -> None:
        items = [retitled(i, variant) for i in picks]
        for engine in self.stores:
            engine.catalog.upsert(items)

    @rule(picks=st.lists(st.sampled_from(ITEM_IDS), min_size=1, max_size=3, unique=True))
    def delete(self, picks: list[str]) -> None:
        for engine in self.stores:
            engine.catalog.delete(picks)

    @rule(seconds=st.integers(1, 3_600))
    def advance_clock(self, seconds: int) -> None:
        self.clock.now += seconds

    # -- users: ordinary ones in both stores, the target in A only --------------------------

    def _apply(self, user: str, op: Callable[[Engine, str], Any]) -> list[Any]:
        """``op`` on both stores for an ordinary user, on A alone for the target."""
        if user == TARGET:
            return [op(self.a, self.target)]
        self._revive(user)
        return [op(engine, user) for engine in self.stores]

    @rule(user=users, bulk=st.booleans(), data=st.data())
    def interact(self, user: str, bulk: bool, data: st.DataObject) -> None:
        """Feedback through ``interact`` or the bulk path (``interact_many``)."""
        drawn = data.draw(target_events if user == TARGET else ordinary_events)
        events = self._events(drawn)

        def write(engine: Engine, uid: str) -> Any:
            if bulk:
                return engine.interact_many({uid: events}).reports[uid]
            return engine.interact(uid, events)

        reports = self._apply(user, write)
        assert all(r == reports[0] for r in reports)

    @rule(
        user=users,
        items=st.none() | st.lists(st.sampled_from(ITEM_IDS), min_size=1, max_size=3),
        window=st.sampled_from(["none", "before", "after", "between"]),
    )
    def forget(self, user: str, items: list[str] | None, window: str) -> None:
        kwargs = self._forget_args(items, window)
        reports = self._apply(user, lambda engine, uid: engine.forget(uid, **kwargs))
        assert all(r == reports[0] for r in reports)

    def _forget_args(self, items: list[str] | None, window: str) -> dict[str, Any]:
        if items is None and window == "none":
            window = "before"
        now = self.clock.now
        kwargs: dict[str, Any] = {"item_ids": items}
        if window in ("before", "between"):
            kwargs["before"] = datetime.fromtimestamp(now - 3_600, UTC)
        if window in ("after", "between"):
            kwargs["after"] = datetime.fromtimestamp(now - 43_200, UTC)
        return kwargs

    @rule(user=users, shared=st.booleans())
    def consent(self, user: str, shared: bool) -> None:
        versions = self._apply(user, lambda engine, uid: engine.set_consent(uid, shared))
        assert all(v == versions[0] for v in versions)

    @rule(user=st.sampled_from([*ORDINARY, TARGET, "nobody"]))
    def recommend(self, user: str) -> None:
        """May replay a user whose items were deleted (a write)."""
        if user == TARGET:
            self.a.recommend(self.target, 5)  # never creates the target
        else:
            for engine in self.stores:
                engine.recommend(user, 5)

    @rule(user=st.sampled_from(ORDINARY))
    def erase_ordinary(self, user: str) -> None:
        receipts = [engine.erase(user) for engine in self.stores]
        assert receipts[0].events_removed == receipts[1].events_removed
        assert receipts[0].shared_units_subtracted == receipts[1].shared_units_subtracted
        self.erased.add(user)

    @precondition(lambda self: self.target_live)
    @rule()
    def erase_target(self) -> None:
        """Erase the target in A; later target operations use a fresh id."""
        target = self.target
        receipt = self.a.erase(target)
        assert receipt.existed and receipt.data_key_destroyed
        key = self.a._users.key(target)
        with self.a._env.read() as txn:
            assert self.a._users.records.raw(txn, key) is None
        assert self.a._keystore.wrapped(key) is None
        report = self.a.audit(target, {"query": TARGET_QUERY_WORD.encode()})
        assert report.clean and report.tombstone_erased_at is not None, report.as_dict()
        self.target_no += 1
        self.targets.append(self.target)

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def ledgers_add_up(self) -> None:
        check_invariant(self.a, [*ORDINARY, *self.targets])
        check_invariant(self.b, ORDINARY)

    @precondition(lambda self: not self.target_live)
    @invariant()
    def everyone_else_sees_a_world_without_the_target(self) -> None:
        for user in [*ORDINARY, "nobody"]:
            ra, rb = self.a.recommend(user, 10), self.b.recommend(user, 10)
            assert [(r.item_id, r.score) for r in ra] == [(r.item_id, r.score) for r in rb]
            assert self.a.export(user) == self.b.export(user)
        assert store_snapshot(self.a) == store_snapshot(self.b)
        for target in self.targets:
            key = self.a._users.key(target)
            assert self.a._users.record(target) is None
            assert self.a._keystore.wrapped(key) is None


ErasureExactness.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_erasure_is_exact = ErasureExactness.TestCase
