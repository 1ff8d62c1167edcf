"""An LRU cache of single-text embeddings in front of the encoder, and one model at a time.

Search queries repeat (popular queries, pagination, retries), and the SDK
embeds each query as a one-text batch, so caching one-text calls by their
exact text saves the model run; batches (catalog ingestion) pass through
uncached. Calls into the model are serialized by a lock: the tokenizer is not
safe to share between threads, and on a small machine one inference at a time
per worker is also the fastest.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from ..engine.encoder import Encoder, Vectors


class CachingEncoder:
    """Wraps an ``Encoder``; same fingerprint and dimension, so stores accept it."""

    def __init__(
        self,
        inner: Encoder,
        maxsize: int = 4_096,
        on_lookup: Callable[[bool], None] | None = None,
    ) -> None:
        self.inner = inner
        self.maxsize = maxsize
        self.on_lookup = on_lookup
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._model_lock = threading.Lock()

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def _lookup(self, text: str) -> np.ndarray | None:
        with self._cache_lock:
            found = self._cache.get(text)
            if found is not None:
                self._cache.move_to_end(text)
        if self.on_lookup is not None:
            self.on_lookup(found is not None)
        return found

    def _store(self, text: str, vector: np.ndarray) -> None:
        frozen = np.array(vector, dtype=np.float32, copy=True)
        frozen.setflags(write=False)
        with self._cache_lock:
            self._cache[text] = frozen
            self._cache.move_to_end(text)
            while len(self._cache) > self.maxsize:
                self._cache.popitem(last=False)

    def encode(self, texts: Sequence[str]) -> Vectors:
        if len(texts) == 1 and self.maxsize > 0:
            text = texts[0]
            found = self._lookup(text)
            if found is not None:
                return found[None, :].copy()
            vectors = self._run(texts)
            self._store(text, vectors[0])
            return vectors
        return self._run(texts)

    def _run(self, texts: Sequence[str]) -> Vectors:
        with self._model_lock:
            return self.inner.encode(texts)

    @property
    def cached(self) -> int:
        """Number of cached embeddings. (Not ``__len__``: an empty cache must stay truthy,
        ``Engine`` treats a falsy encoder as none given.)"""
        return len(self._cache)
