"""Erasure wins every race with concurrent writers in other processes.

Three worker processes open the same data directory: two writers and one
eraser. In each round they meet at a barrier, then race on a batch of fresh
users: the writers call ``interact`` a few times per user with random tiny
pauses (a quarter of the calls through ``interact_many``, the bulk path, for a
few users at once), the eraser calls ``erase`` on each user at a random
moment. A write that commits before the erasure is counted in its receipt; a
write after it must be refused (``UserErasedError``, or listed as erased by
the bulk path). Nothing may come back: no record, no data key, no shared
contribution of any raced user; and every accepted event is exactly one of
the events the erasure removed (none lost, none after it).
"""

from __future__ import annotations

import multiprocessing as mp
import random
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ownrank import Engine, UserErasedError
from ownrank.engine.audit import shared_statistics_consistent

from conftest import WordHashEncoder, make_engine
from test_catalog import catalog_items
from test_shared_invariant import check_invariant

RACES = 1_000
BATCH = 8  # users raced per barrier round
ROUNDS = RACES // BATCH
WRITERS = 2
MAX_WRITES = 3  # per writer and user
BULK_SHARE = 0.25  # of writes made through interact_many
ITEMS = [item["id"] for item in catalog_items(40)]
KINDS = ["like", "click", "view", "dislike"]
BARRIER_TIMEOUT = 60.0


def uid(race: int) -> str:
    return f"r{race}"


def open_engine(path: Path, **config: Any) -> Engine:
    return make_engine(path, WordHashEncoder(), lmdb_sync=False, **config)


def pause(rng: random.Random, longest: float) -> None:
    """Sometimes none, otherwise a random sleep of up to ``longest`` seconds."""
    if rng.random() < 0.7:
        time.sleep(rng.random() * longest)


@dataclass
class Outcome:
    """What one worker saw, sent back to the test."""

    role: str
    accepted: dict[str, int] = field(default_factory=dict)  # events committed, per user
    accepted_calls: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # UserErasedError, per user
    bulk_accepted: int = 0  # users written by interact_many
    bulk_rejected: int = 0  # users interact_many reported erased
    receipts: dict[str, tuple[int, bool, bool]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def _events(rng: random.Random) -> list[dict[str, Any]]:
    return [
        {"kind": rng.choice(KINDS), "item_id": rng.choice(ITEMS)} for _ in range(rng.randint(1, 2))
    ]


def _writer(engine: Engine, rng: random.Random, barrier: Any, out: Outcome) -> None:
    """``interact`` per user, and sometimes ``interact_many`` for a few users at once
    (the bulk path has its own commit loop and reports erased users instead of raising)."""
    for rnd in range(ROUNDS):
        users = [uid(rnd * BATCH + j) for j in range(BATCH)]
        plan = [u for u in users for _ in range(rng.randint(1, MAX_WRITES))]
        rng.shuffle(plan)
        barrier.wait()
        while plan:
            pause(rng, 0.002)
            if rng.random() < BULK_SHARE:
                group = list(dict.fromkeys(plan[: rng.randint(1, 3)]))
                for user in group:
                    plan.remove(user)
                bulk = engine.interact_many({user: _events(rng) for user in group})
                for user in bulk.erased:
                    out.rejected[user] = out.rejected.get(user, 0) + 1
                for user, report in bulk.reports.items():
                    out.accepted[user] = out.accepted.get(user, 0) + report.accepted
                    out.accepted_calls += 1
                    out.bulk_accepted += 1
                out.bulk_rejected += len(bulk.erased)
                assert sorted([*bulk.reports, *bulk.erased]) == sorted(group)
                continue
            user = plan.pop(0)
            try:
                report = engine.interact(user, _events(rng))
            except UserErasedError:
                out.rejected[user] = out.rejected.get(user, 0) + 1
            else:
                out.accepted[user] = out.accepted.get(user, 0) + report.accepted
                out.accepted_calls += 1


def _eraser(engine: Engine, rng: random.Random, barrier: Any, out: Outcome) -> None:
    for rnd in range(ROUNDS):
        users = [uid(rnd * BATCH + j) for j in range(BATCH)]
        rng.shuffle(users)
        barrier.wait()
        for user in users:
            pause(rng, 0.006)
            receipt = engine.erase(user)
            out.receipts[user] = (
                receipt.events_removed,
                receipt.existed,
                receipt.data_key_destroyed,
            )


def worker(role: str, path: str, seed: int, barrier: Any, results: Any) -> None:
    """One process: its own engine, then every round of the race in its role."""
    out = Outcome(role)
    rng = random.Random(f"{seed}-{role}")
    try:
        with open_engine(Path(path)) as engine:
            if role == "eraser":
                _eraser(engine, rng, barrier, out)
            else:
                _writer(engine, rng, barrier, out)
    except BaseException:
        out.errors.append(traceback.format_exc())
        barrier.abort()  # release the others instead of leaving them waiting
    results.put(out)


def run_races(path: Path, seed: int) -> list[Outcome]:
    """Start the writers and the eraser, wait for them, return what each saw."""
    ctx = mp.get_context("spawn")  # an Engine never crosses fork()
    roles = [*(f"writer{k}" for k in range(WRITERS)), "eraser"]
    barrier = ctx.Barrier(len(roles), timeout=BARRIER_TIMEOUT)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=worker, args=(role, str(path), seed, barrier, results)) for role in roles
    ]
    for proc in procs:
        proc.start()
    outcomes: list[Outcome] = []
    try:
        for _ in procs:
            outcomes.append(results.get(timeout=300))
        for proc in procs:
            proc.join(timeout=60)
            assert proc.exitcode == 0, f"{proc.name} exited with {proc.exitcode}"
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
    return outcomes


def test_erasure_wins_every_race_with_writers_in_other_processes(tmp_path: Path) -> None:
    """1,000 erase/write races across processes: zero resurrections, zero lost events."""
    seed = random.randrange(2**32)
    with open_engine(tmp_path) as engine:
        engine.catalog.upsert(catalog_items(40))
    outcomes = run_races(tmp_path, seed)
    context = f"seed {seed}"
    errors = [e for o in outcomes for e in o.errors]
    assert not errors, f"{context}:\n" + "\n".join(errors)

    writers = [o for o in outcomes if o.role.startswith("writer")]
    (eraser,) = [o for o in outcomes if o.role == "eraser"]
    users = [uid(k) for k in range(ROUNDS * BATCH)]
    assert len(users) >= 1_000 and sorted(eraser.receipts) == sorted(users)
    accepted = Counter[str]()
    rejected = Counter[str]()
    for out in writers:
        accepted.update(out.accepted)
        rejected.update(out.rejected)
    for user in users:
        removed, existed, destroyed = eraser.receipts[user]
        # every committed write came before the erasure and is in what it removed
        assert removed == accepted[user], f"{context}: {user} {removed} != {accepted[user]}"
        assert existed == (accepted[user] > 0), f"{context}: {user}"
        # also when a refused writer's cleanup destroyed the key before the erasure did
        assert destroyed or not existed, f"{context}: {user} existed, key not destroyed"

    # nothing of any raced user is left (opened without the repairs reconcile would make)
    with open_engine(tmp_path, reconcile_on_open=False) as engine:
        with engine._env.read() as txn:
            for user in users:
                key = engine._users.key(user)
                assert engine._users.records.raw(txn, key) is None, f"{context}: {user} is back"
                assert engine._users.erasures.tombstone(txn, key, time.time()) is not None
            assert engine._users.records.count(txn) == 0
            assert engine._shared.totals(txn) == {}
            assert engine._shared.users(txn) == 0
            assert not engine._shared.popvec(txn).any()
        for user in users:
            assert engine._users.record(user) is None
            assert engine._keystore.wrapped(engine._users.key(user)) is None, f"{context}: {user}"
        assert engine._keystore.count() == 0  # no data key leaked by a rejected writer
        assert shared_statistics_consistent(engine._users)
        check_invariant(engine, users)

    # the races were real: writes landed before erasures and were refused after them
    with_events = sum(1 for user in users if eraser.receipts[user][0] > 0)
    both = sum(1 for user in users if accepted[user] and rejected[user])
    evidence = {
        "writes_accepted": sum(o.accepted_calls for o in writers),
        "writes_rejected": sum(rejected.values()),
        "bulk_user_writes_accepted": sum(o.bulk_accepted for o in writers),
        "bulk_user_writes_rejected": sum(o.bulk_rejected for o in writers),
        "receipts_with_events": with_events,
        "receipts_without_record": len(users) - with_events,
        # erasures that destroyed a writer's fresh data key before its first commit
        "keys_destroyed_without_record": sum(
            1 for _r, existed, destroyed in eraser.receipts.values() if destroyed and not existed
        ),
        "users_with_accepted_and_rejected_writes": both,
    }
    print(f"\nerasure races ({context}): {evidence}")
    assert evidence["writes_accepted"] > 0 and evidence["writes_rejected"] > 0, evidence
    assert with_events > 0 and both > 0, evidence
