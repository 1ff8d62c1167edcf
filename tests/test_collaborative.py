"""The collaborative layer: its statistic, how it is switched on and off, its scorer.

Exactness under every kind of write is the state machines' job
(``test_erasure_exactness.py``, ``test_shared_invariant.py``); here: the bound on
what a user contributes, the upgrade of an existing store (equal to building it
live), that ``"none"`` writes nothing, consent, and the explanation.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path
from typing import Any

import msgpack
import pytest

from ownrank import Engine
from ownrank.engine.co_counts import CO, expected_totals
from ownrank.engine.config import RankingConfig
from ownrank.engine.user_record import RECORD_FORMAT
from ownrank.storage.catalog_store import item_key

from conftest import WordHashEncoder, make_engine
from test_catalog import catalog_items

ITEMS = [item["id"] for item in catalog_items(24)]
T0 = 1_770_000_000


def likes(items: list[str], start: int = 0) -> list[dict[str, Any]]:
    """Likes with explicit, increasing times (stores built apart compare equal)."""
    return [
        {"kind": "like", "item_id": i, "timestamp": T0 + start + k} for k, i in enumerate(items)
    ]


def fill(engine: Engine) -> None:
    engine.catalog.upsert(catalog_items(24))
    for u in range(8):
        engine.interact(f"u{u}", likes([ITEMS[(u + k) % 24] for k in range(6)], 100 * u))
    engine.interact("u8", [{"kind": "dislike", "item_id": ITEMS[3], "timestamp": T0}])


def dump(engine: Engine, db: str) -> list[tuple[bytes, bytes]]:
    with engine._env.read() as txn:
        return [(bytes(k), bytes(v)) for k, v in txn.cursor(db=engine._env.db(db))]


def shared_state(engine: Engine) -> dict[str, Any]:
    with engine._env.read() as txn:
        co = engine._shared.co.totals(txn)
    return {
        "co": co,
        "co_pairs": dump(engine, "co_pairs"),
        "shared_counts": dump(engine, "shared_counts"),
        "ledgers": {f"u{u}": engine.export(f"u{u}")["ledger"] for u in range(9)},
    }


def test_a_user_contributes_the_pairs_of_their_newest_liked_items_only(tmp_path: Path) -> None:
    with make_engine(tmp_path, WordHashEncoder(), shared_statistics="collaborative") as engine:
        engine.catalog.upsert(catalog_items(24))
        engine.interact("many", likes(ITEMS[:20]))
        ledger = engine.export("many")["ledger"]
        assert ledger["pop"] == sorted(ITEMS[:20])
    with make_engine(
        tmp_path / "small", WordHashEncoder(), shared_statistics="collaborative",
        collaborative_items=4,
    ) as engine:  # fmt: skip
        engine.catalog.upsert(catalog_items(24))
        engine.interact("many", likes(ITEMS[:20]))
        assert engine.export("many")["ledger"][CO] == sorted(ITEMS[16:20])
        with engine._env.read() as txn:
            assert engine._shared.co.totals(txn) == expected_totals([ITEMS[16:20]])
        size = engine.info()["shared_statistics"]["collaborative"]  # reported
        assert (size["rows"], size["entries"]) == (4, 12)
        receipt = engine.erase("many")
        # 6 pairs among the 4 items, 20 liked items, 1 contributing user
        assert receipt.shared_units_subtracted == 6 + 20 + 1
        assert dump(engine, "co_pairs") == []


def test_with_shared_statistics_none_not_one_byte_is_shared(tmp_path: Path) -> None:
    with make_engine(tmp_path, WordHashEncoder(), shared_statistics="none") as engine:
        fill(engine)
        assert dump(engine, "co_pairs") == dump(engine, "shared_counts") == []
        assert all(engine.export(f"u{u}")["ledger"] == {} for u in range(9))


def test_turning_the_layer_on_rebuilds_it_as_if_it_had_always_been_on(tmp_path: Path) -> None:
    with make_engine(
        tmp_path / "live", WordHashEncoder(), shared_statistics="collaborative"
    ) as live:
        fill(live)
        expected = shared_state(live)
    assert expected["co_pairs"]  # there is something to compare
    with make_engine(tmp_path / "old", WordHashEncoder(), shared_statistics="popularity") as old:
        fill(old)
        assert dump(old, "co_pairs") == []
    with make_engine(tmp_path / "old", WordHashEncoder(), shared_statistics="collaborative") as on:
        assert on.ledgers_upgraded == 8  # u8 only disliked: no ledger to change
        assert shared_state(on) == expected
    with make_engine(
        tmp_path / "old", WordHashEncoder(), shared_statistics="collaborative"
    ) as again:
        assert again.ledgers_upgraded == 0  # in line: opening costs one read
    with make_engine(tmp_path / "old", WordHashEncoder(), shared_statistics="popularity") as off:
        assert off.ledgers_upgraded == 8
        assert dump(off, "co_pairs") == []
        assert all(CO not in off.export(f"u{u}")["ledger"] for u in range(9))


def test_records_of_the_older_format_are_rewritten_on_open(tmp_path: Path) -> None:
    with make_engine(tmp_path, WordHashEncoder()) as engine:
        fill(engine)
        before = {f"u{u}": engine.export(f"u{u}") for u in range(9)}
        with engine._env.write() as txn:  # as a store written by the older code
            engine.catalog.store.put_meta(txn, "ledger_settings", ["popularity", 64, 1])
    with make_engine(tmp_path, WordHashEncoder()) as engine:
        assert engine.ledgers_upgraded == 9  # every record, ledger unchanged
        assert {f"u{u}": engine.export(f"u{u}") for u in range(9)} == before
        records = engine._users.records
        with engine._env.read() as txn:
            for key, raw in records.scan(txn):
                plain, _data_key = records.plaintext(key, raw)
                assert msgpack.unpackb(plain)["v"] == RECORD_FORMAT


def test_withdrawn_consent_takes_the_pairs_out(tmp_path: Path) -> None:
    with make_engine(tmp_path / "a", WordHashEncoder(), shared_statistics="collaborative") as a:
        fill(a)
        a.set_consent("u0", False)
        assert CO not in a.export("u0")["ledger"]
        with make_engine(tmp_path / "b", WordHashEncoder(), shared_statistics="collaborative") as b:
            fill(b)
            b.erase("u0")
            assert dump(a, "co_pairs") == dump(b, "co_pairs")


@pytest.fixture
def crowd(tmp_path: Path) -> Engine:
    engine = make_engine(
        tmp_path,
        WordHashEncoder(),
        shared_statistics="collaborative",
        ranking=RankingConfig(collaborative_weight=5.0),
    )
    engine.catalog.upsert(catalog_items(24))
    # item 0 and item 13 (different topics) are liked together by many
    for u in range(12):
        engine.interact(f"fan{u}", likes([ITEMS[0], ITEMS[13], ITEMS[(5 + u) % 24]]))
    return engine


def test_people_who_liked_this_also_liked_that(crowd: Engine) -> None:
    with crowd:
        crowd.interact("me", likes([ITEMS[0]]))
        top = crowd.recommend("me", 3)[0]
        assert top.item_id == ITEMS[13]
        assert top.explanation["reason"] == "collaborative"
        assert top.explanation["because_of"] == ITEMS[0]
        assert top.explanation["parts"]["collaborative"] > top.explanation["parts"]["popularity"]
        # a stateless call with the same history reads the same counts
        again = crowd.recommend_from_history(likes([ITEMS[0]]), 3)[0]
        assert (again.item_id, again.explanation["because_of"]) == (ITEMS[13], ITEMS[0])


def test_a_catalog_too_big_to_score_whole_retrieves_what_was_liked_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With retrieval (full_rank_limit below the catalog), the items liked together
    with the user's come in as candidates of their own."""
    ranking = RankingConfig(full_rank_limit=10, candidates=10, collaborative_weight=5.0)
    with make_engine(
        tmp_path, WordHashEncoder(), shared_statistics="collaborative", ranking=ranking
    ) as engine:
        engine.catalog.upsert(catalog_items(120))
        ids = [item["id"] for item in catalog_items(120)]
        partner = ids[61]  # another topic than ids[0], nobody else's favourite
        for u in range(6):
            engine.interact(f"fan{u}", likes([ids[0], partner]))
        for u in range(30):  # a crowd that makes other items the popular ones
            engine.interact(f"crowd{u}", likes(ids[90:110]))
        engine.interact("me", likes([ids[0]]))
        scorer = engine._users.ranking.collaborative
        reads: list[int] = []
        read = scorer._read_pairs
        monkeypatch.setattr(scorer, "_read_pairs", lambda *a: reads.append(1) or read(*a))
        recs = engine.recommend("me", 5)
        found = {r.item_id: r for r in recs}
        assert partner in found
        assert found[partner].explanation["retrieved_by"] == "collaborative"
        assert found[partner].explanation["because_of"] == ids[0]
        # retrieval and scoring shared the user's rows; the call dropped them at its end
        assert len(reads) == 1 and scorer._last_pairs is None


def test_item_keys_name_the_live_items_and_are_backfilled_on_open(tmp_path: Path) -> None:
    with make_engine(tmp_path, WordHashEncoder()) as engine:
        engine.catalog.upsert(catalog_items(24))
        engine.catalog.delete([ITEMS[5]])
        store = engine.catalog.store
        keys = [item_key(i) for i in ITEMS]
        expected = [None if i == ITEMS[5] else i for i in ITEMS]
        with engine._env.read() as txn:
            assert store.ids_of_keys(txn, keys) == expected
        with engine._env.write() as txn:  # as a store from before the index
            txn.drop(store.item_keys, delete=False)
            store.put_meta(txn, "item_keys_format", None)
    with make_engine(tmp_path, WordHashEncoder()) as engine, engine._env.read() as txn:
        assert engine.catalog.store.ids_of_keys(txn, keys) == expected


def test_a_config_that_names_no_mode_keeps_the_store_s(tmp_path: Path) -> None:
    """``ownrank info`` or a service started without the setting must not turn the
    layer off: an unset ``shared_statistics`` runs with the store's mode."""
    with make_engine(tmp_path, WordHashEncoder(), shared_statistics="collaborative") as engine:
        fill(engine)
        expected = shared_state(engine)
    with Engine(tmp_path, encoder=WordHashEncoder()) as engine:
        assert engine.config.shared_statistics == "collaborative"
        assert engine.ledgers_upgraded == 0
        assert shared_state(engine) == expected
    with Engine(tmp_path / "new", encoder=WordHashEncoder()) as engine:
        assert engine.config.shared_statistics == "popularity"  # a new store: the default


@pytest.mark.parametrize(
    "module", ["engine.co_counts", "engine.key_lookup", "storage.catalog_store"]
)
def test_the_examples_in_the_docstrings_run(module: str) -> None:
    found = importlib.import_module(f"ownrank.{module}")
    failed, attempted = doctest.testmod(found)
    assert attempted > 0 and failed == 0


@pytest.mark.parametrize("seed", range(30))
def test_a_row_moves_to_the_bytes_of_its_counts_computed_afresh(tmp_path: Path, seed: int) -> None:
    """Every way a row can change (counts up and down, partners new and emptied, the
    degree up, down or not at all) stores the canonical row of the resulting counts,
    or refuses counts below zero."""
    import numpy as np

    from ownrank.engine.co_counts import CoCounts, CoRow, _Move
    from ownrank.storage.lmdb_env import LmdbEnvironment

    rng = np.random.default_rng(seed)
    env = LmdbEnvironment(tmp_path / "db", map_size=1 << 24)
    co = CoCounts(env, 8)
    universe = np.arange(1, 40, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15 >> 8)
    counts = {int(k): int(rng.integers(1, 4)) for k in rng.choice(universe, 12, replace=False)}
    degree = int(rng.integers(1, 5))
    with env.write() as txn:
        start = sorted(counts)
        packed = CoRow.pack(
            degree, np.array(start, np.uint64), np.array([counts[k] for k in start])
        )
        txn.put(b"x", packed, db=co.db)
    for _ in range(6):
        minus = np.sort(rng.choice(universe, int(rng.integers(0, 4)), replace=False))
        plus = np.sort(
            rng.choice(np.setdiff1d(universe, minus), int(rng.integers(0, 4)), replace=False)
        )
        step = int(rng.integers(-1, 2))
        expected = dict(counts)
        for k in minus.tolist():
            expected[k] = expected.get(k, 0) - 1
        for k in plus.tolist():
            expected[k] = expected.get(k, 0) + 1
        if degree + step < 0 or min(expected.values(), default=0) < 0:
            with pytest.raises(RuntimeError), env.write() as txn:
                co._write(txn, [_Move.of("x", step, minus, plus)])
            continue
        with env.write() as txn:
            co._write(txn, [_Move.of("x", step, minus, plus)])
        counts, degree = {k: v for k, v in expected.items() if v}, degree + step
        keys = sorted(counts)
        with env.read() as txn:
            stored = txn.get(b"x", db=co.db)
            raw = None if stored is None else bytes(stored)
        if degree == 0 and not counts:
            assert raw is None
            break
        assert raw == CoRow.pack(
            degree, np.array(keys, np.uint64), np.array([counts[k] for k in keys])
        )


@pytest.mark.parametrize("seed", range(6))
def test_writes_of_many_rows_at_once_store_the_counts_of_the_sets_that_remain(
    tmp_path: Path, seed: int
) -> None:
    """Sets of up to 60 items come, change and go (many rows merged at once): every
    row stays the canonical bytes of the counts of the sets that remain."""
    import numpy as np

    from ownrank.engine.co_counts import CoCounts, CoRow
    from ownrank.storage.lmdb_env import LmdbEnvironment

    rng = np.random.default_rng(seed)
    env = LmdbEnvironment(tmp_path / "db", map_size=1 << 26)
    co = CoCounts(env, 64)
    universe = [f"i{k}" for k in range(120)]
    sets: dict[int, list[str]] = {}
    for _ in range(40):
        user = int(rng.integers(8))
        old = sets.get(user, [])
        if old and rng.random() < 0.5:  # the set shifts by a few items or many
            keep = [i for i in old if rng.random() < rng.choice([0.5, 0.95])]
            new = sorted({*keep, *rng.choice(universe, int(rng.integers(0, 30))).tolist()})
        else:
            new = sorted(set(rng.choice(universe, int(rng.integers(0, 60))).tolist()))
        new = new if len(new) >= 2 else []
        with env.write() as txn:
            co.apply(txn, old, new)
        sets[user] = new
        with env.read() as txn:
            stored = {bytes(k).decode(): bytes(v) for k, v in txn.cursor(db=co.db)}
        expected = expected_totals(s for s in sets.values() if s)
        assert stored.keys() == expected.keys()
        for item, (degree, pairs) in expected.items():
            keys = sorted(pairs)
            packed = CoRow.pack(
                degree, np.array(keys, np.uint64), np.array([pairs[k] for k in keys])
            )
            assert stored[item] == packed
