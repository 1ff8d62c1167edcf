"""What exporting and running the ONNX base model share: variants, cached file names,
the tokenizer (truncating like sentence-transformers) and batch padding."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Literal, get_args

import numpy as np
import numpy.typing as npt

from ..errors import ModelLoadError

Variant = Literal["fp32", "int8", "int8-rowwise"]
VARIANTS: Final[tuple[Variant, ...]] = get_args(Variant)

# Bump when the export recipe changes: cached files of an older recipe are then ignored.
EXPORT_REVISION: Final = 2
OPSET: Final = 17
INPUT_NAMES: Final = ("input_ids", "attention_mask")
OUTPUT_NAME: Final = "embedding"
DEFAULT_MAX_LENGTH: Final = 256

IntMatrix = npt.NDArray[np.int64]


def default_cache_dir(base_fingerprint: str) -> Path:
    """``$XDG_CACHE_HOME/ownrank/onnx/<fingerprint prefix>`` (``~/.cache`` by default)."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "ownrank" / "onnx" / base_fingerprint.removeprefix("sha256:")[:16]


def onnx_file(cache_dir: Path, variant: Variant) -> Path:
    """Where the export of ``variant`` lives in ``cache_dir``."""
    return Path(cache_dir) / f"all-minilm-l6-v2.{variant}.r{EXPORT_REVISION}.onnx"


def onnxruntime_module() -> Any:
    """ONNX Runtime, imported when first needed (it ships no type information)."""
    import onnxruntime  # type: ignore[import-untyped]

    return onnxruntime


def read_max_length(model_dir: Path) -> int:
    """The token limit sentence-transformers applies (``sentence_bert_config.json``)."""
    try:
        conf = json.loads((model_dir / "sentence_bert_config.json").read_text())
        return int(conf.get("max_seq_length", DEFAULT_MAX_LENGTH))
    except (OSError, ValueError):
        return DEFAULT_MAX_LENGTH


def tokenizer_for(model_dir: Path, max_length: int) -> Any:
    """The model's ``tokenizer.json``, truncating like sentence-transformers, not padding.

    tokenizer.json ships fixed padding to 128; sentence-transformers truncates at
    max_seq_length (longest_first) and pads per batch, as :func:`pad` does.
    """
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    except Exception as exc:
        raise ModelLoadError(f"cannot load the tokenizer of {model_dir}: {exc}") from exc
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length, strategy="longest_first")
    return tokenizer


def pad(rows: Sequence[Sequence[int]], width: int) -> tuple[IntMatrix, IntMatrix]:
    """Token ids and attention mask, right-padded with id 0 to ``width``."""
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for r, row in enumerate(rows):
        ids[r, : len(row)] = row
        mask[r, : len(row)] = 1
    return ids, mask
