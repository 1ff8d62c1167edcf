"""Per-user models through the SDK: feedback, recommendations, search, export, forget, erase."""

from __future__ import annotations

import multiprocessing as mp
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ownrank import (
    BatchTooLargeError,
    Engine,
    InvalidFilterError,
    InvalidInputError,
    StaleGenerationError,
    UserErasedError,
)
from ownrank.engine.config import EngineConfig, RankingConfig

from conftest import WordHashEncoder, make_engine
from test_catalog import catalog_items
from test_shared_invariant import check_invariant


def like(*item_ids: str, kind: str = "like", **extra: Any) -> list[dict[str, Any]]:
    return [{"kind": kind, "item_id": i, **extra} for i in item_ids]


def topics(recs: list[Any]) -> list[str]:
    return [r.item.properties["topic"] for r in recs]


@pytest.fixture
def store(engine: Engine) -> Engine:
    engine.catalog.upsert(catalog_items(120))
    return engine


def test_interact_reports_unknown_items_and_stores_the_rest(store: Engine) -> None:
    report = store.interact("alice", [*like("jazz-0000", "no-such-item"), *like("chess-0001")])
    assert report.accepted == 2 and report.unknown_items == ["no-such-item"]
    record = store._users.record("alice")
    assert record is not None and [e.ref for e in record.events] == ["jazz-0000", "chess-0001"]


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "rating", "item_id": "jazz-0000", "value": 6},
        {"kind": "rating", "item_id": "jazz-0000"},
        {"kind": "like", "item_id": "jazz-0000", "value": 3},
        {"kind": "dwell", "item_id": "jazz-0000", "value": -1},
        {"kind": "search", "item_id": "jazz-0000"},
        {"kind": "search", "query": "  "},
        {"kind": "teleport", "item_id": "jazz-0000"},
        {"kind": "like", "item_id": "bad id"},
        {"kind": "like", "item_id": "jazz-0000", "weight": 0},
        {"kind": "like", "item_id": "jazz-0000", "colour": "red"},
    ],
)
def test_malformed_events_store_nothing(store: Engine, bad: dict[str, Any]) -> None:
    store.interact("alice", like("jazz-0000"))
    with pytest.raises(InvalidInputError):
        store.interact("alice", [*like("chess-0001"), bad])
    record = store._users.record("alice")
    assert record is not None and [e.ref for e in record.events] == ["jazz-0000"]


def test_bad_ids_and_limits(store: Engine) -> None:
    with pytest.raises(InvalidInputError):
        store.interact("bad user", like("jazz-0000"))
    with pytest.raises(BatchTooLargeError):
        store.interact("alice", like("jazz-0000") * 1001)
    with pytest.raises(InvalidInputError):
        store.recommend("alice", n=0)
    with pytest.raises(InvalidFilterError):
        store.recommend("alice", filters={"topic": {"$near": 1}})
    with pytest.raises(InvalidInputError):
        store.recommend("alice", diversity=2.0)
    assert store._users.record("alice") is None


def test_raw_user_ids_never_reach_the_disk(store: Engine, tmp_path: Path) -> None:
    store.interact("alice.secret-id@example.org", like("jazz-0000"))
    key = store._users.key("alice.secret-id@example.org")
    assert len(key) == 16
    with store._env.read() as txn:
        assert txn.get(key, db=store._env.db("users")) is not None
    data = (store.data_dir / "lmdb" / "data.mdb").read_bytes()
    assert b"alice.secret-id" not in data


def test_recommendations_follow_likes_and_exclude_seen(store: Engine) -> None:
    store.interact("alice", like("jazz-0000", "jazz-0006", "jazz-0012"))
    recs = store.recommend("alice", 5)
    assert len(recs) == 5
    assert topics(recs).count("jazz") >= 4
    assert not {"jazz-0000", "jazz-0006", "jazz-0012"} & {r.item_id for r in recs}
    seen = store.recommend("alice", 120, exclude_seen=False)
    assert {"jazz-0000", "jazz-0006"} <= {r.item_id for r in seen}
    top = recs[0].explanation
    assert top["reason"] == "personal" and top["because_of"] in {
        "jazz-0000",
        "jazz-0006",
        "jazz-0012",
    }
    assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)


def test_negative_feedback_pushes_a_neighbourhood_down(store: Engine) -> None:
    store.interact("bob", like("jazz-0000", "chess-0001"))
    before = [r.item_id for r in store.recommend("bob", 40)]
    chess_before = [i for i in before if i.startswith("chess")]
    store.interact("bob", like("chess-0007", "chess-0013", kind="dislike"))
    after = [r.item_id for r in store.recommend("bob", 40)]
    rank_before = sum(before.index(i) for i in chess_before[:5])
    chess_after = [i for i in after if i.startswith("chess")]
    rank_after = sum(after.index(i) if i in after else 40 for i in chess_before[:5])
    assert rank_after > rank_before
    assert len(chess_after) < len(chess_before)


@pytest.mark.parametrize("full_rank_limit", [5_000, 10])
def test_filtered_recommendations_through_both_candidate_paths(
    tmp_path: Path, full_rank_limit: int
) -> None:
    """Scored exhaustively (small pool) or retrieved from the index (big pool): every
    result passes the filter, none is seen, and n come back when n match."""
    ranking = RankingConfig(full_rank_limit=full_rank_limit)
    with make_engine(tmp_path, WordHashEncoder(), ranking=ranking) as engine:
        engine.catalog.upsert(catalog_items(120))
        engine.interact("alice", like("jazz-0000", "jazz-0006", "garden-0002"))
        recs = engine.recommend("alice", 8, filters={"topic": "garden", "minutes": {"$lt": 8}})
        assert len(recs) == 8
        assert all(r.item.properties["topic"] == "garden" for r in recs)
        assert all(r.item.properties["minutes"] < 8 for r in recs)
        assert "garden-0002" not in {r.item_id for r in recs}


def test_filters_and_diversity(store: Engine) -> None:
    store.interact("alice", like("jazz-0000", "jazz-0006", "chess-0001"))
    recs = store.recommend("alice", 5, filters={"topic": "garden"})
    assert len(recs) == 5 and set(topics(recs)) == {"garden"}
    plain = store.recommend("alice", 6)
    diverse = store.recommend("alice", 6, diversity=0.9)
    assert len(set(topics(diverse))) > len(set(topics(plain)))


def test_cold_start_is_popular_then_recent(tmp_path: Path) -> None:
    with make_engine(tmp_path / "a", WordHashEncoder()) as engine:
        engine.catalog.upsert(catalog_items(60))
        recent = engine.recommend("nobody", 5)
        assert len(recent) == 5 and all(r.explanation["reason"] == "recency" for r in recent)
        for user in ("u1", "u2", "u3"):
            engine.interact(user, like("cycling-0004"))
        engine.interact("u1", like("garden-0002"))
        recs = engine.recommend("nobody", 3)
        assert recs[0].item_id == "cycling-0004" and recs[0].explanation["reason"] == "popularity"
    with make_engine(tmp_path / "b", WordHashEncoder(), shared_statistics="none") as engine:
        engine.catalog.upsert(catalog_items(60))
        recs = engine.recommend("nobody", 6)
        newest = max(i["published_at"] for i in catalog_items(60))
        assert recs[0].item.published_at.isoformat().startswith(newest[:10])
        assert len(set(topics(recs))) >= 4  # recent *and* diverse


def test_recommend_from_history_stores_nothing(store: Engine) -> None:
    before = (store.data_dir / "lmdb" / "data.mdb").read_bytes()
    recs = store.recommend_from_history(like("astronomy-0003", "astronomy-0009"), 5)
    assert topics(recs).count("astronomy") >= 4
    with store._env.read() as txn:
        assert txn.stat(store._env.db("users"))["entries"] == 0
        assert store._shared.totals(txn) == {}
    assert (store.data_dir / "lmdb" / "data.mdb").read_bytes() == before


def test_personalized_search_reranks_for_each_user(store: Engine) -> None:
    store.interact("jazz-fan", like(*[f"jazz-{i:04d}" for i in range(0, 60, 6)]))
    store.interact("chess-fan", like(*[f"chess-{i:04d}" for i in range(1, 61, 6)]))
    query = "story number"  # ambiguous: every item has these words
    plain = [h.item_id for h in store.search(query, 5)]
    jazz = store.search(query, 5, user_id="jazz-fan")
    chess = store.search(query, 5, user_id="chess-fan")
    assert [h.item.properties["topic"] for h in jazz].count("jazz") >= 4
    assert [h.item.properties["topic"] for h in chess].count("chess") >= 4
    assert {h.item_id for h in jazz} - set(plain)  # surfaced beyond the plain top-n
    assert [h.item_id for h in store.search(query, 5, user_id="stranger")] == plain


def test_export_import_round_trip(store: Engine, tmp_path: Path) -> None:
    store.interact(
        "alice",
        [
            *like("jazz-0000"),
            {
                "kind": "rating",
                "item_id": "chess-0001",
                "value": 2,
                "timestamp": "2026-01-01T00:00:00Z",
            },
            {"kind": "dwell", "item_id": "garden-0002", "value": 30},
            {"kind": "search", "query": "late night jazz"},
            {"kind": "skip", "item_id": "cycling-0004", "weight": 2},
        ],
    )
    exported = store.export("alice")
    recommended = [r.item_id for r in store.recommend("alice", 10)]
    assert exported["events"][0]["kind"] == "rating"  # oldest first
    assert exported["model"]["weights"] and exported["ledger"] == {
        "pop": ["garden-0002", "jazz-0000"]
    }
    store.erase("alice")
    assert store.export("alice")["exists"] is False
    with pytest.raises(UserErasedError):  # a stale copy cannot bring an erased user back
        store.import_user(exported)
    store.recreate_user("alice")  # explicit, and a new generation
    with pytest.raises(StaleGenerationError):  # the copy is of the erased generation
        store.import_user(exported)
    current = store.export("alice")
    assert current["generation"] == exported["generation"] + 1 and current["events"] == []
    store.interact("alice", like("jazz-0000"))
    again = store.export("alice")
    store.import_user(again)  # a copy of the current generation round-trips
    assert store.export("alice") == {**again, "version": again["version"] + 1}  # versions grow
    with make_engine(tmp_path / "other", WordHashEncoder()) as other:
        other.catalog.upsert(catalog_items(120))
        other.import_user(exported)
        assert other.export("alice") == exported  # the model is a function of events + catalog
        assert [r.item_id for r in other.recommend("alice", 10)] == recommended
    with pytest.raises(InvalidInputError):
        store.import_user({"format": 1, "user_id": "x", "events": [{"kind": "like"}]})


def test_forget_drops_events_and_their_contributions(store: Engine) -> None:
    t = lambda day: datetime(2026, 3, day, tzinfo=UTC).isoformat()  # noqa: E731
    store.interact(
        "alice",
        [
            *like("jazz-0000", timestamp=t(1)),
            *like("chess-0001", timestamp=t(2)),
            *like("garden-0002", timestamp=t(3)),
            *like("cycling-0004", timestamp=t(4)),
        ],
    )
    report = store.forget("alice", ["chess-0001"])
    assert report.events_removed == 1 and report.shared_units_subtracted == 1
    report = store.forget("alice", before=datetime(2026, 3, 2, 12, tzinfo=UTC))
    assert report.events_removed == 1  # jazz-0000
    report = store.forget("alice", after=datetime(2026, 3, 3, 12, tzinfo=UTC))
    assert report.events_removed == 1  # cycling-0004
    record = store._users.record("alice")
    assert record is not None and [e.ref for e in record.events] == ["garden-0002"]
    assert record.ledger == {"pop": ["garden-0002"]}
    check_invariant(store, ["alice"])
    with pytest.raises(InvalidInputError):
        store.forget("alice")


def test_deleted_catalog_items_leave_the_model_and_the_ledger(store: Engine) -> None:
    store.interact("alice", like("jazz-0000", "astronomy-0003"))
    store.interact("bob", like("astronomy-0003"))
    store.catalog.delete(["astronomy-0003"])
    recs = store.recommend("alice", 10)  # replays alice lazily
    assert "astronomy-0003" not in {r.item_id for r in recs}
    record = store._users.record("alice")
    assert record is not None and record.ledger == {"pop": ["jazz-0000"]}
    assert [e.ref for e in record.events] == ["jazz-0000"]  # the deleted item's events go
    store.recommend("alice", 10)  # nothing left to replay: no second write
    again = store._users.record("alice")
    assert again is not None and again.version == record.version
    check_invariant(store, ["alice", "bob"])


def test_consent_and_the_none_mode(store: Engine, tmp_path: Path) -> None:
    store.interact("alice", like("jazz-0000"))
    store.set_consent("alice", False)
    with store._env.read() as txn:
        assert store._shared.totals(txn) == {} and store._shared.users(txn) == 0
    store.interact("alice", like("chess-0001"))
    check_invariant(store, ["alice"])
    with make_engine(tmp_path / "none", WordHashEncoder(), shared_statistics="none") as engine:
        engine.catalog.upsert(catalog_items(30))
        engine.interact("alice", like("jazz-0000", "chess-0001"))
        engine.recommend("alice", 5)
        with engine._env.read() as txn:
            for name in ("shared_counts", "popular_rank"):
                assert txn.stat(engine._env.db(name))["entries"] == 0


def test_long_queries_stay_under_the_byte_cap(tmp_path: Path) -> None:
    encoder = WordHashEncoder(dimension=384)  # a head as large as the real model's
    with make_engine(tmp_path, encoder, max_record_bytes=8192) as engine:
        engine.catalog.upsert(catalog_items(30))
        for call in range(8):
            events = [
                {"kind": "search", "query": (f"query {call} {k} " + "words " * 90)[:480]}
                for k in range(25)
            ]
            engine.interact("searcher", [*events, *like(f"jazz-{(6 * call) % 30:04d}")])
            record = engine._users.record("searcher")
            assert record is not None and len(record.to_bytes()) <= 8192


def test_caps_bound_the_record(tmp_path: Path) -> None:
    with make_engine(tmp_path, WordHashEncoder(), max_events=20, max_record_bytes=2048) as engine:
        engine.catalog.upsert(catalog_items(120))
        items = [i["id"] for i in catalog_items(120)]
        engine.interact(
            "alice",
            [
                {"kind": "click", "item_id": i, "timestamp": 1_700_000_000 + k}
                for k, i in enumerate(items)
            ],
        )
        record = engine._users.record("alice")
        assert record is not None and len(record.events) <= 20
        assert record.events[-1].ref == items[-1]  # the newest are kept
        assert len(record.to_bytes()) <= 2048
        check_invariant(engine, ["alice"])


def test_items_dropped_by_the_caps_stay_excluded_as_seen(tmp_path: Path) -> None:
    """A heavy user's log keeps only the newest events, but what they saw before is
    still never recommended back; forget and export/import cover it too. (Earlier
    items keep the day of their newest dropped event: the events are a day apart.)"""
    with make_engine(tmp_path, WordHashEncoder(), max_events=5, max_earlier_items=12) as engine:
        engine.catalog.upsert(catalog_items(120))
        jazz = [i["id"] for i in catalog_items(120) if i["id"].startswith("jazz")]  # 20
        day = 86_400
        t0 = 1_700_000_000 // day * day  # a day's first second
        engine.interact(
            "alice",
            [
                {"kind": "click", "item_id": i, "timestamp": t0 + k * day}
                for k, i in enumerate(jazz[:15])
            ],
        )
        record = engine._users.record("alice")
        assert record is not None and [e.ref for e in record.events] == jazz[10:15]
        assert len(record.earlier) == 10  # jazz[0:10], dropped from the log

        def recommended() -> set[str]:
            return {r.item_id for r in engine.recommend("alice", 20, filters={"topic": "jazz"})}

        assert recommended() == set(jazz[15:])  # none of the 15 seen comes back
        assert jazz[3] in {r.item_id for r in engine.recommend("alice", 20, exclude_seen=False)}

        engine.interact(  # 5 more dropped: over max_earlier_items, the oldest go first
            "alice",
            [
                {"kind": "click", "item_id": i, "timestamp": t0 + (20 + k) * day}
                for k, i in enumerate(jazz[15:])
            ],
        )
        record = engine._users.record("alice")
        assert record is not None and len(record.earlier) == 12
        assert recommended() == set(jazz[:3])  # the three oldest are forgotten by the cap

        engine.forget("alice", [jazz[5]])  # forgetting an earlier item makes it eligible
        assert recommended() == {*jazz[:3], jazz[5]}
        engine.forget("alice", before=datetime.fromtimestamp(t0 + 8 * day, UTC))
        assert recommended() == set(jazz[:8])  # earlier items last seen before day 8 go

        exported = engine.export("alice")
        assert len(exported["earlier_items"]) == 7
        engine.forget("alice", [jazz[15]])
        engine.import_user(exported)  # replaces the record: the earlier items come back
        assert engine.export("alice") == {**exported, "version": exported["version"] + 2}
        assert recommended() == set(jazz[:8])
        bad = {**exported, "earlier_items": [{"item_hash": "zz", "last_timestamp": "x"}]}
        with pytest.raises(InvalidInputError):
            engine.import_user(bad)


def test_erase_is_idempotent_and_returns_a_receipt(store: Engine) -> None:
    store.interact("alice", like("jazz-0000", "chess-0001"))
    receipt = store.erase("alice")
    assert receipt.existed and receipt.events_removed == 2
    assert receipt.shared_units_subtracted == 3  # two items + one contributing user
    assert receipt.user_key == store._users.key("alice").hex()
    assert receipt.model_fingerprint == store.fingerprint
    assert "alice" not in str(receipt.as_dict())
    again = store.erase("alice")
    assert not again.existed and again.events_removed == 0
    assert store._users.record("alice") is None


def scenario(engine: Engine, with_eve: bool) -> None:
    engine.catalog.upsert(catalog_items(120))
    engine.interact("alice", like("jazz-0000", "chess-0001", timestamp=1_760_000_000))
    if with_eve:
        engine.interact(
            "eve", like("jazz-0000", "garden-0002", "cycling-0010", timestamp=1_760_000_100)
        )
        engine.interact(
            "eve", [{"kind": "search", "query": "astronomy", "timestamp": 1_760_000_200}]
        )
    engine.interact("bob", like("garden-0002", "chess-0007", timestamp=1_760_000_300))
    engine.interact("bob", like("jazz-0006", kind="dislike", timestamp=1_760_000_400))
    engine.recommend("alice", 5)  # what ranking keeps of the shared statistic: with eve in A
    if with_eve:
        engine.erase("eve")


@pytest.mark.parametrize("full_rank_limit", [5_000, 0])
def test_after_erase_everyone_else_sees_a_world_without_the_user(
    tmp_path: Path, full_rank_limit: int
) -> None:
    """Both candidate paths: every item scored, or candidates retrieved from the index
    (where the popular direction's answer is kept between calls)."""
    clock = lambda: 1_770_000_000.0  # noqa: E731
    ranking = RankingConfig(full_rank_limit=full_rank_limit)
    # one fixed clock for every part of both engines (record times, catalog times)
    a = Engine(
        tmp_path / "a", EngineConfig(ranking=ranking), encoder=WordHashEncoder(), clock=clock
    )
    b = Engine(
        tmp_path / "b", EngineConfig(ranking=ranking), encoder=WordHashEncoder(), clock=clock
    )
    with a, b:
        scenario(a, with_eve=True)
        scenario(b, with_eve=False)
        for user in ("alice", "bob", "nobody"):
            ra, rb = a.recommend(user, 20), b.recommend(user, 20)
            assert [(r.item_id, r.score) for r in ra] == [(r.item_id, r.score) for r in rb]
            ea, eb = a.export(user), b.export(user)
            assert ea == eb
        with a._env.read() as ta, b._env.read() as tb:
            assert a._shared.totals(ta) == b._shared.totals(tb)
            assert a._shared.users(ta) == b._shared.users(tb)
            assert (a._shared.popvec(ta) == b._shared.popvec(tb)).all()
            for db in ("shared_counts", "popular_rank"):  # byte for byte
                assert list(ta.cursor(db=a._env.db(db))) == list(tb.cursor(db=b._env.db(db)))
            assert a._users.records.get(ta, a._users.key("eve")) is None


def _writer(path: str, user: str, start: int, count: int) -> None:
    with make_engine(Path(path), WordHashEncoder()) as engine:
        items = [i["id"] for i in catalog_items(120)]
        for k in range(start, start + count):
            engine.interact(
                user, [{"kind": "click", "item_id": items[k], "timestamp": 1_700_000_000 + k}]
            )


def test_concurrent_writers_lose_no_events(tmp_path: Path) -> None:
    with make_engine(tmp_path, WordHashEncoder()) as engine:
        engine.catalog.upsert(catalog_items(120))
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_writer, args=(str(tmp_path), "shared-user", s, 25)) for s in (0, 25)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    with make_engine(tmp_path, WordHashEncoder()) as engine:
        record = engine._users.record("shared-user")
        assert record is not None and len(record.events) == 50 and record.version == 50
        check_invariant(engine, ["shared-user"])


def _upsert_late_item(path: str) -> None:
    with make_engine(Path(path), WordHashEncoder()) as engine:
        engine.catalog.upsert([{"id": "late-item", "title": "jazz written by another process"}])


def test_candidate_vectors_are_the_stored_bits_from_the_index_or_lmdb(tmp_path: Path) -> None:
    """Ranking reads candidate vectors from the in-memory index where it holds the row
    and from LMDB where it does not (an item another process just added): either way
    the very bits LMDB stores."""
    with make_engine(tmp_path, WordHashEncoder()) as engine:
        engine.catalog.upsert(catalog_items(30))
        engine.recommend("someone", 3)  # index and property table loaded
        child = mp.get_context("spawn").Process(target=_upsert_late_item, args=(str(tmp_path),))
        child.start()
        child.join(timeout=120)
        assert child.exitcode == 0
        dim = engine.catalog.keeper.dimension
        with engine._env.read() as txn:
            stored = sorted((s.row, s.item.id) for s in engine.catalog.store.iter_items(txn))
            rows = [row for row, _id in stored]
            expected = np.stack([engine.catalog.store.get_vector(txn, r, dim)[1] for r in rows])
        known, _ids, _vectors = engine.catalog.keeper.indexed_items(rows)
        assert known.sum() == 30 and not known[rows.index(stored[-1][0])]  # the late one
        pool = engine._users.ranking.candidates.pool_of(rows)
        assert pool.ids == [item_id for _row, item_id in stored]
        assert pool.vectors.tobytes() == expected.astype(np.float32).tobytes()


def test_two_separate_tastes_both_show_up_and_explain_themselves(tmp_path: Path) -> None:
    """The neighbour score keeps distinct tastes apart (a single linear head averages
    them), and each such result names the liked item it came from."""
    ranking = RankingConfig(personal_weight=0.0, neighbour_weight=1.0, popularity_weight=0.0)
    with make_engine(tmp_path, WordHashEncoder(), ranking=ranking) as engine:
        engine.catalog.upsert(catalog_items(120))
        liked = ["jazz-0000", "jazz-0006", "jazz-0012", "chess-0001", "chess-0007", "chess-0013"]
        engine.interact("ana", like(*liked))
        recs = engine.recommend("ana", 10)
        assert set(topics(recs)) == {"jazz", "chess"}
        assert all(r.explanation["reason"] == "neighbours" for r in recs)
        for rec in recs:  # explained by a liked item of its own topic
            because = rec.explanation["because_of"]
            assert because in liked and because.split("-")[0] == rec.item.properties["topic"]


def test_faiss_uses_the_configured_thread_count_in_every_calling_thread(tmp_path: Path) -> None:
    """OpenMP keeps its thread count per thread: a service's request threads must run
    FAISS on ``index_threads`` too, not on one thread per core (each such call leaves
    a helper thread spin-waiting on a core)."""
    import faiss

    from ownrank.storage.vector_index import set_faiss_threads

    try:
        with make_engine(tmp_path, WordHashEncoder(), index_threads=5) as engine:
            engine.catalog.upsert(catalog_items(30))
            engine.interact("ana", like("jazz-0000"))
            seen: list[int] = []

            def request() -> None:
                engine.recommend("ana", 3)
                seen.append(faiss.omp_get_max_threads())

            worker = threading.Thread(target=request)
            worker.start()
            worker.join()
            assert seen == [5]
    finally:  # the process-wide count back to the default the other tests run with
        set_faiss_threads(EngineConfig().index_threads)
        faiss.omp_set_num_threads(EngineConfig().index_threads)


@pytest.mark.parametrize("blas_threads", [1, 2])
def test_ranking_runs_numpy_blas_on_the_configured_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blas_threads: int
) -> None:
    """``blas_threads`` holds while the scorers run, and the process's own setting is
    back afterwards (the SDK does not change its host's BLAS)."""
    from ownrank.engine import blas
    from ownrank.engine.scorer_personal import PersonalScorer

    libraries = blas._blas_libraries()
    if not libraries:
        pytest.skip("numpy's BLAS is not one threadpoolctl can set")
    seen: list[int] = []
    score = PersonalScorer.score

    def spying(self: PersonalScorer, ctx: Any) -> Any:
        seen.append(libraries[0].num_threads)
        return score(self, ctx)

    monkeypatch.setattr(PersonalScorer, "score", spying)
    before = libraries[0].num_threads
    libraries[0].set_num_threads(3)
    try:
        with make_engine(tmp_path, WordHashEncoder(), blas_threads=blas_threads) as engine:
            engine.catalog.upsert(catalog_items(30))
            engine.interact("ana", like("jazz-0000"))
            engine.recommend("ana", 3)
            assert seen == [blas_threads]
            assert libraries[0].num_threads == 3
        with make_engine(tmp_path, WordHashEncoder()) as engine:  # None: left alone
            seen.clear()
            engine.recommend("ana", 3)
            assert seen == [3]
    finally:
        libraries[0].set_num_threads(before)


def test_the_service_runs_engine_calls_on_one_blas_thread() -> None:
    from ownrank.service.settings import ServiceSettings

    assert ServiceSettings().blas_threads == 1
    assert ServiceSettings.from_env({"OWNRANK_BLAS_THREADS": "2"}).blas_threads == 2


def test_the_popular_direction_answer_is_kept_only_while_the_catalog_is_unchanged(
    tmp_path: Path,
) -> None:
    with make_engine(tmp_path, WordHashEncoder()) as engine:
        engine.catalog.upsert(catalog_items(60))
        keeper = engine.catalog.keeper
        query = engine.catalog.encoder.encode(["jazz trio live"])[0]
        first = keeper.search_shared(query, 5)
        assert keeper.search_shared(query, 5) is first  # kept
        assert keeper.search_shared(query, 4) == first[:4]  # another k: searched again
        engine.catalog.upsert([{"id": "new-jazz", "title": "jazz trio live"}])
        after = keeper.search_shared(query, 5)
        assert keeper.live_rows(["new-jazz"])[0] in {row for row, _score in after}
        keeper.forget_shared()
        assert keeper.search_shared(query, 5) is not after
        # a new query (the statistic changed) drops the answers to the old one
        keeper.search_shared(engine.catalog.encoder.encode(["chess"])[0], 5)
        assert len(keeper._shared_answers) == 1
