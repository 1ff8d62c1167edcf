"""ONNX Runtime backend: agrees with torch, fingerprints its graph, reuses its exports."""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from ownrank import BaseEncoder, ModelLoadError
from ownrank.engine import onnx_export
from ownrank.engine.encoder import load_encoder
from ownrank.engine.onnx_encoder import (
    VARIANTS,
    OnnxEncoder,
    agreement,
    calibration_texts,
    export_onnx,
    onnx_file,
    rowwise_quantize,
    vector_agreement,
)

from conftest import WordHashEncoder

TEXTS = [
    "A cat sleeps on the mat.",
    "Stock markets fell sharply after the central bank raised interest rates.",
    "Tomato blight: early signs on the lower leaves, and what to do about them",
    "Crème brûlée, naïve café owners and a 北京 day trip",
    "",
    # Longer than the 256-token limit: both backends must truncate the same way.
    " ".join(["the orchestra tuned its instruments before the long symphony"] * 40),
]


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="session")
def onnx_encoders(onnx_cache: Path) -> dict[str, OnnxEncoder]:
    """One encoder per variant, all exported once into the session's cache."""
    encoders = {v: OnnxEncoder(variant=v, cache_dir=onnx_cache) for v in VARIANTS}
    for encoder in encoders.values():
        assert encoder.onnx_path.is_file()
    return encoders


@pytest.fixture(scope="session")
def torch_vectors(real_encoder: BaseEncoder) -> np.ndarray:
    return real_encoder.encode(TEXTS)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b)


@pytest.mark.slow
def test_fp32_agrees_with_torch(
    onnx_encoders: dict[str, OnnxEncoder], torch_vectors: np.ndarray
) -> None:
    vectors = onnx_encoders["fp32"].encode(TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert cosines(vectors, torch_vectors).min() >= 0.999


@pytest.mark.slow
def test_int8_agrees_with_torch_on_ordinary_texts(
    onnx_encoders: dict[str, OnnxEncoder], torch_vectors: np.ndarray
) -> None:
    # Not on all of TEXTS: its one activation scale per batch is set by the 256-token
    # text, and the empty text batched with it drops to ~0.979 (why int8-rowwise exists).
    vectors = onnx_encoders["int8"].encode(TEXTS[:4])
    assert vectors.dtype == np.float32 and vectors.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert cosines(vectors, torch_vectors[:4]).min() >= 0.98


@pytest.mark.slow
def test_int8_rowwise_agrees_with_torch_on_every_text(
    onnx_encoders: dict[str, OnnxEncoder], torch_vectors: np.ndarray
) -> None:
    vectors = onnx_encoders["int8-rowwise"].encode(TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert cosines(vectors, torch_vectors).min() >= 0.99


@pytest.mark.slow
def test_rowwise_vectors_do_not_depend_on_batch_mates(
    onnx_encoders: dict[str, OnnxEncoder],
) -> None:
    encoder = onnx_encoders["int8-rowwise"]
    together = encoder.encode(TEXTS)
    alone = np.vstack([encoder.encode([text]) for text in TEXTS])
    assert cosines(together, alone).min() >= 0.9999


def test_tokenizes_like_sentence_transformers() -> None:
    from transformers import AutoTokenizer

    encoder = OnnxEncoder(variant="fp32")
    reference = AutoTokenizer.from_pretrained(str(encoder.model_dir), local_files_only=True)
    expected = reference(TEXTS, truncation="longest_first", max_length=256)["input_ids"]
    ours = [e.ids for e in encoder._load_tokenizer().encode_batch(TEXTS)]
    assert ours == expected
    assert max(len(ids) for ids in ours) == 256


@pytest.mark.slow
def test_fingerprints_differ_between_variants_and_from_torch(
    onnx_encoders: dict[str, OnnxEncoder], real_encoder: BaseEncoder
) -> None:
    prints = {v: e.fingerprint for v, e in onnx_encoders.items()}
    assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", p) for p in prints.values())
    assert len({*prints.values(), real_encoder.fingerprint}) == len(VARIANTS) + 1


@pytest.mark.slow
def test_fingerprint_covers_the_graph_bytes(
    onnx_encoders: dict[str, OnnxEncoder], tmp_path: Path
) -> None:
    original = onnx_encoders["fp32"]
    copy = onnx_file(tmp_path, "fp32")
    shutil.copyfile(original.onnx_path, copy)
    # Same bytes elsewhere: same fingerprint, and the copy is used, not re-exported.
    assert OnnxEncoder(variant="fp32", cache_dir=tmp_path).fingerprint == original.fingerprint
    with open(copy, "r+b") as fh:  # one byte of the graph changes
        fh.seek(-1, 2)
        last = fh.read(1)
        fh.seek(-1, 2)
        fh.write(bytes([last[0] ^ 1]))
    assert OnnxEncoder(variant="fp32", cache_dir=tmp_path).fingerprint != original.fingerprint


@pytest.mark.slow
def test_cached_export_is_reused(
    onnx_encoders: dict[str, OnnxEncoder], onnx_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_export(*args: object) -> None:
        raise AssertionError("exported again")

    for name in ("_export_fp32", "_quantize_dynamic", "_quantize_rowwise"):
        monkeypatch.setattr(onnx_export, name, no_export)
    for variant, encoder in onnx_encoders.items():
        path = onnx_file(onnx_cache, variant)
        stamp = path.stat().st_mtime_ns
        assert export_onnx(encoder.model_dir, variant, onnx_cache) == path
        fresh = OnnxEncoder(variant=variant, cache_dir=onnx_cache)
        assert fresh.encode(["reused"]).shape == (1, 384)
        assert fresh.fingerprint == encoder.fingerprint
        assert path.stat().st_mtime_ns == stamp


def test_a_failed_export_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def half_export(model_dir: Path, out: Path) -> None:
        out.write_bytes(b"half a graph")
        raise RuntimeError("interrupted")

    monkeypatch.setattr(onnx_export, "_export_fp32", half_export)
    encoder = OnnxEncoder(variant="fp32", cache_dir=tmp_path)
    with pytest.raises(ModelLoadError, match="interrupted"):
        encoder.encode(["anything"])
    assert list(tmp_path.iterdir()) == []


def test_empty_input_needs_no_model(tmp_path: Path) -> None:
    encoder = OnnxEncoder(variant="int8", cache_dir=tmp_path)
    vectors = encoder.encode([])
    assert vectors.shape == (0, 384) and vectors.dtype == np.float32
    assert not encoder.is_loaded and list(tmp_path.iterdir()) == []


def test_unknown_variant_is_refused() -> None:
    with pytest.raises(ValueError, match="variant"):
        OnnxEncoder(variant="fp16")  # type: ignore[arg-type]


def test_load_encoder_names_every_backend(tmp_path: Path) -> None:
    assert isinstance(load_encoder(), BaseEncoder)
    for variant in VARIANTS:
        encoder = load_encoder(f"onnx-{variant}", cache_dir=tmp_path, threads=2)
        assert isinstance(encoder, OnnxEncoder)
        assert (encoder.variant, encoder.threads) == (variant, 2)
    with pytest.raises(ValueError, match="onnx-int8-rowwise"):
        load_encoder("onnx-int4")


class Perturbed:
    """Another encoder's vectors plus fixed noise: a stand-in for a lossy backend."""

    def __init__(self, inner: WordHashEncoder, scale: float) -> None:
        self.inner = inner
        self.scale = scale

    @property
    def fingerprint(self) -> str:
        return f"{self.inner.fingerprint}+noise{self.scale}"

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.inner.encode(texts)
        noise = np.random.default_rng(0).standard_normal(vectors.shape).astype(np.float32)
        vectors = vectors + self.scale * noise
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_agreement_of_identical_encoders_is_perfect() -> None:
    texts = [f"topic {i % 7} item {i} words {i * 3}" for i in range(60)]
    result = agreement(WordHashEncoder(), WordHashEncoder(), [*texts, texts[0]])
    assert result.texts == 60  # the duplicate is dropped
    assert result.cosine_min == pytest.approx(1.0, abs=1e-6)
    assert result.neighbour_overlap == 1.0 and result.k == 10 and result.passes
    assert result.as_dict()["passes"] is True


def test_agreement_detects_a_lossy_encoder() -> None:
    texts = [f"topic {i % 7} item {i} words {i * 3}" for i in range(60)]
    result = agreement(WordHashEncoder(), Perturbed(WordHashEncoder(), 0.05), texts)
    assert 0.5 < result.cosine_min < result.cosine_mean < 0.99
    assert result.neighbour_overlap < 0.95 and not result.passes


def test_vector_agreement_edge_cases() -> None:
    one = np.ones((1, 4), dtype=np.float32) / 2
    single = vector_agreement(one, one)
    assert single.texts == 1 and single.k == 0 and single.neighbour_overlap == 1.0
    assert vector_agreement(np.zeros((0, 4), np.float32), np.zeros((0, 4), np.float32)).texts == 0
    with pytest.raises(ValueError, match="shapes"):
        vector_agreement(one, np.ones((2, 4), dtype=np.float32))


@pytest.mark.slow
def test_rowwise_rewrite_counts_and_keeps_named_matmuls(
    onnx_encoders: dict[str, OnnxEncoder],
) -> None:
    import onnx

    fp32 = onnx.load(str(onnx_encoders["fp32"].onnx_path))
    matmuls = sum(1 for n in fp32.graph.node if n.op_type == "MatMul")
    assert rowwise_quantize(fp32, keep_fp32=["layer.0/"]) == 30  # 6 linear layers x 5 blocks
    ops = [n.op_type for n in fp32.graph.node]
    assert ops.count("MatMulIntegerToFloat") == 30
    assert ops.count("MatMul") == matmuls - 30  # layer 0's six and the attention products


def test_calibration_texts_are_deterministic_vocabulary_words() -> None:
    model_dir = OnnxEncoder().model_dir
    first = calibration_texts(model_dir, count=20)
    assert first == calibration_texts(model_dir, count=20)
    assert all(3 <= len(t.split()) <= 60 and t.replace(" ", "").isalpha() for t in first)


@pytest.mark.slow
def test_an_engine_runs_on_the_onnx_backend_and_keeps_it(tmp_path: Path) -> None:
    from ownrank import Engine, EngineConfig, ModelMismatchError

    config = EngineConfig(encoder_backend="onnx-int8-rowwise")
    with Engine(tmp_path / "s", config) as engine:
        engine.catalog.upsert(
            [
                {"id": "g", "title": "Pruning roses in late winter"},
                {"id": "c", "title": "The Najdorf Sicilian explained"},
            ]
        )
        assert engine.search("gardening flowers", 2)[0].item_id == "g"
    with pytest.raises(ModelMismatchError):  # vectors of two backends never mix
        Engine(tmp_path / "s", EngineConfig())
