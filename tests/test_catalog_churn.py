"""Recommend while another process upserts and deletes catalog items.

The recommending engine's in-memory index lags the other process's deletes by up
to one catch-up; a candidate whose item is gone must simply drop out, never fail
the call (it used to: an assertion in the final item read, 0.2-2.6% of calls).
Items the users rated (liked and disliked) are deleted too: a rated item may go
between the call's lookup of the user's rows and its read of their vectors (the
dislike part raised KeyError in 0.3-3% of calls before it left such items out).

Both processes stamp their events with ``time.monotonic()``, one system-wide clock
on Linux, so "the delete returned before the recommend started" is checkable.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import WordHashEncoder, make_engine

TOPICS = ("jazz", "chess", "garden")
SECONDS = 4.0
WORDS = ("blue", "quick", "night", "river", "stone", "light", "open", "late")


def _item(k: int, prefix: str) -> dict[str, Any]:
    topic = TOPICS[k % 3]
    return {
        "id": f"{prefix}-{k}",
        "title": f"{topic} {WORDS[k % len(WORDS)]} {WORDS[(k // 3) % len(WORDS)]} {k}",
        "body": f"about {topic}",
        "properties": {"topic": topic},
        "published_at": f"2026-01-{1 + k % 28:02d}T00:00:00Z",
    }


def _churn(path: str, seconds: float, deleted: Any, started: Any, rated: list[str]) -> None:
    """Upsert fresh items and delete earlier ones, and one of the ``rated`` items each
    time while any is left, until ``seconds`` pass; every deleted id goes to
    ``deleted`` with the monotonic time its delete returned."""
    engine = make_engine(Path(path), WordHashEncoder(), ranking={"full_rank_limit": 40})
    try:
        started.set()
        end = time.monotonic() + seconds
        k = 0
        live: list[str] = []
        while time.monotonic() < end:
            batch = [_item(k + j, "churn") for j in range(6)]
            k += len(batch)
            engine.catalog.upsert(batch)
            live.extend(b["id"] for b in batch)
            gone, live = live[:5], live[5:]
            gone += rated[-1:]
            del rated[-1:]
            engine.catalog.delete(gone)
            returned = time.monotonic()
            for item_id in gone:
                deleted.put((item_id, returned))
    finally:
        engine.close()
        deleted.put(None)


@pytest.mark.parametrize(
    ("recency_weight", "full_rank_limit"),
    [(0.0, 40), (0.2, 40), (0.0, 10_000)],
    ids=["plain", "dated", "whole"],
)
def test_recommend_during_catalog_churn(
    tmp_path: Path, recency_weight: float, full_rank_limit: int
) -> None:
    # with recency on, every candidate's item is read (the dated path); under the full
    # rank limit, every item is ranked (a filter's pool lacks the rated items)
    ranking = {"full_rank_limit": full_rank_limit, "recency_weight": recency_weight}
    engine = make_engine(tmp_path, WordHashEncoder(), ranking=ranking)
    try:
        engine.catalog.upsert([_item(k, "base") for k in range(120)])
        engine.catalog.upsert([_item(k, "churn") for k in range(-60, 0)])
        engine.catalog.upsert([_item(k, "rated") for k in range(144)])
        users = [f"reader-{u}" for u in range(6)]
        for u, user in enumerate(users):
            engine.interact(
                user,
                [{"kind": "like", "item_id": f"base-{(u * 7 + j) % 120}"} for j in range(4)]
                + [
                    {"kind": "dislike" if j % 2 else "like", "item_id": f"rated-{u * 24 + j}"}
                    for j in range(24)
                ],
            )
        ctx = mp.get_context("spawn")  # an Engine never crosses fork()
        deleted = ctx.Queue()
        started = ctx.Event()
        rated = [f"rated-{k}" for k in range(144)]
        child = ctx.Process(target=_churn, args=(str(tmp_path), SECONDS, deleted, started, rated))
        child.start()
        assert started.wait(120)
        calls: list[tuple[float, list[str]]] = []
        errors: list[str] = []
        end = time.monotonic() + SECONDS
        k = 0
        while time.monotonic() < end:
            user = users[k % len(users)]
            filters = {"topic": TOPICS[k % 3]} if k % 2 else None
            begun = time.monotonic()
            try:
                found = engine.recommend(user, n=10, filters=filters, diversity=0.3 * (k % 3 == 0))
                calls.append((begun, [r.item_id for r in found]))
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            k += 1
        deletes: dict[str, float] = {}
        while (entry := deleted.get(timeout=120)) is not None:
            deletes[entry[0]] = entry[1]
        child.join(120)
        assert child.exitcode == 0
    finally:
        engine.close()
    failed = f"{len(errors)} of {len(calls) + len(errors)} recommends failed: {errors[:3]}"
    assert not errors, failed
    assert len(calls) > 100 and len(deletes) > 100, (len(calls), len(deletes))
    stale = [
        (item_id, begun)
        for begun, ids in calls
        for item_id in ids
        if item_id in deletes and deletes[item_id] < begun
    ]
    assert not stale, f"items deleted before the recommend started came back: {stale[:5]}"
