"""How closely one encoder's vectors agree with another's: the acceptance rule for
changing the default backend (cosine on every text, top-10 neighbour overlap)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from .encoder import Encoder, Vectors
from .onnx_common import IntMatrix

# The acceptance rule of issue 5 for making a backend the default.
ACCEPT_COSINE: Final = 0.99
ACCEPT_OVERLAP: Final = 0.95


@dataclass(frozen=True)
class Agreement:
    """How closely a candidate backend reproduces a reference one on a set of texts."""

    texts: int
    cosine_min: float
    cosine_mean: float
    neighbour_overlap: float
    k: int

    @property
    def passes(self) -> bool:
        """The issue-5 rule: cosine >= 0.99 on every text and top-10 overlap >= 0.95."""
        return self.cosine_min >= ACCEPT_COSINE and self.neighbour_overlap >= ACCEPT_OVERLAP

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passes": self.passes}


def agreement(
    reference: Encoder, candidate: Encoder, texts: Sequence[str], *, k: int = 10
) -> Agreement:
    """Per-text cosine (min, mean) and mean top-``k`` neighbour overlap of two encoders.

    Duplicate texts are dropped first: identical vectors would make a text's
    neighbours ambiguous. Neighbours are found among the texts' own vectors,
    excluding the text itself.
    """
    unique = list(dict.fromkeys(texts))
    return vector_agreement(reference.encode(unique), candidate.encode(unique), k=k)


def vector_agreement(reference: Vectors, candidate: Vectors, *, k: int = 10) -> Agreement:
    """:func:`agreement` on vectors already computed (row i of both is the same text)."""
    if reference.shape != candidate.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {candidate.shape}")
    n = reference.shape[0]
    if n == 0:
        return Agreement(0, float("nan"), float("nan"), float("nan"), k)
    ref = _unit(reference)
    cand = _unit(candidate)
    cosines = np.einsum("ij,ij->i", ref, cand)
    k_eff = min(k, n - 1)
    if k_eff == 0:
        overlap = 1.0
    else:
        ref_nn = _neighbours(ref, k_eff)
        cand_nn = _neighbours(cand, k_eff)
        shared = sum(
            len(set(a.tolist()) & set(b.tolist())) for a, b in zip(ref_nn, cand_nn, strict=True)
        )
        overlap = shared / (n * k_eff)
    return Agreement(
        texts=n,
        cosine_min=float(cosines.min()),
        cosine_mean=float(cosines.mean()),
        neighbour_overlap=float(overlap),
        k=k_eff,
    )


def _unit(vectors: Vectors) -> npt.NDArray[np.float64]:
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norms > 0, norms, 1.0)


def _neighbours(vectors: npt.NDArray[np.float64], k: int, chunk: int = 1024) -> IntMatrix:
    """Indices of each row's ``k`` most similar other rows (order within the k unspecified)."""
    n = vectors.shape[0]
    out = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        sims = vectors[start:stop] @ vectors.T
        sims[np.arange(stop - start), np.arange(start, stop)] = -np.inf
        out[start:stop] = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return out
