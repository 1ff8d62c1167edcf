"""Catalog behaviour through the SDK: upsert, unchanged-skip, delete, filters, search."""

from __future__ import annotations

import json
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faiss
import pytest

from ownrank import (
    Engine,
    InvalidFilterError,
    InvalidInputError,
    InvalidItemError,
    ItemNotFoundError,
)
from ownrank.engine.index_keeper import IndexKeeper
from ownrank.storage import vector_index as vector_index_module
from ownrank.storage.vector_index import VectorIndex

from conftest import WordHashEncoder, make_engine

TOPICS = ["jazz", "chess", "garden", "astronomy", "cycling", "cooking"]


def catalog_items(n: int = 120) -> list[dict[str, Any]]:
    items = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        items.append(
            {
                "id": f"{topic}-{i:04d}",
                "title": f"{topic} story number {i}",
                "body": f"all about {topic} and more {topic} {i % 7}",
                "tags": [topic],
                "properties": {"topic": topic, "minutes": i % 10, "rank": i},
                "published_at": f"2026-01-{1 + i % 28:02d}T00:00:00Z",
            }
        )
    return items


def ids(hits: list[Any]) -> list[str]:
    return [h.item_id for h in hits]


def test_upsert_get_count(engine: Engine) -> None:
    report = engine.catalog.upsert(catalog_items(12))
    assert len(report.added) == 12 and report.embedded == 12
    assert engine.catalog.count() == 12
    item = engine.catalog.get("jazz-0000")
    assert item.title == "jazz story number 0"
    assert item.properties == {"topic": "jazz", "minutes": 0, "rank": 0}
    assert item.published_at is not None and item.published_at.isoformat().startswith("2026-01-01")
    assert "jazz-0000" in engine.catalog and "nope" not in engine.catalog
    with pytest.raises(ItemNotFoundError):
        engine.catalog.get("nope")


def test_unchanged_texts_are_not_embedded_again(engine: Engine, encoder: WordHashEncoder) -> None:
    items = catalog_items(30)
    engine.catalog.upsert(items)
    embedded_before = encoder.texts_encoded
    report = engine.catalog.upsert(items)
    assert len(report.unchanged) == 30 and report.embedded == 0
    assert encoder.texts_encoded == embedded_before

    items[0]["properties"] = {"topic": "jazz", "minutes": 99}
    items[1]["title"] = "a completely different headline"
    report = engine.catalog.upsert(items[:2])
    assert report.updated == [items[0]["id"], items[1]["id"]]
    assert report.embedded == 1  # only the changed text
    assert encoder.texts_encoded == embedded_before + 1
    assert engine.catalog.get(items[0]["id"]).properties["minutes"] == 99
    assert ids(engine.search("completely different headline", 1)) == [items[1]["id"]]


def test_update_properties_without_reembedding(engine: Engine, encoder: WordHashEncoder) -> None:
    engine.catalog.upsert(catalog_items(6))
    before = encoder.texts_encoded
    item = engine.catalog.update_properties("jazz-0000", {"minutes": 42, "new": True})
    assert item.properties == {"topic": "jazz", "minutes": 42, "rank": 0, "new": True}
    item = engine.catalog.update_properties("jazz-0000", {"only": 1}, replace=True)
    assert item.properties == {"only": 1}
    assert encoder.texts_encoded == before
    assert ids(engine.search("x", 5, filters={"only": 1})) == ["jazz-0000"]
    with pytest.raises(InvalidItemError):
        engine.catalog.update_properties("jazz-0000", {"$bad": 1})
    assert engine.catalog.get("jazz-0000").properties == {"only": 1}
    with pytest.raises(ItemNotFoundError):
        engine.catalog.update_properties("missing", {"a": 1})


def test_search_finds_the_closest_texts(engine: Engine) -> None:
    engine.catalog.upsert(catalog_items(60))
    hits = engine.search("astronomy astronomy", 5)
    assert len(hits) == 5
    assert all(h.item.properties["topic"] == "astronomy" for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_similar_excludes_the_item_itself(engine: Engine) -> None:
    engine.catalog.upsert(catalog_items(60))
    hits = engine.similar("chess-0001", 5)
    assert "chess-0001" not in ids(hits)
    assert all(h.item.properties["topic"] == "chess" for h in hits)
    with pytest.raises(ItemNotFoundError):
        engine.similar("missing-item")


def test_deleted_items_are_never_returned(engine: Engine) -> None:
    engine.catalog.upsert(catalog_items(60))
    victims = ids(engine.search("jazz jazz", 5))
    report = engine.catalog.delete([*victims, "never-existed"])
    assert report.deleted == victims and report.missing == ["never-existed"]
    assert engine.catalog.count() == 55
    for query in ("jazz jazz", "jazz story"):
        assert not set(victims) & set(ids(engine.search(query, 60)))
    assert not set(victims) & set(ids(engine.search("jazz", 60, filters={"topic": "jazz"})))
    assert not set(victims) & set(ids(engine.similar("jazz-0018", 60)))
    for victim in victims:
        with pytest.raises(ItemNotFoundError):
            engine.catalog.get(victim)


# ivf_nprobe=1 scans one list in 32 unfiltered: the filtered search must widen it
APPROXIMATE = {"hnsw_m": 8, "ivf_nprobe": 1}


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_filtered_search_returns_n_when_n_match(tmp_path: Path, kind: str) -> None:
    # exact_filter_limit=0 forces the index's own filtered search (with its exact fallback)
    engine = make_engine(
        tmp_path / "s", WordHashEncoder(), index_kind=kind, exact_filter_limit=0, **APPROXIMATE
    )
    with engine:
        engine.catalog.upsert(catalog_items(600))
        # rare and far from the query: a post-filter over the top-k would find none
        rare = {"$and": [{"topic": "cooking"}, {"rank": {"$lt": 70}}]}
        hits = engine.search("jazz jazz jazz", 10, filters=rare)
        assert len(hits) == 10
        assert all(h.item.properties["topic"] == "cooking" for h in hits)
        assert all(h.item.properties["rank"] < 70 for h in hits)
        assert len(engine.search("jazz", 50, filters=rare)) == 11  # all that exist
        assert engine.search("jazz", 5, filters={"topic": "polka"}) == []


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_filtered_search_many_answers_each_query_as_a_single_search_would(
    tmp_path: Path, kind: str
) -> None:
    """Several filtered queries at once (one recommendation's retrieval): the ones the
    graph answers short share one exact pass, and every answer is the single query's."""
    engine = make_engine(
        tmp_path / "s", WordHashEncoder(), index_kind=kind, exact_filter_limit=0, **APPROXIMATE
    )
    with engine:
        engine.catalog.upsert(catalog_items(600))
        keeper = engine.catalog.keeper
        texts = ["jazz jazz jazz", "chess opening", "garden roses", "cycling hills"]
        queries = engine.catalog.encoder.encode(texts)
        rare = {"$and": [{"topic": "cooking"}, {"rank": {"$lt": 70}}]}  # 11 items
        for spec, matching in ((rare, 11), ({"topic": "jazz"}, 100)):
            expr = engine.catalog.parse_filters(spec)
            sizes = [10, 5, 5, 30]
            together = keeper.search_many(queries, sizes, expr)
            alone = [keeper.search(q, k, expr) for q, k in zip(queries, sizes, strict=True)]
            assert together == alone
            assert [len(found) for found in together] == [min(k, matching) for k in sizes]


def test_filter_grammar_on_items(engine: Engine) -> None:
    engine.catalog.upsert(catalog_items(60))
    cat = engine.catalog

    def found(filters: dict[str, Any]) -> set[str]:
        return set(ids(cat.search("story", 60, filters=filters)))

    assert found({"topic": {"$in": ["jazz", "chess"]}}) == {
        i["id"] for i in catalog_items(60) if i["properties"]["topic"] in ("jazz", "chess")
    }
    assert found({"$or": [{"rank": 3}, {"rank": 4}]}) == {"astronomy-0003", "cycling-0004"}
    assert found({"minutes": {"$gte": 8}, "topic": "jazz"}) == {"jazz-0018", "jazz-0048"}
    early = {"published_at": {"$lt": "2026-01-03T00:00:00Z"}, "rank": {"$lt": 30}}
    assert found(early) == {"jazz-0000", "chess-0001", "cycling-0028", "cooking-0029"}
    assert found({"tags": "garden", "rank": {"$lt": 10}}) == {"garden-0002", "garden-0008"}
    assert found({"$not": {"topic": {"$ne": "chess"}}, "rank": {"$lte": 7}}) == {
        "chess-0001",
        "chess-0007",
    }
    with pytest.raises(InvalidFilterError):
        cat.search("story", 5, filters={"rank": {"$between": [1, 2]}})


def test_invalid_items_store_nothing(engine: Engine) -> None:
    good = catalog_items(3)
    bad = [
        *good,
        {"id": "has space", "title": "x"},
        {"id": "ok-id", "title": " ", "body": ""},
        {"id": "x" * 257, "title": "x"},
        {"id": "big", "title": "t" * 1001},
        {"id": "props", "title": "t", "properties": {"blob": "x" * 20_000}},
        {"id": "extra", "title": "t", "colour": "red"},
        "not an object",
    ]
    with pytest.raises(InvalidItemError) as caught:
        engine.catalog.upsert(bad)  # type: ignore[list-item]
    assert [pos for pos, _, _ in caught.value.problems] == [3, 4, 5, 6, 7, 8, 9]
    assert engine.catalog.count() == 0


def test_bad_arguments_are_typed_errors(engine: Engine) -> None:
    engine.catalog.upsert(catalog_items(3))
    for n in (0, -1, 1001, True):
        with pytest.raises(InvalidInputError):
            engine.search("x", n)
    with pytest.raises(InvalidInputError):
        engine.search("   ")
    with pytest.raises(InvalidInputError):
        engine.search("x" * 2001)
    with pytest.raises(InvalidInputError):
        engine.catalog.get("bad id")
    with pytest.raises(InvalidInputError):
        engine.catalog.delete(["ok", "bad/id"])
    assert engine.catalog.count() == 3


def test_later_duplicate_in_a_batch_wins(engine: Engine) -> None:
    report = engine.catalog.upsert(
        [{"id": "a", "title": "first version"}, {"id": "a", "title": "second version"}]
    )
    assert report.added == ["a"] and engine.catalog.get("a").title == "second version"


def test_index_kind_follows_catalog_size(tmp_path: Path) -> None:
    engine = make_engine(tmp_path / "s", WordHashEncoder(), hnsw_threshold=50, hnsw_m=8)
    with engine:
        engine.catalog.upsert(catalog_items(40))
        assert engine.info()["index"]["type"] == "flat"
        engine.catalog.upsert(catalog_items(80))
        assert engine.info()["index"]["type"] == "hnsw"
        assert len(engine.search("chess", 10)) == 10
        # hysteresis: back to flat only below half the threshold
        engine.catalog.delete([i["id"] for i in catalog_items(80)[:50]])
        assert engine.info()["index"]["type"] == "hnsw"
        engine.catalog.delete([i["id"] for i in catalog_items(80)[50:60]])
        assert engine.info()["index"]["type"] == "flat"


def test_auto_picks_ivf_from_its_threshold_and_retrains_when_the_catalog_doubles(
    tmp_path: Path,
) -> None:
    sizes = {"hnsw_threshold": 20, "ivf_threshold": 100, "hnsw_m": 8}
    with make_engine(tmp_path / "s", WordHashEncoder(), **sizes) as engine:
        keeper = engine.catalog.keeper
        engine.catalog.upsert(catalog_items(60))
        assert engine.info()["index"]["type"] == "hnsw"
        engine.catalog.upsert(catalog_items(120))
        assert engine.info()["index"]["type"] == "ivf"
        assert (keeper.index.trained_on, keeper.index.ivf_lists) == (120, 16)
        assert keeper.index.nprobe == 6  # unset: √(2·16) lists scanned
        assert ids(engine.search("chess", 3))[0].startswith("chess")
        engine.catalog.upsert(catalog_items(240))  # doubled, not more: the lists stay
        assert engine.search("chess", 3) and keeper.index.trained_on == 120
        builds = keeper.rebuilds
        engine.catalog.upsert(catalog_items(241))
        assert engine.search("chess", 3) and keeper.rebuilds == builds + 1
        assert (keeper.index.trained_on, keeper.index.live_count) == (241, 241)
        # hysteresis: IVF down to half its threshold
        engine.catalog.delete([i["id"] for i in catalog_items(241)[:191]])
        assert engine.info()["index"]["type"] == "ivf"
        engine.catalog.delete([i["id"] for i in catalog_items(241)[191:192]])
        assert engine.info()["index"]["type"] == "hnsw"


def test_an_ivf_index_file_is_reopened_without_a_rebuild_and_caught_up(tmp_path: Path) -> None:
    """Deletes take effect at once (no tombstones), and an older index file is caught
    up from the catalog's change log on open, not rebuilt."""
    config = {"index_kind": "ivf", "ivf_nprobe": 2}
    with make_engine(tmp_path / "s", WordHashEncoder(), **config) as engine:
        engine.catalog.upsert(catalog_items(300))
        path = engine.catalog.keeper.path
    older = path.read_bytes()
    with make_engine(tmp_path / "s", WordHashEncoder(), **config) as engine:
        assert engine.catalog.keeper.rebuilds == 0
        engine.catalog.upsert([{**catalog_items(1)[0], "id": "late-jazz"}])
        victims = ids(engine.search("jazz jazz", 5))
        engine.catalog.delete(victims)
        assert not engine.catalog.keeper.index.dead
        assert not set(victims) & set(ids(engine.search("jazz jazz", 300)))
    path.write_bytes(older)  # as if this process had not seen the last writes
    with make_engine(tmp_path / "s", WordHashEncoder(), index_kind="ivf", ivf_nprobe=3) as engine:
        keeper = engine.catalog.keeper
        assert keeper.rebuilds == 0 and keeper.index.live_count == 296
        assert keeper.index.nprobe == 3  # the configured breadth, not the saved file's
        found = ids(engine.search("jazz jazz", 300))
        assert "late-jazz" in found and not set(victims) & set(found)


def test_an_ivf_index_is_mapped_from_its_file_and_answers_as_one_in_memory(
    tmp_path: Path,
) -> None:
    """With ``index_mmap`` (the default) the keeper writes a built IVF index and maps
    it; later rows wait in memory until they are a quarter of the index, then the file
    is rewritten and mapped again. Answers equal those of an index held in memory."""
    config = {"index_kind": "ivf", "ivf_nprobe": 2}
    with (
        make_engine(tmp_path / "m", WordHashEncoder(), **config) as mapped,
        make_engine(tmp_path / "p", WordHashEncoder(), index_mmap=False, **config) as private,
    ):
        keeper = mapped.catalog.keeper
        liked = [{"kind": "like", "item_id": i["id"]} for i in catalog_items(300)[::50]]
        for engine in (mapped, private):
            engine.catalog.upsert(catalog_items(300))
            engine.interact("reader", liked)  # a recommend that retrieves by its model
        assert keeper.index.mapped and not private.catalog.keeper.index.mapped
        written = keeper.path.read_bytes()
        steps = [catalog_items(360), catalog_items(360)[:20], catalog_items(460)]
        for step, batch in enumerate(steps):
            for engine in (mapped, private):
                engine.catalog.upsert(batch)
                engine.catalog.delete([catalog_items(460)[40 + step]["id"]])
            for query in ("jazz jazz", "chess"):
                assert mapped.search(query, 25) == private.search(query, 25)
            got = mapped.recommend("reader", 10)
            assert len(got) == 10 and got == private.recommend("reader", 10)
            if step == 0:  # 60 new rows of 359: held in memory, the file untouched
                assert keeper.index.delta_count == 60 and keeper.path.read_bytes() == written
        # 100 more and 2 re-added (162 of 459 > a quarter): rewritten and mapped again
        assert keeper.index.mapped and keeper.index.delta_count == 0
        assert keeper.path.read_bytes() != written
    with make_engine(tmp_path / "m", WordHashEncoder(), **config) as reopened:
        index = reopened.catalog.keeper.index
        assert index.mapped and reopened.catalog.keeper.rebuilds == 0
        assert index.live_count == reopened.catalog.count() == 459


def test_an_ivf_file_of_the_earlier_layout_is_rewritten_and_mapped_on_open(
    tmp_path: Path,
) -> None:
    """A store from before mapping: its IVF file (header first) is read once, written
    in the layout FAISS can map, and mapped; no rebuild (float32 codes: the earlier
    layout predates float16 codes and their table)."""
    config = {"index_kind": "ivf", "ivf_nprobe": 2, "ivf_codes": "float32"}
    with make_engine(tmp_path / "s", WordHashEncoder(), **config) as engine:
        engine.catalog.upsert(catalog_items(300))
        expected = engine.search("jazz story", 20)
        keeper = engine.catalog.keeper
        path, stamp, dim = keeper.path, keeper.file.stamp, keeper.dimension
    index = VectorIndex.load(path, fingerprint=stamp, dimension=dim)
    header = {"kind": "ivf", "dimension": dim, "seq": index.seq, "dead": [],
              "fingerprint": stamp, "ef_search": 96, "nprobe": 2, "trained_on": 300}  # fmt: skip
    raw = json.dumps(header).encode()
    body = faiss.serialize_index(index._ivf.merged() if index._ivf else None).tobytes()
    path.write_bytes(vector_index_module._MAGIC + struct.pack("<I", len(raw)) + raw + body)
    assert VectorIndex.saved_seq(path, fingerprint=stamp) is None  # the earlier layout
    with make_engine(tmp_path / "s", WordHashEncoder(), **config) as engine:
        keeper = engine.catalog.keeper
        assert keeper.rebuilds == 0 and keeper.index.mapped
        assert VectorIndex.saved_seq(path, fingerprint=stamp) == index.seq
        assert engine.search("jazz story", 20) == expected


def test_an_ivf_retrain_runs_beside_the_index_in_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebuild (here the retrain once the catalog doubled) reads an LMDB snapshot
    under no lock: a search from another thread answers with the current index
    meanwhile, and the new index, caught up with what was written during the build,
    then replaces it."""
    sizes = {"index_kind": "ivf", "ivf_nprobe": 16}
    with make_engine(tmp_path / "s", WordHashEncoder(), **sizes) as engine:
        keeper = engine.catalog.keeper
        engine.catalog.upsert(catalog_items(120))
        assert ids(engine.search("chess", 3)) and keeper.index.trained_on == 120
        answered_during_build: list[bool] = []
        real_sample = IndexKeeper._training_sample

        def sample_while_searching(self: IndexKeeper, txn: Any, live: int, lists: int) -> Any:
            other = threading.Thread(target=lambda: engine.search("chess", 3))
            other.start()
            other.join(timeout=10)  # blocked behind the write lock: no answer in time
            answered_during_build.append(not other.is_alive())
            # a write during the build: the new index must hold it when swapped in
            engine.catalog.upsert([{"id": "late", "title": "yodel yodel"}])
            return real_sample(self, txn, live, lists)

        monkeypatch.setattr(IndexKeeper, "_training_sample", sample_while_searching)
        engine.catalog.upsert(catalog_items(241))
        assert ids(engine.search("chess", 3))
        assert answered_during_build == [True]
        assert (keeper.index.trained_on, keeper.index.live_count) == (241, 242)
        assert ids(engine.search("yodel", 1)) == ["late"]
        assert ids(engine.search("x", 300, filters={"topic": "chess"}))  # the table follows


def test_a_mapped_index_is_rewritten_while_searches_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rewriting the file (seconds at 1M items) holds the read lock, not the write
    lock: a search from another thread completes while the file is being written."""
    config = {"index_kind": "ivf", "ivf_nprobe": 2}
    with make_engine(tmp_path / "s", WordHashEncoder(), **config) as engine:
        keeper = engine.catalog.keeper
        engine.catalog.upsert(catalog_items(300))
        assert keeper.index.mapped
        searched: list[list[str]] = []
        answered_during_save: list[bool] = []
        real_save = VectorIndex.save

        def save_while_searching(index: VectorIndex, path: Path, *, fingerprint: str) -> None:
            other = threading.Thread(target=lambda: searched.append(ids(engine.search("chess", 3))))
            other.start()
            other.join(timeout=10)  # blocked behind a write lock: no answer in time
            answered_during_save.append(not other.is_alive())
            real_save(index, path, fingerprint=fingerprint)

        monkeypatch.setattr(VectorIndex, "save", save_while_searching)
        engine.catalog.upsert(catalog_items(420))  # 120 new rows of 420: due
        assert ids(engine.search("jazz story", 3))
        assert keeper.index.mapped and keeper.index.delta_count == 0
        assert answered_during_save == [True]
        assert len(searched) == 1 and searched[0][0].startswith("chess")


def test_hnsw_tombstones_then_compaction(tmp_path: Path) -> None:
    engine = make_engine(
        tmp_path / "s", WordHashEncoder(), index_kind="hnsw", hnsw_m=8, tombstone_rebuild_ratio=0.2
    )
    with engine:
        engine.catalog.upsert(catalog_items(100))
        keeper = engine.catalog.keeper
        builds = keeper.rebuilds
        gone = [f"jazz-{i:04d}" for i in range(0, 60, 6)]
        engine.catalog.delete(gone)  # 10 of 100
        assert len(keeper.index.dead) == 10 and keeper.rebuilds == builds
        assert not set(gone) & set(ids(engine.search("jazz jazz", 100)))
        engine.catalog.delete([f"chess-{i:04d}" for i in range(1, 91, 6)])  # 15 more: > 20%
        assert keeper.rebuilds == builds + 1 and not keeper.index.dead
        assert keeper.index.ntotal == engine.catalog.count() == 75


def test_the_hnsw_beam_width_follows_the_catalog_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``hnsw_ef_search=None``: the width for the live item count (``ef_search_for``),
    set on open, after each catch-up and each rebuild; a configured width stays."""
    import ownrank.engine.index_sizing as index_sizing

    monkeypatch.setattr(index_sizing, "EF_GROWS_FROM", 50)  # grows past 50 items here
    engine = make_engine(tmp_path / "s", WordHashEncoder(), index_kind="hnsw", hnsw_m=8)
    with engine:
        engine.catalog.upsert(catalog_items(40))
        assert engine.catalog.keeper.index.ef_search == 96
        engine.catalog.upsert(catalog_items(100))
        engine.search("jazz", 3)  # a query catches the index up
        assert engine.catalog.keeper.index.ef_search == 96 * 100 // 50
    with make_engine(tmp_path / "s", WordHashEncoder(), index_kind="hnsw", hnsw_m=8) as again:
        assert again.catalog.keeper.index.ef_search == 192  # from the saved index's size
    config = {"index_kind": "hnsw", "hnsw_m": 8, "hnsw_ef_search": 40}
    with make_engine(tmp_path / "s", WordHashEncoder(), **config) as fixed:
        assert fixed.catalog.keeper.index.ef_search == 40


def test_concurrent_first_filtered_queries_build_the_filter_table_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with make_engine(tmp_path, WordHashEncoder()) as writer:
        writer.catalog.upsert(catalog_items(60))
    # without the warm-up at open, the first filtered queries build the table
    with make_engine(tmp_path, WordHashEncoder(), warm_up_on_open=False) as engine:
        builds = 0
        real = engine.catalog.store.iter_items

        def counting(txn: Any) -> Any:
            nonlocal builds
            builds += 1
            time.sleep(0.05)  # a slow build, so the other threads queue behind it
            return real(txn)

        monkeypatch.setattr(engine.catalog.store, "iter_items", counting)
        with ThreadPoolExecutor(8) as pool:
            results = list(
                pool.map(lambda _: engine.search("garden", 5, {"rank": {"$gte": 0}}), range(8))
            )
    assert builds == 1
    assert all(len(r) == 5 for r in results)
