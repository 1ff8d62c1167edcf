"""VectorIndex: exact (flat) and approximate (hnsw, ivf) search, removal, persistence."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt
import pytest

from ownrank.errors import DimensionMismatchError, StoreFormatError
from ownrank.storage import vector_index as vector_index_module
from ownrank.storage.ivf_index import IvfCodes
from ownrank.storage.vector_index import IndexType, VectorIndex

DIM = 32
FINGERPRINT = "store-1/test:word-hash:32"

Vectors = npt.NDArray[np.float32]


def unit_vectors(n: int, dim: int = DIM, seed: int = 0) -> Vectors:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def brute_force(
    queries: Vectors, vectors: Vectors, labels: npt.NDArray[np.int64], k: int
) -> npt.NDArray[np.int64]:
    """Labels of the ``k`` best inner products per query (ties are improbable with floats)."""
    scores = queries @ vectors.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return labels[order]


def empty(
    kind: IndexType, training: Vectors | None = None, codes: IvfCodes = "float32"
) -> VectorIndex:
    """An empty index; an ivf one trained on ``training`` (16 lists, 4 scanned), holding
    ``codes`` (float32 unless a test says otherwise: most tests check exact answers)."""
    if kind != "ivf":
        return VectorIndex(kind, DIM)
    sample = unit_vectors(200, seed=99) if training is None else training
    return VectorIndex(
        kind,
        DIM,
        ivf_lists=16,
        nprobe=4,
        training=sample,
        trained_on=len(sample),
        ivf_codes=codes,
    )


def half(vectors: Vectors) -> Vectors:
    """The vectors as an IVF index of float16 codes holds them."""
    return vectors.astype(np.float16).astype(np.float32)


def build(
    kind: IndexType,
    vectors: Vectors,
    rows: npt.NDArray[np.int64] | None = None,
    codes: IvfCodes = "float32",
) -> VectorIndex:
    index = empty(kind, vectors, codes)
    index.add(np.arange(len(vectors), dtype=np.int64) if rows is None else rows, vectors)
    return index


@pytest.fixture(autouse=True)
def single_faiss_thread() -> Iterator[None]:
    """HNSW construction is only reproducible with one OpenMP thread."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


# -- search ------------------------------------------------------------------------------


def test_flat_top_k_equals_brute_force_with_sparse_labels() -> None:
    vectors = unit_vectors(500, seed=1)
    rows = np.arange(500, dtype=np.int64) * 7 + 3  # labels are catalog rows, not positions
    queries = unit_vectors(20, seed=2)
    index = build("flat", vectors, rows)
    assert index.kind == "flat"
    assert index.ntotal == 500
    assert index.live_count == 500
    scores, found = index.search(queries, 10)
    assert found.shape == (20, 10)
    np.testing.assert_array_equal(found, brute_force(queries, vectors, rows, 10))
    expected_scores = np.sort(queries @ vectors.T, axis=1)[:, ::-1][:, :10]
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-5)


def test_search_accepts_a_single_query_vector_and_clamps_k() -> None:
    vectors = unit_vectors(5, seed=3)
    index = build("flat", vectors)
    scores, found = index.search(vectors[2], 50)
    assert found.shape == (1, 5)  # k is clamped to the number of vectors
    assert found[0, 0] == 2
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert sorted(found[0].tolist()) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_search_on_empty_index_returns_empty_results(kind: IndexType) -> None:
    index = empty(kind)
    scores, found = index.search(unit_vectors(3), 10)
    assert scores.shape == (3, 0)
    assert found.shape == (3, 0)
    assert index.tombstone_ratio == 0.0


def test_hnsw_recall_at_10_against_brute_force() -> None:
    vectors = unit_vectors(2_000, seed=4)
    queries = unit_vectors(100, seed=5)
    index = build("hnsw", vectors)
    assert index.kind == "hnsw"
    _, found = index.search(queries, 10)
    truth = brute_force(queries, vectors, np.arange(2_000, dtype=np.int64), 10)
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    assert recall >= 0.9


def test_ivf_scans_nprobe_lists_and_all_lists_is_exact() -> None:
    vectors = unit_vectors(2_000, seed=4)
    queries = unit_vectors(50, seed=5)
    index = build("ivf", vectors)
    assert (index.kind, index.ivf_lists, index.live_count) == ("ivf", 16, 2_000)
    truth = brute_force(queries, vectors, np.arange(2_000, dtype=np.int64), 10)
    _, everything = index.search(queries, 10, nprobe=16)
    np.testing.assert_array_equal(everything, truth)
    _, some = index.search(queries, 10, nprobe=1)  # one list of 16: most of the top missed
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(some, truth, strict=True)])
    assert recall < 0.9


@pytest.mark.parametrize("filtered", [False, True])
def test_float16_codes_pick_by_the_codes_and_score_by_the_vectors(filtered: bool) -> None:
    """Every list scanned: the best 10 of the rounded vectors (what the codes hold),
    returned with their exact scores, best first, ties by row."""
    vectors = unit_vectors(2_000, seed=4)
    queries = unit_vectors(50, seed=5)
    index = build("ivf", vectors, codes="float16")
    assert index.ivf_codes == "float16"
    rows = np.arange(2_000, dtype=np.int64)
    allowed = rows[::3] if filtered else None
    admitted = rows if allowed is None else allowed
    scores, found = index.search(queries, 10, allowed=allowed, nprobe=16)
    picked = brute_force(queries, half(vectors[admitted]), admitted, 10)
    for q in range(len(queries)):
        assert set(found[q].tolist()) == set(picked[q].tolist())
        exact = vectors[found[q]] @ queries[q]
        np.testing.assert_allclose(scores[q], exact, rtol=0, atol=1e-6)
        assert (np.diff(scores[q]) <= 0).all()
    assert (found == picked).mean() > 0.95  # (the codes' order is nearly the same)


def test_ivf_filtered_search_finds_admitted_rows_far_from_the_query() -> None:
    """A filter admitting only rows of another region than the query's: the lists the
    query would scan hold none of them, so the search scans the lists that do."""
    rng = np.random.default_rng(6)
    centre = unit_vectors(2, seed=20)
    vectors = np.repeat(centre, 1_000, axis=0) + 0.3 * unit_vectors(2_000, seed=21)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = build("ivf", vectors)
    far = np.sort(rng.choice(np.arange(1_000, 2_000), 400, replace=False)).astype(np.int64)
    queries = vectors[:5] + 0.01  # in the first region
    _, unfiltered = index.search(queries, 10, nprobe=1)
    assert (unfiltered < 1_000).all()
    for nprobe in (1, 4):
        _, found = index.search(queries, 10, allowed=far, nprobe=nprobe)
        assert (found >= 0).all() and np.isin(found, far).all()
    # scanning every list that holds admitted rows is exact
    _, everything = index.search(queries, 10, allowed=far, nprobe=16)
    np.testing.assert_array_equal(everything, brute_force(queries, vectors[far], far, 10))


def test_ivf_without_a_training_sample_is_refused() -> None:
    with pytest.raises(ValueError, match="training sample"):
        VectorIndex("ivf", DIM, ivf_lists=16)
    with pytest.raises(DimensionMismatchError):
        VectorIndex("ivf", DIM, ivf_lists=4, training=unit_vectors(50, dim=DIM + 1))


def test_add_with_wrong_dimension_raises() -> None:
    index = VectorIndex("flat", DIM)
    with pytest.raises(DimensionMismatchError) as info:
        index.add(np.arange(3, dtype=np.int64), unit_vectors(3, dim=DIM + 1))
    assert info.value.expected == DIM
    assert info.value.got == DIM + 1
    with pytest.raises(DimensionMismatchError):
        index.add(np.arange(1, dtype=np.int64), unit_vectors(1)[0])  # 1-D, not a batch
    assert index.ntotal == 0


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_allowed_restricts_results_to_those_rows(kind: IndexType) -> None:
    vectors = unit_vectors(300, seed=6)
    queries = unit_vectors(5, seed=7)
    index = build(kind, vectors)
    allowed = np.arange(0, 300, 3, dtype=np.int64)
    _, found = index.search(queries, 10, allowed=allowed)
    assert found.shape == (5, 10)
    assert set(found.ravel().tolist()) <= set(allowed.tolist())
    expected = brute_force(queries, vectors[allowed], allowed, 10)
    if kind == "flat":  # exact within the allowed rows
        np.testing.assert_array_equal(found, expected)
    if kind == "ivf":  # exact within the allowed rows of the lists scanned: all of them
        _, every_list = index.search(queries, 10, allowed=allowed, nprobe=16)
        np.testing.assert_array_equal(every_list, expected)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_allowed_smaller_than_k_pads_with_minus_one(kind: IndexType) -> None:
    vectors = unit_vectors(100, seed=8)
    index = build(kind, vectors)
    allowed = np.array([5, 9], dtype=np.int64)
    _, found = index.search(vectors[0], 10, allowed=allowed, nprobe=16)
    assert sorted(r for r in found[0].tolist() if r >= 0) == [5, 9]
    assert (found[0] == -1).sum() == 8


# -- removal -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_flat_and_ivf_remove_vectors_at_once(kind: IndexType) -> None:
    vectors = unit_vectors(50, seed=9)
    index = build(kind, vectors)
    index.remove([3, 17, 12_345])  # a row the index never held is no error
    assert index.ntotal == 48
    assert index.dead == set()
    assert index.tombstone_ratio == 0.0
    assert not {3, 17} & set(index.labels().tolist())
    _, found = index.search(vectors[3], 50, nprobe=16)
    assert found.shape == (1, 48)
    assert not {3, 17} & set(found[0].tolist())
    with pytest.raises(RuntimeError):
        index.reconstruct(np.array([3], dtype=np.int64))
    index.remove([])  # no-op
    assert index.ntotal == 48
    index.add(np.array([3], dtype=np.int64), vectors[3:4])  # the row may come back
    _, found = index.search(vectors[3], 1, nprobe=16)
    assert found[0].tolist() == [3]


def test_hnsw_remove_tombstones_and_never_returns_them() -> None:
    vectors = unit_vectors(200, seed=10)
    index = build("hnsw", vectors)
    index.remove([4])
    assert index.ntotal == 200  # the graph keeps the node
    assert index.dead == {4}
    assert index.live_count == 199
    assert index.tombstone_ratio == pytest.approx(1 / 200)
    index.remove([5, 6, 7])
    assert index.tombstone_ratio == pytest.approx(4 / 200)
    assert 4 in set(index.labels().tolist())  # still stored, only masked
    for row in (4, 5, 6, 7):
        _, found = index.search(vectors[row], 200)
        returned = set(found[0].tolist())
        assert not {4, 5, 6, 7} & returned
    _, found = index.search(vectors[4], 10)
    assert 4 not in found[0].tolist()
    assert (found[0] >= 0).all()


def test_hnsw_tombstone_excluded_even_when_allowed() -> None:
    vectors = unit_vectors(50, seed=11)
    index = build("hnsw", vectors)
    index.remove([3])
    _, found = index.search(vectors[3], 5, allowed=np.array([3, 4, 5], dtype=np.int64))
    assert 3 not in found[0].tolist()


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf", "ivf-float16"])
def test_reconstruct_returns_the_stored_bits(kind: str) -> None:
    """Every kind, IVF with float16 codes too (from its table of the vectors)."""
    vectors = unit_vectors(20, seed=12)
    codes: IvfCodes = "float16" if kind == "ivf-float16" else "float32"
    index = build(kind.removesuffix("-float16"), vectors, np.arange(20) + 100, codes)  # type: ignore[arg-type]
    got = index.reconstruct(np.array([100, 119], dtype=np.int64))
    np.testing.assert_array_equal(got, vectors[[0, 19]])
    assert index.reconstruct(np.array([], dtype=np.int64)).shape == (0, DIM)


# -- persistence -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf", "ivf-float16"])
def test_save_then_load_round_trips(tmp_path: Path, kind: str) -> None:
    vectors = unit_vectors(400, seed=13)
    queries = unit_vectors(10, seed=14)
    codes: IvfCodes = "float16" if kind == "ivf-float16" else "float32"
    kind = "ivf" if codes == "float16" else kind
    index = build(kind, vectors, codes=codes)  # type: ignore[arg-type]
    index.seq = 42
    index.remove([1, 2, 3])
    before_scores, before_rows = index.search(queries, 10)
    path = tmp_path / "sub" / "catalog.index"
    index.save(path, fingerprint=FINGERPRINT)

    loaded = VectorIndex.load(path, fingerprint=FINGERPRINT, dimension=DIM)
    assert loaded.kind == kind
    assert loaded.ivf_codes == index.ivf_codes
    assert loaded.dimension == DIM
    assert loaded.seq == 42
    assert loaded.dead == index.dead
    assert loaded.ntotal == index.ntotal
    assert loaded.ef_search == index.ef_search
    assert (loaded.nprobe, loaded.ivf_lists, loaded.trained_on) == (
        index.nprobe,
        index.ivf_lists,
        index.trained_on,
    )
    np.testing.assert_array_equal(loaded.labels(), index.labels())
    after_scores, after_rows = loaded.search(queries, 10)
    np.testing.assert_array_equal(after_rows, before_rows)
    np.testing.assert_allclose(after_scores, before_scores, rtol=1e-6)
    assert not {1, 2, 3} & set(after_rows.ravel().tolist())


def test_save_leaves_no_temp_files_and_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "catalog.index"
    index = build("flat", unit_vectors(10, seed=15))
    index.seq = 1
    index.save(path, fingerprint=FINGERPRINT)
    index.seq = 2
    index.save(path, fingerprint=FINGERPRINT)  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog.index"]
    assert VectorIndex.load(path, fingerprint=FINGERPRINT, dimension=DIM).seq == 2


def test_failed_save_keeps_the_old_file_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "catalog.index"
    index = build("flat", unit_vectors(10, seed=16))
    index.seq = 1
    index.save(path, fingerprint=FINGERPRINT)
    original = path.read_bytes()

    def failing_fsync(fd: int) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "fsync", failing_fsync)  # the module calls os.fsync
    index.seq = 2
    with pytest.raises(OSError, match="disk on fire"):
        index.save(path, fingerprint=FINGERPRINT)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog.index"]
    assert path.read_bytes() == original


def test_load_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        VectorIndex.load(tmp_path / "nope.index", fingerprint=FINGERPRINT, dimension=DIM)


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.index"
    build("hnsw", unit_vectors(100, seed=17)).save(path, fingerprint=FINGERPRINT)
    return path


@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.01, 0.5, 0.9, 0.999])
def test_load_truncated_file_raises_store_format_error(saved: Path, fraction: float) -> None:
    data = saved.read_bytes()
    saved.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(StoreFormatError):
        VectorIndex.load(saved, fingerprint=FINGERPRINT, dimension=DIM)


def test_load_file_missing_its_last_byte_raises(saved: Path) -> None:
    saved.write_bytes(saved.read_bytes()[:-1])
    with pytest.raises(StoreFormatError):
        VectorIndex.load(saved, fingerprint=FINGERPRINT, dimension=DIM)


def test_load_garbage_raises_store_format_error(saved: Path) -> None:
    rng = np.random.default_rng(18)
    saved.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(StoreFormatError):
        VectorIndex.load(saved, fingerprint=FINGERPRINT, dimension=DIM)
    # the right magic followed by nonsense
    saved.write_bytes(vector_index_module._MAGIC + b"\x10\x00\x00\x00not json at all!" + b"x" * 64)
    with pytest.raises(StoreFormatError):
        VectorIndex.load(saved, fingerprint=FINGERPRINT, dimension=DIM)


def test_load_with_another_fingerprint_or_dimension_raises(saved: Path) -> None:
    with pytest.raises(StoreFormatError):
        VectorIndex.load(saved, fingerprint="store-1/other-model", dimension=DIM)
    with pytest.raises(StoreFormatError):
        VectorIndex.load(saved, fingerprint=FINGERPRINT, dimension=DIM * 2)
    # and the file is still fine for its own model
    assert VectorIndex.load(saved, fingerprint=FINGERPRINT, dimension=DIM).ntotal == 100


# -- a mapped IVF index ------------------------------------------------------------------


def answers(index: VectorIndex, queries: Vectors, allowed: npt.NDArray[np.int64]) -> list[Any]:
    """Everything a caller can ask of an index, for comparing two of them exactly."""
    labels = index.labels()
    return [
        index.ntotal,
        labels.tolist(),
        *[index.search(queries, 7, nprobe=p) for p in (2, 16)],
        index.search(queries, 7, allowed=allowed, nprobe=2),
        index.reconstruct(labels).tobytes(),
    ]


def assert_same(one: list[Any], other: list[Any]) -> None:
    for a, b in zip(one, other, strict=True):
        if isinstance(a, tuple):  # (scores, rows): bit for bit, order included
            np.testing.assert_array_equal(a[1], b[1])
            np.testing.assert_array_equal(a[0], b[0])
        else:
            assert a == b


@pytest.mark.parametrize(
    ("seed", "codes"), [(0, "float32"), (1, "float32"), (2, "float16"), (3, "float16")]
)
def test_a_mapped_ivf_index_answers_as_the_in_memory_one_through_any_changes(
    tmp_path: Path, seed: int, codes: IvfCodes
) -> None:
    """The file's lists stay read-only: additions go to the delta, removals of the
    file's rows are skipped; every answer equals that of an in-memory index that
    took the same changes, the file is never written, and saving merges both."""
    rng = np.random.default_rng(seed)
    pool = unit_vectors(900, seed=30 + seed)
    queries = unit_vectors(6, seed=40 + seed)
    memory = build("ivf", pool[:400], np.arange(400, dtype=np.int64), codes)
    path = tmp_path / "catalog.index"
    memory.save(path, fingerprint=FINGERPRINT)
    written = path.read_bytes()
    mapped = VectorIndex.load(path, fingerprint=FINGERPRINT, dimension=DIM, mapped=True)
    assert mapped.mapped and not memory.mapped
    held = set(range(400))
    for _step in range(12):
        if rng.random() < 0.5:  # add fresh rows (now and then one removed before)
            fresh = rng.choice(np.setdiff1d(np.arange(900), list(held)), 25, replace=False)
            rows = np.sort(fresh).astype(np.int64)
            for index in (memory, mapped):
                index.add(rows, pool[rows])
            held |= set(rows.tolist())
        else:  # remove rows of the file and of the delta (and one not held)
            gone = rng.choice(sorted(held), 20, replace=False).astype(np.int64)
            for index in (memory, mapped):
                index.remove([*gone.tolist(), 899_999])
            held -= set(gone.tolist())
        allowed = np.sort(rng.choice(900, 300, replace=False)).astype(np.int64)
        assert_same(answers(mapped, queries, allowed), answers(memory, queries, allowed))
    assert mapped.delta_count > 0 and path.read_bytes() == written
    with pytest.raises(RuntimeError):  # a row that is not held, as FAISS says it
        mapped.reconstruct(np.array([next(r for r in range(900) if r not in held)]))
    mapped.save(path, fingerprint=FINGERPRINT)
    for again in (True, False):
        reread = VectorIndex.load(path, fingerprint=FINGERPRINT, dimension=DIM, mapped=again)
        assert (reread.delta_count, reread.ivf_codes) == (0, codes)
        assert_same(answers(reread, queries, allowed), answers(memory, queries, allowed))


@pytest.mark.parametrize("codes", ["float32", "float16"])
@pytest.mark.parametrize("mapped", [False, True])
def test_ivf_adding_a_row_it_holds_replaces_it(
    tmp_path: Path, mapped: bool, codes: IvfCodes
) -> None:
    vectors = unit_vectors(300, seed=60)
    index = build("ivf", vectors, codes=codes)
    if mapped:
        path = tmp_path / "catalog.index"
        index.save(path, fingerprint=FINGERPRINT)
        index = VectorIndex.load(path, fingerprint=FINGERPRINT, dimension=DIM, mapped=True)
    index.add(np.array([5, 7], dtype=np.int64), vectors[[5, 7]])
    assert index.ntotal == 300
    _, rows = index.search(vectors[5:6], 300, nprobe=16)
    assert sorted(rows[0].tolist()) == list(range(300))  # each row once


def test_an_index_file_of_the_earlier_layout_is_still_read(tmp_path: Path) -> None:
    """Header first, FAISS after (before the layout that lets FAISS map the file)."""
    index = build("ivf", unit_vectors(300, seed=50))
    index.seq = 7
    path = tmp_path / "catalog.index"
    assert VectorIndex.saved_seq(path, fingerprint=FINGERPRINT) is None  # no file
    index.save(path, fingerprint=FINGERPRINT)
    assert VectorIndex.saved_seq(path, fingerprint=FINGERPRINT) == 7  # the header alone
    assert VectorIndex.saved_seq(path, fingerprint="another model") is None
    header = {
        "kind": "ivf",
        "dimension": DIM,
        "seq": 7,
        "dead": [],
        "fingerprint": FINGERPRINT,
        "ef_search": 96,
        "nprobe": 4,
        "trained_on": 300,
    }
    raw = json.dumps(header).encode()
    body = faiss.serialize_index(index._ivf.merged() if index._ivf else None).tobytes()
    path.write_bytes(vector_index_module._MAGIC + struct.pack("<I", len(raw)) + raw + body)
    assert VectorIndex.saved_seq(path, fingerprint=FINGERPRINT) is None  # old layout
    for mapped in (False, True):  # mapping needs the new layout: read into memory
        old = VectorIndex.load(path, fingerprint=FINGERPRINT, dimension=DIM, mapped=mapped)
        assert (old.seq, old.ntotal, old.mapped) == (7, 300, False)
        np.testing.assert_array_equal(old.labels(), index.labels())


@pytest.mark.parametrize("module", ["ownrank.storage.ivf_index", "ownrank.engine.index_sizing"])
def test_docstring_examples(module: str) -> None:
    """The examples of the IVF index and of the index sizing rules run as written."""
    import doctest
    import importlib

    failed, attempted = doctest.testmod(importlib.import_module(module))
    assert attempted >= 3 and failed == 0
