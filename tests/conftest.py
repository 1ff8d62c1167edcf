"""Shared fixtures: a fast deterministic encoder, the real frozen encoder, engines."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from ownrank import BaseEncoder, Engine, EngineConfig

# the bench/ scripts import one another by bare name (as ``python bench/x.py`` runs
# them), and the tests of those scripts import them the same way; appended, so a
# bench/ module name never shadows another module
BENCH = Path(__file__).resolve().parents[1] / "bench"
if str(BENCH) not in sys.path:
    sys.path.append(str(BENCH))

# tests that export a git revision of the package (bench/recommend_ab.py's way)
needs_git_checkout = pytest.mark.skipif(
    subprocess.run(["git", "-C", str(BENCH), "rev-parse", "HEAD"], capture_output=True).returncode
    != 0,
    reason="not a git checkout",
)


class WordHashEncoder:
    """Deterministic stand-in for the base model: a sum of per-word random vectors.

    Texts sharing words get similar vectors, so tests of catalog and ranking logic
    run in milliseconds; tests of the real model use ``real_encoder``.
    """

    def __init__(self, dimension: int = 64, name: str = "word-hash") -> None:
        self._dimension = dimension
        self._fingerprint = f"test:{name}:{dimension}"
        self.calls = 0
        self.texts_encoded = 0

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def dimension(self) -> int:
        return self._dimension

    def word_vector(self, word: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
        return np.random.default_rng(seed).standard_normal(self._dimension).astype(np.float32)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.texts_encoded += len(texts)
        out = np.zeros((len(texts), self._dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            words = re.findall(r"[a-z0-9]+", text.lower()) or ["<empty>"]
            for word in words:
                out[i] += self.word_vector(word)
            out[i] /= np.linalg.norm(out[i])
        return out


@pytest.fixture
def encoder() -> WordHashEncoder:
    return WordHashEncoder()


@pytest.fixture(scope="session")
def real_encoder() -> BaseEncoder:
    """The bundled all-MiniLM-L6-v2, loaded once per test session."""
    return BaseEncoder()


@pytest.fixture
def engine(tmp_path: Path, encoder: WordHashEncoder) -> Iterator[Engine]:
    eng = Engine(tmp_path / "store", encoder=encoder)
    yield eng
    eng.close()


def make_engine(path: Path, encoder: object, **config: object) -> Engine:
    return Engine(path, EngineConfig(**config), encoder=encoder)  # type: ignore[arg-type]
