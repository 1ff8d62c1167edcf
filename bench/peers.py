"""Peer recommenders from public libraries: ``implicit`` ALS and BPR (the README's
peer table quotes them) and a LightFM hybrid that scores cold20's new items from
their metadata, behind :class:`baselines.Recommender`, so ownrank is compared with
what a team would deploy. ``update_user`` is what the model would do online (ALS: one
least-squares solve; LightFM: ``fit_partial`` on the user's rows; BPR: a refit);
:func:`measure_update` times it.

Both libraries are optional: this module still imports without them, and
:func:`unavailable_reason` says why a peer is missing. Hyperparameters are tuned on
:func:`protocols.inner_validation` only, never on test.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Self

import numpy as np
import scipy.sparse as sp  # type: ignore[import-untyped]
from baselines import (
    EASE_GRID,
    ITEMKNN_GRID,
    Centroid,
    Recommender,
    TuneResult,
    row_matrix,
    tune,
    tune_fitted,
)
from eval_data import MAX_ACTORS, IntArray, ItemInfo
from protocols import FloatArray, Split
from threadpoolctl import threadpool_limits

_IMPORT_ERRORS: dict[str, str] = {}
try:
    from implicit.cpu.als import AlternatingLeastSquares  # type: ignore[import-untyped]
    from implicit.cpu.bpr import BayesianPersonalizedRanking  # type: ignore[import-untyped]
except Exception as exc:  # ImportError, or a broken compiled extension
    _IMPORT_ERRORS["implicit"] = f"{type(exc).__name__}: {exc}"
try:
    from lightfm import LightFM  # type: ignore[import-untyped]
except Exception as exc:
    _IMPORT_ERRORS["lightfm"] = f"{type(exc).__name__}: {exc}"

Library = Literal["implicit", "lightfm"]
Confidence = Literal["hu", "scaled"]
SEED = 0


class PeerUnavailable(RuntimeError):
    """The library behind a peer cannot be imported here."""


def unavailable_reason(library: Library) -> str | None:
    """Why ``library`` cannot be used (None if it imported fine)."""
    return _IMPORT_ERRORS.get(library)


def _require(library: Library) -> None:
    reason = unavailable_reason(library)
    if reason is not None:
        raise PeerUnavailable(f"{library} is not importable: {reason}")


def blas_single_thread() -> Any:
    """implicit parallelizes itself and warns (and slows down) if BLAS does too."""
    return threadpool_limits(limits=1, user_api="blas")


# --- implicit: ALS and BPR -------------------------------------------------------------


@dataclass(frozen=True)
class ALSParams:
    """ALS hyperparameters. ``confidence="hu"``: a positive has confidence ``1 + alpha``
    (Hu et al.'s ``1 + alpha * r``, binary r); ``"scaled"``: ``alpha`` (implicit's own
    ``alpha * r``; the README's peer row, alpha=0.5 and reg=10, is this one)."""

    factors: int = 128
    regularization: float = 10.0
    alpha: float = 0.5
    confidence: Confidence = "hu"
    iterations: int = 15

    @property
    def positive_confidence(self) -> float:
        return 1.0 + self.alpha if self.confidence == "hu" else self.alpha

    def __str__(self) -> str:
        c = f"1+{self.alpha:g}" if self.confidence == "hu" else f"{self.alpha:g}"
        return f"f={self.factors} reg={self.regularization:g} c={c}"


class ALS(Recommender):
    """implicit's CPU ALS (conjugate gradient fit), deterministic seed; ``item_factors``
    has one row per ``items`` entry."""

    name = "ALS"
    update_method = "recalculate_user: one exact least-squares solve, item factors fixed"

    def __init__(self, params: ALSParams | None = None, num_threads: int = 2) -> None:
        _require("implicit")
        super().__init__()
        self.params = params or ALSParams()
        self.num_threads = num_threads

    def _confidence(self, x: sp.csr_matrix) -> sp.csr_matrix:
        c = x.astype(np.float32)
        c.data[:] = self.params.positive_confidence
        return c

    def train(self) -> None:
        p = self.params
        c = self._confidence(self.x)
        with blas_single_thread():
            # implicit's alpha stays 1: the confidence is already in the matrix.
            self.model = AlternatingLeastSquares(
                factors=p.factors,
                regularization=p.regularization,
                alpha=1.0,
                iterations=p.iterations,
                num_threads=self.num_threads,
                random_state=SEED,
            )
            self.model.fit(c, show_progress=False)
        # A one-user solve gains nothing from an OpenMP team, and waking one costs a tick.
        self.model.num_threads = 1
        self.item_factors = np.asarray(self.model.item_factors)

    def item_scores(self, rows: IntArray) -> FloatArray:
        return np.asarray(self.model.user_factors[rows] @ self.item_factors.T)

    def history_scores(self, x: sp.csr_matrix) -> FloatArray:
        factors = self.model.recalculate_user(0, self._confidence(x))
        return np.asarray(factors @ self.item_factors.T)[None, :]


@dataclass(frozen=True)
class BPRParams:
    """BPR hyperparameters (``iterations`` a multiple of :data:`BPR_CHUNK` so a fit
    equals an earlier fit continued, which makes iteration tuning one run)."""

    factors: int = 64
    learning_rate: float = 0.01
    regularization: float = 0.01
    iterations: int = 100

    def __str__(self) -> str:
        p = f"f={self.factors} lr={self.learning_rate:g} reg={self.regularization:g}"
        return f"{p} it={self.iterations}"


BPR_CHUNK = 50


class BPR(Recommender):
    """implicit's CPU BPR, one thread (its lock-free SGD would depend on scheduling)."""

    name = "BPR"
    update_method = "refit: implicit's BPR has no per-user update (no recalculate_user)"
    update_is_refit = True

    def __init__(self, params: BPRParams | None = None) -> None:
        _require("implicit")
        super().__init__()
        self.params = params or BPRParams()
        self.iterations_done = 0

    def train(self) -> None:
        p = self.params
        with blas_single_thread():
            self.model = BayesianPersonalizedRanking(
                factors=p.factors,
                learning_rate=p.learning_rate,
                regularization=p.regularization,
                iterations=BPR_CHUNK,
                num_threads=1,
                random_state=SEED,
            )
        self.iterations_done = 0
        self._train(p.iterations)

    def _train(self, iterations: int) -> None:
        """Continue training in chunks (implicit's fit resumes from current factors)."""
        x = self.x.astype(np.float32)
        for done in range(0, iterations, BPR_CHUNK):
            self.model.iterations = min(BPR_CHUNK, iterations - done)
            with blas_single_thread():
                self.model.fit(x, show_progress=False)
        self.iterations_done += iterations

    def train_more(self, iterations: int) -> Self:
        """More iterations on the same data (cheap tuning of ``iterations``)."""
        self._train(iterations)
        self.params = replace(self.params, iterations=self.iterations_done)
        return self

    def item_scores(self, rows: IntArray) -> FloatArray:
        return np.asarray(self.model.user_factors[rows] @ self.model.item_factors.T)

    def update_user(self, user: int, items: IntArray) -> FloatArray:
        """Refit with ``user``'s row replaced (a fold-in with frozen item factors would
        be cheaper, but it is not what the library offers)."""
        x = self.x.tolil()
        row = int(self.split.user_rows(np.array([user], dtype=np.int64))[0])
        x[row] = row_matrix(items, self.items)
        refit = BPR(self.params)
        refit.use_matrix(self.split, x.tocsr())
        refit.train()
        scores = refit.item_scores(np.array([row], dtype=np.int64))
        out: FloatArray = self.split.to_candidates(scores, self.items)[0]
        return out


# --- LightFM hybrid --------------------------------------------------------------------


def item_tokens(info: ItemInfo) -> list[str]:
    """Metadata tokens of one movie: genres, decade and 5-year bucket, MPAA rating,
    directors and the first actors (ml-100k only has genres and year)."""
    tokens = [f"genre:{g}" for g in info.genres]
    if info.year is not None:
        tokens += [f"decade:{info.year // 10 * 10}", f"year5:{info.year // 5 * 5}"]
    if info.rated:
        tokens.append(f"rated:{info.rated}")
    if info.director:
        tokens += [f"director:{d.strip()}" for d in info.director.split(",") if d.strip()]
    tokens += [f"actor:{a}" for a in info.actors[:MAX_ACTORS]]
    return tokens


class ItemFeatures:
    """Item x feature matrices over one identity feature per training item and every
    metadata token on a training item (a feature no training item carries would keep
    its random initial embedding: noise). A new item (cold20) is its known tokens
    alone. Rows sum to 1, as LightFM's own ``Dataset`` normalizes them."""

    def __init__(self, tokens: Mapping[int, Sequence[str]], train_items: IntArray) -> None:
        self.tokens = tokens
        self.vocab = {f"id:{int(i)}": n for n, i in enumerate(train_items)}
        for item in train_items:
            for token in tokens.get(int(item), ()):
                self.vocab.setdefault(token, len(self.vocab))

    def matrix(self, items: IntArray) -> sp.csr_matrix:
        """float32 CSR, one row per ``items`` entry (in order)."""
        rows: list[int] = []
        cols: list[int] = []
        for r, item in enumerate(items.tolist()):
            names = [f"id:{item}", *self.tokens.get(item, ())]
            found = {self.vocab[n] for n in names if n in self.vocab}
            rows += [r] * len(found)
            cols += sorted(found)
        data = np.ones(len(rows), dtype=np.float32)
        m = sp.csr_matrix((data, (rows, cols)), shape=(len(items), len(self.vocab)))
        sums = np.asarray(m.sum(axis=1), dtype=np.float32).ravel()
        scale = sp.diags(1.0 / np.where(sums == 0, 1.0, sums)).astype(np.float32)
        return (scale @ m).tocsr().astype(np.float32)


@dataclass(frozen=True)
class LightFMParams:
    """LightFM hyperparameters (WARP loss, adagrad)."""

    no_components: int = 64
    epochs: int = 20
    learning_rate: float = 0.05
    item_alpha: float = 0.0
    max_sampled: int = 10

    def __str__(self) -> str:
        return f"dim={self.no_components} ep={self.epochs}"


class LightFMHybrid(Recommender):
    """LightFM (WARP) with item features = identity + metadata tokens, users = identity.

    Trained on the training items' columns only (WARP samples its negatives among the
    columns, so cold20's new items would be pushed down); new items are scored from
    their metadata features, so this peer, unlike ALS/BPR, can rank them.
    """

    name = "LightFM"
    update_method = (
        "fit_partial on the user's rows only, as many epochs as the fit "
        "(also moves the item embeddings it samples)"
    )

    def __init__(
        self, item_info: Mapping[int, ItemInfo], params: LightFMParams | None = None
    ) -> None:
        _require("lightfm")
        super().__init__()
        self.params = params or LightFMParams()
        self._tokens = {item: item_tokens(info) for item, info in item_info.items()}
        self.epochs_done = 0

    def train(self) -> None:
        features = ItemFeatures(self._tokens, self.items)
        self._item_matrix = features.matrix(self.items)
        self._cand_matrix = features.matrix(self.split.candidates)
        self._interactions = self.x.tocoo().astype(np.float32)
        p = self.params
        self.model = LightFM(
            no_components=p.no_components,
            loss="warp",
            learning_rate=p.learning_rate,
            item_alpha=p.item_alpha,
            max_sampled=p.max_sampled,
            random_state=SEED,
        )
        self.epochs_done = 0
        self._train(p.epochs)

    def _train(self, epochs: int) -> None:
        """``epochs`` more epochs, then cache the candidates' and users' representations."""
        self.model.fit_partial(self._interactions, item_features=self._item_matrix, epochs=epochs)
        self.epochs_done += epochs
        self._cand_bias, self._cand_emb = self.model.get_item_representations(self._cand_matrix)
        self._user_emb = np.asarray(self.model.user_embeddings)

    def train_more(self, epochs: int) -> Self:
        """More epochs on the same data (cheap tuning of ``epochs``)."""
        self._train(epochs)
        self.params = replace(self.params, epochs=self.epochs_done)
        return self

    def scores(self, users: IntArray) -> FloatArray:
        rows = self.split.user_rows(np.asarray(users, dtype=np.int64))
        # identity user features: a user's representation is its embedding row; the
        # user bias is the same for every candidate, so it is left out.
        return np.asarray(self._user_emb[rows] @ self._cand_emb.T + self._cand_bias[None, :])

    def update_user(self, user: int, items: IntArray) -> FloatArray:
        """``fit_partial`` on ``user``'s rows only, then score the candidates with the
        updated representations. Mutates the model. Only for a known user (a new one
        needs a new identity feature, i.e. a bigger model)."""
        row = int(self.split.user_rows(np.array([user], dtype=np.int64))[0])
        x = row_matrix(items, self.items).tocoo()
        one = sp.coo_matrix(
            (x.data, (np.full(len(x.data), row, dtype=np.int32), x.col.astype(np.int32))),
            shape=self._interactions.shape,
        )
        self.model.fit_partial(one, item_features=self._item_matrix, epochs=self.params.epochs)
        bias, emb = self.model.get_item_representations(self._cand_matrix)
        return np.asarray(emb @ self.model.user_embeddings[row] + bias)


def token_centroid(item_info: Mapping[int, ItemInfo], min_count: int = 2) -> Centroid:
    """:class:`Centroid` over idf-weighted metadata tokens (no neural encoder needed);
    tokens on fewer than ``min_count`` items cannot match anything and are dropped."""
    ids = np.array(sorted(item_info), dtype=np.int64)
    tokens = [item_tokens(item_info[int(i)]) for i in ids]
    counts = Counter(t for ts in tokens for t in set(ts))
    vocab = {t: n for n, t in enumerate(sorted(t for t, c in counts.items() if c >= min_count))}
    emb = np.zeros((len(ids), len(vocab)), dtype=np.float32)
    for r, ts in enumerate(tokens):
        for t in set(ts):
            if t in vocab:
                emb[r, vocab[t]] = np.log(len(ids) / counts[t])
    return Centroid(ids, emb, name="Centroid(tokens)")


@dataclass(frozen=True)
class UpdateCost:
    """Wall times of one user's candidate scores after their history changed."""

    method: str
    seconds: list[float]

    @property
    def ms(self) -> float:
        return 1000.0 * float(np.median(self.seconds))

    @property
    def n_users(self) -> int:
        return len(self.seconds)


def measure_update(
    model: Recommender, split: Split, n_users: int = 50, max_refits: int = 1
) -> UpdateCost:
    """Time ``model.update_user`` for evaluated users whose history gains their next
    real event (their first test positive). A refit is timed on ``max_refits`` users
    only. Call after evaluating: LightFM's update changes the model."""
    n = max_refits if model.update_is_refit else n_users
    rng = np.random.default_rng(SEED)
    users = rng.choice(split.users, size=min(n, len(split.users)), replace=False)
    positives = split.train_positives
    if not model.update_is_refit:
        first = int(users[0])
        model.update_user(first, positives[first])  # warm caches (e.g. implicit's YtY)
    times = []
    for u in users.tolist():
        history = np.concatenate([positives[u], split.test[u][:1]])
        start = time.perf_counter()
        out = model.update_user(u, history)
        times.append(time.perf_counter() - start)
        if out.shape != (len(split.candidates),) or not np.all(np.isfinite(out)):
            raise RuntimeError(f"{model.name}: update_user returned bad scores")
    return UpdateCost(model.update_method, times)


# --- tuning on the inner validation split ----------------------------------------------


# implicit's own confidence (the README's ALS row) at several strengths, and Hu et
# al.'s 1 + alpha at the regularization that suits each alpha (~10-30x alpha here).
_ALS_SETTINGS: tuple[tuple[Confidence, float, float], ...] = (
    *(("scaled", 0.5, reg) for reg in (3.0, 5.0, 10.0, 20.0)),
    ("hu", 2.0, 50.0),
    ("hu", 10.0, 100.0),
)
ALS_GRID: tuple[ALSParams, ...] = tuple(
    ALSParams(f, reg, alpha, conf) for f in (64, 128) for conf, alpha, reg in _ALS_SETTINGS
)
ALS_GRID_QUICK: tuple[ALSParams, ...] = (
    ALSParams(128, 10.0, 0.5, "scaled"),
    ALSParams(128, 50.0, 2.0, "hu"),
)
BPR_GRID: tuple[BPRParams, ...] = tuple(
    BPRParams(f, lr, 0.01, 100) for f in (64, 128) for lr in (0.005, 0.01)
)
BPR_ITERATIONS = (50, 100, 200)
LIGHTFM_COMPONENTS = (32, 64)
LIGHTFM_EPOCHS = (10, 20, 40)
# The tuning points of bench/run_peers.py: name -> (full, quick).
GRIDS: dict[str, tuple[Any, Any]] = {
    "itemknn": (ITEMKNN_GRID, (50, 200, 400)),
    "ease": (EASE_GRID, (250.0, 2000.0)),
    "als": (ALS_GRID, ALS_GRID_QUICK),
    "bpr": ((BPR_GRID, BPR_ITERATIONS), ((BPRParams(64, 0.01, 0.01, 100),), (50, 100))),
    "lightfm": ((LIGHTFM_COMPONENTS, LIGHTFM_EPOCHS), ((64,), (10, 20))),
}


def tune_als(
    split: Split,
    grid: Sequence[ALSParams] = ALS_GRID,
    inner: Split | None = None,
    num_threads: int = 2,
) -> TuneResult[ALSParams]:
    """Factors, regularization and confidence for :class:`ALS`."""
    return tune(lambda p: ALS(p, num_threads=num_threads), grid, split, inner)


def _staged(
    split: Split, inner: Split | None, models: Sequence[Any], stages: Sequence[int]
) -> TuneResult[Any]:
    """Tune a training length: each of ``models`` (set to train ``stages[0]``) is fitted,
    then continued (``train_more``) through the ascending ``stages``, evaluated after each."""

    def fitted(data: Split) -> Iterable[tuple[Any, Any]]:
        for model in models:
            model.fit(data)
            done = stages[0]
            for stage in stages:
                if stage > done:
                    model.train_more(stage - done)
                    done = stage
                yield model.params, model

    return tune_fitted(fitted, split, inner)


def tune_bpr(
    split: Split,
    grid: Sequence[BPRParams] = BPR_GRID,
    iterations: Sequence[int] = BPR_ITERATIONS,
    inner: Split | None = None,
) -> TuneResult[BPRParams]:
    """Factors / learning rate from ``grid`` x ``iterations`` (one continued fit per
    grid point; ``grid``'s own iteration counts are ignored)."""
    models = [BPR(replace(p, iterations=iterations[0])) for p in grid]
    return _staged(split, inner, models, iterations)


def tune_lightfm(
    split: Split,
    item_info: Mapping[int, ItemInfo],
    components: Sequence[int] = LIGHTFM_COMPONENTS,
    epochs: Sequence[int] = LIGHTFM_EPOCHS,
    inner: Split | None = None,
) -> TuneResult[LightFMParams]:
    """Embedding size x epochs for :class:`LightFMHybrid` (one continued fit per size)."""
    models = [LightFMHybrid(item_info, LightFMParams(dim, epochs[0])) for dim in components]
    return _staged(split, inner, models, epochs)
