"""The frozen base model run by ONNX Runtime: same weights, same vectors, less time.

Why a second backend: on a small CPU the torch path spends its time in fp32
matmuls and framework overhead. ONNX Runtime runs the same graph with fused
kernels, and int8 matmuls where a variant asks for them.

The graph is exported (``onnx_export.py``) from the bundled weights (``torch.onnx.export`` of
the transformer with mean pooling and L2 normalization inside the graph), and
never downloaded. Exports are cached per base-model fingerprint and written
atomically (temporary file, then rename), so concurrent processes at worst
export twice and never read half a file. The encoder's fingerprint covers the
base fingerprint, the variant, the tokenizer length and the ``.onnx`` bytes:
a store built with one graph refuses another.

Variants:

``fp32``
    The exported graph as is; agrees with torch to about 1e-6.
``int8``
    ``onnxruntime.quantization.quantize_dynamic``: per-channel int8 weights and
    uint8 activations with one scale per *tensor*, i.e. per batch. The [CLS]
    rows carry activations 3-7 times larger than other tokens, so that shared
    scale costs short texts most of their resolution, and a text's vector
    depends on the other texts in its batch.
``int8-rowwise``
    Int8 weights too, but every token row is quantized with its own scale and
    zero point, after SmoothQuant-style smoothing (a few channels carry most of
    the range; per-channel factors move it into the weights, calibrated on
    random words of the model's own vocabulary). Standard ops plus ONNX
    Runtime's ``MatMulIntegerToFloat``: about 10% slower than ``int8``, batch
    independent, and several times closer to fp32.

:func:`agreement` measures a candidate backend against a reference one; the
acceptance rule for changing the default is :data:`ACCEPT_COSINE` on every
text and :data:`ACCEPT_OVERLAP` mean top-10 neighbour overlap.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError
from .encoder import Vectors, _read_dimension, bundled_model_dir, model_fingerprint
from .onnx_agreement import ACCEPT_COSINE, ACCEPT_OVERLAP, Agreement, agreement, vector_agreement
from .onnx_common import (
    INPUT_NAMES,
    OUTPUT_NAME,
    VARIANTS,
    Variant,
    default_cache_dir,
    onnx_file,
    onnxruntime_module,
    pad,
    read_max_length,
    tokenizer_for,
)
from .onnx_export import calibration_texts, export_onnx, rowwise_quantize

__all__ = [
    "ACCEPT_COSINE",
    "ACCEPT_OVERLAP",
    "VARIANTS",
    "Agreement",
    "OnnxEncoder",
    "Variant",
    "agreement",
    "calibration_texts",
    "export_onnx",
    "onnx_file",
    "onnx_fingerprint",
    "rowwise_quantize",
    "vector_agreement",
]


@lru_cache(maxsize=16)
def _file_sha256(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stat_key(path: Path) -> tuple[Path, int, int]:
    st = path.stat()
    return path.resolve(), st.st_size, st.st_mtime_ns


def onnx_fingerprint(base_fingerprint: str, variant: str, max_length: int, path: Path) -> str:
    """sha256 over the base model fingerprint, the variant, the token limit and the graph."""
    digest = hashlib.sha256()
    digest.update(f"ownrank-onnx\0{base_fingerprint}\0{variant}\0{max_length}\0".encode())
    digest.update(_file_sha256(*_stat_key(path)).encode())
    return "sha256:" + digest.hexdigest()


class OnnxEncoder:
    """The frozen base model through ONNX Runtime; an :class:`Encoder` like ``BaseEncoder``.

    Loading is lazy: the dimension comes from files; the export (if not cached),
    the fingerprint and the session when first needed. Texts are tokenized by
    the model directory's own ``tokenizer.json`` with the sentence-transformers
    limit and truncation, sorted by length and padded per batch.
    """

    def __init__(
        self,
        model_dir: Path | str | None = None,
        *,
        variant: Variant = "fp32",
        cache_dir: Path | str | None = None,
        threads: int = 1,
        batch_size: int = 32,
        max_length: int | None = None,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown ONNX variant {variant!r}; expected one of {VARIANTS}")
        if threads < 1 or batch_size < 1:
            raise ValueError("threads and batch_size must be at least 1")
        self.model_dir = Path(model_dir).resolve() if model_dir else bundled_model_dir()
        self.variant: Variant = variant
        self.threads = threads
        self.batch_size = batch_size
        self.base_fingerprint = model_fingerprint(self.model_dir)
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir(self.base_fingerprint)
        self.max_length = max_length or read_max_length(self.model_dir)
        self._dimension = _read_dimension(self.model_dir)
        self._fingerprint: str | None = None
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    @property
    def onnx_path(self) -> Path:
        """The graph this encoder runs (exported into the cache on first use)."""
        return export_onnx(self.model_dir, self.variant, self.cache_dir)

    @property
    def fingerprint(self) -> str:
        with self._lock:
            if self._fingerprint is None:
                self._fingerprint = self._graph_fingerprint()
            return self._fingerprint

    def _graph_fingerprint(self) -> str:
        return onnx_fingerprint(
            self.base_fingerprint, self.variant, self.max_length, self.onnx_path
        )

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            session, _ = self._loaded()
            self._dimension = int(session.get_outputs()[0].shape[-1])
        return self._dimension

    @property
    def is_loaded(self) -> bool:
        return self._session is not None

    def _loaded(self) -> tuple[Any, Any]:
        with self._lock:
            if self._session is None:
                self._tokenizer = self._load_tokenizer()
                self._session = self._load_session()
            return self._session, self._tokenizer

    def _load_tokenizer(self) -> Any:
        return tokenizer_for(self.model_dir, self.max_length)

    def _load_session(self) -> Any:
        ort = onnxruntime_module()

        path = self.onnx_path
        fingerprint = self._graph_fingerprint()
        if self._fingerprint is not None and fingerprint != self._fingerprint:
            raise ModelLoadError(f"{path} changed on disk since its fingerprint was taken")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ModelLoadError(f"cannot load {path} into ONNX Runtime: {exc}") from exc
        if self._graph_fingerprint() != fingerprint:
            raise ModelLoadError(f"{path} changed on disk while it was loaded")
        self._fingerprint = fingerprint
        return session

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        session, tokenizer = self._loaded()
        encodings = tokenizer.encode_batch(list(texts))
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(texts))
        order = np.argsort(-lengths, kind="stable")  # similar lengths share a batch
        out: Vectors | None = None
        for start in range(0, len(texts), self.batch_size):
            rows = order[start : start + self.batch_size]
            ids, mask = pad([encodings[i].ids for i in rows], int(lengths[rows].max()))
            vectors = session.run([OUTPUT_NAME], {INPUT_NAMES[0]: ids, INPUT_NAMES[1]: mask})[0]
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[rows] = vectors
        assert out is not None
        if self._dimension is None:
            self._dimension = int(out.shape[1])
        return out
