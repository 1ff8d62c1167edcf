"""An IVF index of float16 codes (the default) in the engine: the scan reads the rounded
vectors, everything that needs a vector gets the stored float32 bits from LMDB, and a
store whose index file holds the other codes is rebuilt on open."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import WordHashEncoder, make_engine
from test_catalog import catalog_items

IVF = {"index_kind": "ivf", "ivf_nprobe": 64}  # (600 items: 34 lists, every one scanned)


def stored_vector(engine: object, row: int) -> np.ndarray:
    catalog = engine.catalog  # type: ignore[attr-defined]
    with catalog.env.read() as txn:
        found = catalog.store.get_vector(txn, row, catalog.keeper.dimension)
    assert found is not None
    return np.asarray(found[1])


def test_float16_codes_and_exact_vectors_from_lmdb(tmp_path: Path) -> None:
    with make_engine(tmp_path / "s", WordHashEncoder(), **IVF) as engine:
        engine.catalog.upsert(catalog_items(600))
        keeper = engine.catalog.keeper
        keeper.sync()
        assert (keeper.index.ivf_codes, keeper.index.exact_vectors) == ("float16", False)
        rows = [int(r) for r in keeper.index.labels()[::37]]
        known, ids, vectors = keeper.indexed_items(rows)
        assert known.all() and len(ids) == len(rows)
        for row, vector in zip(rows, vectors, strict=True):
            exact = stored_vector(engine, row)
            assert vector.tobytes() == exact.tobytes()  # the stored bits, not the codes
            assert keeper.index.reconstruct(np.array([row])).tobytes() != exact.tobytes()
        by_id = keeper.item_vectors(ids)
        assert by_id is not None
        assert all(by_id[i].tobytes() == v.tobytes() for i, v in zip(ids, vectors, strict=True))


def test_search_gives_exact_scores_and_the_float32_answer(tmp_path: Path) -> None:
    """Every list scanned: the same items as an index of float32 vectors, and the
    scores of the stored vectors (the codes' own scores differ)."""
    answers = {}
    for codes in ("float32", "float16"):
        with make_engine(tmp_path / codes, WordHashEncoder(), ivf_codes=codes, **IVF) as engine:
            engine.catalog.upsert(catalog_items(600))
            filters = {"topic": "jazz"}
            answers[codes] = [
                [(h.item_id, h.score) for h in engine.search(text, 20, f)]
                for text in ("jazz night", "garden roses", "chess opening")
                for f in (None, filters)
            ]
            if codes == "float16":
                query = engine.catalog.embed_query("jazz night")
                keeper = engine.catalog.keeper
                raw = keeper.index.search(query, 20)
                found = keeper.search(query, 20)
                assert [r for r, _s in found] != [] and found != list(
                    zip(raw[1][0].tolist(), raw[0][0].tolist(), strict=True)
                )
                for row, score in found:
                    expected = float(stored_vector(engine, row) @ query)
                    assert score == pytest.approx(expected, abs=1e-6)
    for exact, half in zip(answers["float32"], answers["float16"], strict=True):
        assert [i for i, _s in half] == [i for i, _s in exact]
        assert [s for _i, s in half] == pytest.approx([s for _i, s in exact], abs=1e-6)


def test_an_index_file_of_other_codes_is_rebuilt_on_open(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with make_engine(path, WordHashEncoder(), ivf_codes="float32", **IVF) as engine:
        engine.catalog.upsert(catalog_items(300))
        assert engine.catalog.keeper.index.ivf_codes == "float32"
        before = [h.item_id for h in engine.search("jazz night", 10)]
    for codes in ("float16", "float32", "float32"):
        with make_engine(path, WordHashEncoder(), ivf_codes=codes, **IVF) as engine:
            keeper = engine.catalog.keeper
            assert keeper.index.ivf_codes == codes
            assert [h.item_id for h in engine.search("jazz night", 10)] == before
            rebuilt = keeper.rebuilds
        # (the last open finds the file it saved: no rebuild)
    assert rebuilt == 0


def test_a_row_deleted_in_lmdb_since_the_catch_up_is_not_held(tmp_path: Path) -> None:
    """Another process deleted the item after this one's last catch-up: its vector is
    gone from LMDB while the index still lists the row; the reads leave it out."""
    with make_engine(tmp_path / "s", WordHashEncoder(), **IVF) as engine:
        engine.catalog.upsert(catalog_items(300))
        keeper = engine.catalog.keeper
        keeper.sync()
        rows = [int(r) for r in keeper.index.labels()[:3]]
        ids = keeper.indexed_items(rows)[1]
        with engine.catalog.env.write() as txn:  # behind the change log's back
            engine.catalog.store.delete_vector(txn, rows[1], keeper.dimension)
        known, found_ids, vectors = keeper.indexed_items(rows)
        assert known.tolist() == [True, False, True] and found_ids == [ids[0], ids[2]]
        assert len(vectors) == 2
        assert keeper.exact.of(keeper.index, np.array(rows))[0].tolist() == [True, False, True]
