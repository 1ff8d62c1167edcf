"""``bench/ranking_dump.py``: the check that a speed change kept every ranking."""

from __future__ import annotations

import json
from pathlib import Path

import harness
import ranking_dump
from api_support import TOPICS, sample_items
from catalog_bench import lists_current
from engine_bench import user_id

from conftest import WordHashEncoder, make_engine


def test_dumps_are_equal_for_the_same_rankings_and_compare_counts_what_moved(
    tmp_path: Path,
) -> None:
    users = [user_id(k) for k in range(3)]
    with make_engine(tmp_path / "s", WordHashEncoder()) as engine:
        engine.catalog.upsert(sample_items(40))
        for k, user in enumerate(users):
            engine.interact(user, [{"kind": "like", "item_id": f"{TOPICS[k]}-{k}"}])
        first = ranking_dump.dump(engine, users, seed=7)
        assert ranking_dump.dump(engine, users, seed=7) == first  # deterministic
        # one user's taste changes (and, through shared popularity, others' rankings)
        engine.interact(users[1], [{"kind": "like", "item_id": "garden-5"}] * 3)
        second = ranking_dump.dump(engine, users, seed=7)
    assert len(first) == 3 * len(users) + 1  # plain, topic, diversity per user; one cold
    changed = {i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b}
    assert 3 in changed  # user 1's plain recommend

    (tmp_path / "a.jsonl").write_text("\n".join(first) + "\n")
    (tmp_path / "b.jsonl").write_text("\n".join(second) + "\n")
    summary = ranking_dump.compare(tmp_path / "a.jsonl", tmp_path / "b.jsonl")
    assert [summary[k]["calls"] for k in ("plain", "topic", "diversity", "cold")] == [3, 3, 3, 1]
    cold_a, cold_b = (json.loads(lines[-1])["ids"] for lines in (first, second))
    assert summary["cold"]["overlap"] == round(len(set(cold_a) & set(cold_b)) / len(cold_a), 3)
    assert summary["plain"]["identical"] == 3 - sum(1 for i in changed if '"plain"' in first[i])
    assert sum(e["identical"] for e in summary.values()) == len(first) - len(changed)

    # --compare writes the same figures as result rows, one line per kind of call
    assert ranking_dump.main(["--compare", *(str(tmp_path / f) for f in ("a.jsonl", "b.jsonl")),
                              "--out", str(tmp_path / "cmp.json")]) == 0  # fmt: skip
    rows = harness.rows_of(harness.load(tmp_path / "cmp.json"))
    assert {(r.metric, r.labels["call"]): r.value for r in rows} == {
        (metric, kind): value for kind, e in summary.items() for metric, value in e.items()
    }


def test_timing_waits_until_the_neighbour_lists_are_current(tmp_path: Path) -> None:
    """A store whose lists are behind rebuilds them on a background thread of the
    process that opened it; ``lists_current`` (which the dump, engine_bench and the
    service benchmark's store builder call before timing) returns only once they are
    current, so no timed call shares the GIL with that thread."""
    # a budget of 0: every catalog write leaves the lists to the background thread
    with make_engine(tmp_path / "s", WordHashEncoder(), neighbour_sync_budget=0) as engine:
        engine.catalog.upsert(sample_items(40))
        engine.catalog.upsert(sample_items(60)[40:])
        lists_current(engine)
        status = engine.catalog.neighbours.status()
        assert status.current and status.lists == 60
