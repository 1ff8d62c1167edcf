"""An IVF index of float16 codes (the default) in the engine: the scan reads the rounded
vectors, everything that needs a vector gets the float32 bits as stored (the index's
table of them), and a store whose index file holds the other codes is rebuilt on open."""

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


@pytest.mark.parametrize("mmap", [True, False])
def test_float16_codes_with_the_vectors_as_added(tmp_path: Path, mmap: bool) -> None:
    """The index file holds float16 codes and a table of the exact vectors, mapped
    from the file (shared by processes) with ``index_mmap``: what the engine reads
    of a row (a pool's vectors, a user's items) are LMDB's bits, never the codes'."""
    with make_engine(tmp_path / "s", WordHashEncoder(), index_mmap=mmap, **IVF) as engine:
        engine.catalog.upsert(catalog_items(600))
        keeper = engine.catalog.keeper
        keeper.sync()
        index = keeper.index
        assert index.ivf_codes == "float16" and index.mapped == mmap
        assert index._ivf is not None and index._ivf.table is not None
        assert index._ivf.table.mapped == mmap
        rows = [int(r) for r in index.labels()[::37]]
        known, ids, vectors = keeper.indexed_items(rows)
        assert known.all() and len(ids) == len(rows)
        for row, vector in zip(rows, vectors, strict=True):
            exact = stored_vector(engine, row)
            assert vector.tobytes() == exact.tobytes()
            assert exact.astype(np.float16).astype(np.float32).tobytes() != exact.tobytes()
        by_id = keeper.item_vectors(ids)
        assert by_id is not None
        assert all(by_id[i].tobytes() == v.tobytes() for i, v in zip(ids, vectors, strict=True))
        # rows added after the file was written: held in memory, exact as well
        engine.catalog.upsert([{"id": "late", "title": "a late jazz story"}])
        keeper.sync()
        row = keeper.live_rows(["late"])[0]
        assert (
            keeper.indexed_items([int(row)])[2][0].tobytes() == stored_vector(engine, row).tobytes()
        )


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
                found = engine.catalog.keeper.search(query, 20)
                assert len(found) == 20
                for row, score in found:
                    expected = float(stored_vector(engine, row) @ query)
                    assert score == pytest.approx(expected, abs=1e-6)
                # the rows only (retrieval): the same rows, scored and ordered by the codes
                queries = np.stack([query, engine.catalog.embed_query("garden roses")])
                exact = engine.catalog.keeper.search_many(queries, [20, 20])
                coded = engine.catalog.keeper.search_many(queries, [20, 20], exact=False)
                for q, by_vectors, by_codes in zip(queries, exact, coded, strict=True):
                    assert {r for r, _s in by_codes} == {r for r, _s in by_vectors}
                    scores = [s for _r, s in by_codes]
                    assert scores == sorted(scores, reverse=True)
                    halves = [stored_vector(engine, r).astype(np.float16) for r, _s in by_codes]
                    assert scores == pytest.approx([float(h @ q) for h in halves], abs=1e-3)
                    assert scores != [s for _r, s in by_vectors]
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


def test_a_retrain_on_open_is_written_not_answered_by_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An index outgrown (2x since training) with nothing written since its file was
    saved: the retrain on open has the file's catalog state, and must replace the file
    rather than be answered by it (which redid the retrain at every open)."""
    from ownrank.engine.index_keeper import IndexKeeper

    path = tmp_path / "s"
    config = {"index_kind": "ivf", "ivf_nprobe": 64}
    with make_engine(path, WordHashEncoder(), **config) as engine:
        engine.catalog.upsert(catalog_items(100))
        engine.search("jazz", 3)  # (the first search catches up: trained on 100)
        assert engine.catalog.keeper.index.trained_on == 100
    with monkeypatch.context() as patched:  # grow without retraining
        patched.setattr(IndexKeeper, "_rebuild_due", lambda self, index: False)
        with make_engine(path, WordHashEncoder(), **config) as engine:
            engine.catalog.upsert(catalog_items(300)[100:])
            engine.search("jazz", 3)
            assert engine.catalog.keeper.index.trained_on == 100
    with make_engine(path, WordHashEncoder(), **config) as engine:
        keeper = engine.catalog.keeper
        assert (keeper.rebuilds, keeper.index.trained_on) == (1, 300)
    with make_engine(path, WordHashEncoder(), **config) as engine:
        keeper = engine.catalog.keeper
        assert (keeper.rebuilds, keeper.index.trained_on) == (0, 300)
