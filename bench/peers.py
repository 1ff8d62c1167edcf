"""Peer recommenders from public libraries, next to the hand-written baselines.

The README's peer table quotes ``implicit`` ALS and BPR; this module runs them (and a
LightFM hybrid that can score cold20's new items from their metadata) through the
same :class:`bench.baselines.Recommender` interface, so ownrank is compared with
what a team would actually deploy instead of with numbers copied from elsewhere::

    model.fit(split)                   # training positives of ``split`` only
    model.scores(users)                # (len(users), len(split.candidates))
    model.fit_seconds                  # wall time of the last fit
    model.update_user(user, items)     # scores after ``user``'s history became ``items``
    model.update_method                # how that update is done, in words

``update_user`` is what the model would do online when one user's history changes:
ALS solves one least-squares system for that user (exact for fixed item factors);
LightFM runs ``fit_partial`` on that user's rows; ``implicit``'s BPR has no per-user
update, so it refits everything. :func:`measure_update` times it.

Both libraries are optional: if one cannot be imported this module still imports,
and its peers report why through :func:`unavailable_reason` (the bench prints that
and falls back to a content centroid).

Hyperparameters are tuned on :func:`protocols.inner_validation` only, never on test.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, Self

import numpy as np
import scipy.sparse as sp  # type: ignore[import-untyped]

from bench.baselines import (
    EASE,
    TUNE_METRIC,
    Centroid,
    ItemKNN,
    Recommender,
    TuneResult,
    _CollaborativeBase,
    tune,
)
from bench.eval_data import IntArray, ItemInfo
from bench.protocols import FloatArray, Split, evaluate_scores, inner_validation

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
try:
    from threadpoolctl import threadpool_limits
except ImportError:  # only used to keep BLAS single-threaded during implicit's fits
    threadpool_limits = None

Library = Literal["implicit", "lightfm"]
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


def _blas_single_thread() -> Any:
    """implicit parallelizes itself and warns (and slows down) if BLAS does too."""
    if threadpool_limits is None:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


class Peer(Recommender, Protocol):
    """A :class:`Recommender` that also reports fit time and can update one user."""

    fit_seconds: float
    update_method: str
    update_is_refit: bool

    def update_user(self, user: int, items: IntArray) -> FloatArray: ...


# --- implicit: ALS and BPR -------------------------------------------------------------


@dataclass(frozen=True)
class ALSParams:
    """ALS hyperparameters.

    ``confidence="hu"``: a positive has confidence ``1 + alpha`` (Hu et al.'s
    ``1 + alpha * r`` with binary r). ``"scaled"``: confidence ``alpha`` (implicit's
    own ``alpha * r``); the README's peer row (alpha=0.5, reg=10) is this one, i.e.
    positives weigh 0.5 against 1 for every non-positive.
    """

    factors: int = 128
    regularization: float = 10.0
    alpha: float = 0.5
    confidence: Literal["hu", "scaled"] = "hu"
    iterations: int = 15

    @property
    def positive_confidence(self) -> float:
        return 1.0 + self.alpha if self.confidence == "hu" else self.alpha

    def __str__(self) -> str:
        c = f"1+{self.alpha:g}" if self.confidence == "hu" else f"{self.alpha:g}"
        return f"f={self.factors} reg={self.regularization:g} c={c}"


class ALS(_CollaborativeBase):
    """implicit's CPU ALS (conjugate gradient fit), deterministic seed."""

    name = "ALS"
    update_method = "recalculate_user: one exact least-squares solve, item factors fixed"
    update_is_refit = False

    def __init__(self, params: ALSParams | None = None, num_threads: int = 2) -> None:
        _require("implicit")
        super().__init__()
        self.params = params or ALSParams()
        self.num_threads = num_threads
        self.fit_seconds = 0.0

    def _confidence(self, x: sp.csr_matrix) -> sp.csr_matrix:
        c = x.astype(np.float32)
        c.data[:] = self.params.positive_confidence
        return c

    def fit(self, split: Split) -> Self:
        start = time.perf_counter()
        p = self.params
        c = self._confidence(self._fit_matrix(split))
        with _blas_single_thread():
            # implicit's alpha stays 1: the confidence is already in the matrix.
            self._model = AlternatingLeastSquares(
                factors=p.factors,
                regularization=p.regularization,
                alpha=1.0,
                iterations=p.iterations,
                num_threads=self.num_threads,
                random_state=SEED,
            )
            self._model.fit(c, show_progress=False)
        # A one-user solve gains nothing from an OpenMP team, and on a loaded machine
        # waking it costs a scheduler tick (~16 ms measured here instead of ~0.3 ms).
        self._model.num_threads = 1
        self._item_factors = np.asarray(self._model.item_factors)
        self.fit_seconds = time.perf_counter() - start
        return self

    def _item_scores(self, rows: IntArray) -> FloatArray:
        return np.asarray(self._model.user_factors[rows] @ self._item_factors.T)

    def update_user(self, user: int, items: IntArray) -> FloatArray:
        row = self._confidence(_row_matrix(items, self._items))
        factors = self._model.recalculate_user(0, row)
        scores = np.asarray(factors @ self._item_factors.T)[None, :]
        out: FloatArray = self.split.to_candidates(scores, self._items)[0]
        return out


@dataclass(frozen=True)
class BPRParams:
    """BPR hyperparameters (``iterations`` a multiple of :data:`BPR_CHUNK` so a fit
    equals an earlier fit continued, which makes iteration tuning one run)."""

    factors: int = 64
    learning_rate: float = 0.01
    regularization: float = 0.01
    iterations: int = 100

    def __str__(self) -> str:
        return (
            f"f={self.factors} lr={self.learning_rate:g} reg={self.regularization:g} "
            f"it={self.iterations}"
        )


BPR_CHUNK = 50


class BPR(_CollaborativeBase):
    """implicit's CPU BPR, one thread (its SGD is lock-free across threads, so more
    threads would make results depend on scheduling)."""

    name = "BPR"
    update_method = "refit: implicit's BPR has no per-user update (no recalculate_user)"
    update_is_refit = True

    def __init__(self, params: BPRParams | None = None) -> None:
        _require("implicit")
        super().__init__()
        self.params = params or BPRParams()
        self.fit_seconds = 0.0
        self.iterations_done = 0

    def _new_model(self) -> Any:
        p = self.params
        with _blas_single_thread():
            return BayesianPersonalizedRanking(
                factors=p.factors,
                learning_rate=p.learning_rate,
                regularization=p.regularization,
                iterations=BPR_CHUNK,
                num_threads=1,
                random_state=SEED,
            )

    def fit(self, split: Split) -> Self:
        start = time.perf_counter()
        x = self._fit_matrix(split).astype(np.float32)
        self._model = self._new_model()
        self.iterations_done = 0
        self._train(x, self.params.iterations)
        self.fit_seconds = time.perf_counter() - start
        return self

    def _train(self, x: sp.csr_matrix, iterations: int) -> None:
        """Continue training in chunks (implicit's fit resumes from current factors)."""
        for done in range(0, iterations, BPR_CHUNK):
            self._model.iterations = min(BPR_CHUNK, iterations - done)
            with _blas_single_thread():
                self._model.fit(x, show_progress=False)
        self.iterations_done += iterations

    def train_more(self, iterations: int) -> Self:
        """More iterations on the same data (cheap tuning of ``iterations``)."""
        self._train(self._x.astype(np.float32), iterations)
        self.params = BPRParams(
            self.params.factors,
            self.params.learning_rate,
            self.params.regularization,
            self.iterations_done,
        )
        return self

    def _item_scores(self, rows: IntArray) -> FloatArray:
        return np.asarray(self._model.user_factors[rows] @ self._model.item_factors.T)

    def update_user(self, user: int, items: IntArray) -> FloatArray:
        """Refit on the training matrix with ``user``'s row replaced (what implicit's BPR
        needs; a hand-written fold-in with frozen item factors would be cheaper, but
        it is not what the library offers)."""
        x = self._x.tolil()
        row = int(self.split.user_rows(np.array([user], dtype=np.int64))[0])
        x[row] = _row_matrix(items, self._items)
        refit = BPR(self.params)
        refit._split, refit._items, refit._x = self._split, self._items, x.tocsr()
        refit._model = refit._new_model()
        refit._train(refit._x.astype(np.float32), self.params.iterations)
        scores = refit._item_scores(np.array([row], dtype=np.int64))
        out: FloatArray = refit.split.to_candidates(scores, self._items)[0]
        return out


def _row_matrix(items: IntArray, columns: IntArray) -> sp.csr_matrix:
    """One binary row over ``columns`` (sorted ids); items not among them are dropped."""
    items = np.asarray(items, dtype=np.int64)
    pos = np.minimum(np.searchsorted(columns, items), max(len(columns) - 1, 0))
    cols = np.unique(pos[columns[pos] == items]) if len(columns) else pos[:0]
    data = np.ones(len(cols), dtype=np.float32)
    return sp.csr_matrix((data, (np.zeros(len(cols), dtype=np.int64), cols)), (1, len(columns)))


# --- LightFM hybrid --------------------------------------------------------------------

MAX_ACTORS = 3


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
    """Item x feature matrices over a vocabulary fixed from the training items.

    The vocabulary is one identity feature per training item plus every metadata
    token that occurs on a training item: a feature no training item carries would
    keep its random initial embedding, i.e. add noise. A new item (cold20) is then
    represented by its known metadata tokens alone. Rows sum to 1, as LightFM's own
    ``Dataset`` normalizes them.
    """

    def __init__(
        self, tokens: Mapping[int, Sequence[str]], train_items: IntArray, identity: bool = True
    ) -> None:
        self.tokens = tokens
        self.identity = identity
        vocab: dict[str, int] = {}
        if identity:
            vocab.update({f"id:{int(i)}": n for n, i in enumerate(train_items)})
        for item in train_items:
            for token in tokens.get(int(item), ()):
                vocab.setdefault(token, len(vocab))
        self.vocab = vocab

    def __len__(self) -> int:
        return len(self.vocab)

    def matrix(self, items: IntArray) -> sp.csr_matrix:
        """float32 CSR, one row per ``items`` entry (in order)."""
        rows: list[int] = []
        cols: list[int] = []
        for r, item in enumerate(items.tolist()):
            names = [f"id:{item}"] if self.identity else []
            names += list(self.tokens.get(item, ()))
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


class LightFMHybrid:
    """LightFM (WARP) with item features = identity + metadata tokens, users = identity.

    Trained on the training items' columns only: WARP samples its negatives among
    the matrix's columns, so cold20's new items must not be columns (they would be
    pushed down as negatives). They are scored from their metadata features, so this
    peer, unlike ALS/BPR, can rank cold20's new items.
    """

    name = "LightFM"
    update_method = (
        "fit_partial on the user's rows only, as many epochs as the fit "
        "(also moves the item embeddings it samples)"
    )
    update_is_refit = False

    def __init__(
        self,
        item_info: Mapping[int, ItemInfo],
        params: LightFMParams | None = None,
        num_threads: int = 1,
        identity: bool = True,
    ) -> None:
        _require("lightfm")
        self.params = params or LightFMParams()
        self.num_threads = num_threads
        self.identity = identity
        self._tokens = {item: item_tokens(info) for item, info in item_info.items()}
        self._split: Split | None = None
        self.fit_seconds = 0.0
        self.epochs_done = 0

    @property
    def split(self) -> Split:
        if self._split is None:
            raise RuntimeError("LightFM: call fit() first")
        return self._split

    def fit(self, split: Split) -> Self:
        start = time.perf_counter()
        self._split = split
        self._items = split.train_items
        self._features = ItemFeatures(self._tokens, self._items, self.identity)
        self._item_matrix = self._features.matrix(self._items)
        self._cand_matrix = self._features.matrix(split.candidates)
        self._interactions = split.train_matrix(self._items).tocoo().astype(np.float32)
        p = self.params
        self._model = LightFM(
            no_components=p.no_components,
            loss="warp",
            learning_rate=p.learning_rate,
            item_alpha=p.item_alpha,
            max_sampled=p.max_sampled,
            random_state=SEED,
        )
        self.epochs_done = 0
        self._train(p.epochs)
        self.fit_seconds = time.perf_counter() - start
        return self

    def _train(self, epochs: int) -> None:
        self._model.fit_partial(
            self._interactions,
            item_features=self._item_matrix,
            epochs=epochs,
            num_threads=self.num_threads,
        )
        self.epochs_done += epochs
        self._refresh()

    def _refresh(self) -> None:
        """Cache the candidates' and users' representations for scoring."""
        self._cand_bias, self._cand_emb = self._model.get_item_representations(self._cand_matrix)
        self._user_emb = np.asarray(self._model.user_embeddings)

    def train_more(self, epochs: int) -> Self:
        """More epochs on the same data (cheap tuning of ``epochs``)."""
        self._train(epochs)
        p = self.params
        self.params = LightFMParams(
            p.no_components, self.epochs_done, p.learning_rate, p.item_alpha, p.max_sampled
        )
        return self

    def scores(self, users: IntArray) -> FloatArray:
        rows = self.split.user_rows(np.asarray(users, dtype=np.int64))
        # identity user features: a user's representation is its embedding row; the
        # user bias is the same for every candidate, so it is left out.
        return np.asarray(self._user_emb[rows] @ self._cand_emb.T + self._cand_bias[None, :])

    def update_user(self, user: int, items: IntArray) -> FloatArray:
        """``fit_partial`` on ``user``'s rows only, then score the candidates with the
        updated user and (re-derived) item representations. Mutates the model. Only
        for a known user: a new one needs a new identity feature, i.e. a bigger model."""
        row = int(self.split.user_rows(np.array([user], dtype=np.int64))[0])
        x = _row_matrix(items, self._items).tocoo()
        one = sp.coo_matrix(
            (x.data, (np.full(len(x.data), row, dtype=np.int32), x.col.astype(np.int32))),
            shape=self._interactions.shape,
        )
        self._model.fit_partial(
            one,
            item_features=self._item_matrix,
            epochs=self.params.epochs,
            num_threads=self.num_threads,
        )
        bias, emb = self._model.get_item_representations(self._cand_matrix)
        return np.asarray(emb @ self._model.user_embeddings[row] + bias)


def token_centroid(item_info: Mapping[int, ItemInfo], min_count: int = 2) -> Centroid:
    """:class:`Centroid` over idf-weighted metadata tokens: the content peer used when
    LightFM is unavailable (no neural encoder needed). Tokens on fewer than
    ``min_count`` items cannot match anything else and are dropped."""
    ids = np.array(sorted(item_info), dtype=np.int64)
    tokens = [item_tokens(item_info[int(i)]) for i in ids]
    counts = Counter(t for ts in tokens for t in set(ts))
    vocab = {t: n for n, t in enumerate(sorted(t for t, c in counts.items() if c >= min_count))}
    emb = np.zeros((len(ids), len(vocab)), dtype=np.float32)
    for r, ts in enumerate(tokens):
        for t in set(ts):
            if t in vocab:
                emb[r, vocab[t]] = np.log(len(ids) / counts[t])
    return Centroid(ids, emb)


# --- timing one user's update ----------------------------------------------------------


@dataclass(frozen=True)
class UpdateCost:
    """Median wall time to produce one user's candidate scores after their history
    changed, done the way the model would do it online."""

    method: str
    ms: float
    n_users: int


def measure_update(model: Peer, split: Split, n_users: int = 50, max_refits: int = 1) -> UpdateCost:
    """Time ``model.update_user`` for evaluated users whose history gains one item.

    The gained item is the user's first test positive (their next real event), so
    the history is exactly what the user would send next. Models whose update is a
    refit are timed on ``max_refits`` users only (each costs a whole fit). Call after
    evaluating: LightFM's update changes the model; ALS's and BPR's do not.
    """
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
    return UpdateCost(model.update_method, 1000.0 * float(np.median(times)), len(times))


def item_item_update(model: ItemKNN | EASE, user: int, items: IntArray) -> FloatArray:
    """ItemKNN / EASE online update: the new history row times the item-item matrix.

    Reads the fitted matrices of :mod:`bench.baselines` (``_sim`` / ``_b``), which
    the baselines do not expose publicly.
    """
    matrix = model._sim if isinstance(model, ItemKNN) else model._b
    row = _row_matrix(items, model._items)
    product = row @ matrix
    scores = product.toarray() if sp.issparse(product) else np.asarray(product).reshape(1, -1)
    out: FloatArray = model.split.to_candidates(scores, model._items)[0]
    return out


def centroid_update(model: Centroid, user: int, items: IntArray) -> FloatArray:
    """Centroid online update: mean of the history's unit vectors, cosine to candidates."""
    centroid = model._lookup(np.asarray(items, dtype=np.int64)).mean(axis=0)
    norm = float(np.linalg.norm(centroid))
    out: FloatArray = model._cand @ (centroid / (norm or 1.0))
    return out


def same_for_everyone(model: Recommender, user: int, items: IntArray) -> FloatArray:
    """MostPop: a history change alters no user's list (counts change globally)."""
    out: FloatArray = model.scores(np.array([user], dtype=np.int64))[0]
    return out


UpdateFn = Callable[[Any, int, IntArray], FloatArray]


class OnlineBaseline:
    """A :mod:`bench.baselines` model with fit time and an online per-user update, so
    every row of the bench's table is timed the same way."""

    update_is_refit = False

    def __init__(self, model: Recommender) -> None:
        self.model = model
        self.name = model.name
        self.fit_seconds = 0.0
        self._update: UpdateFn
        if isinstance(model, ItemKNN | EASE):
            self._update = item_item_update
            self.update_method = "history row x item-item matrix (sparse, no refit)"
        elif isinstance(model, Centroid):
            self._update = centroid_update
            self.update_method = "mean of the history's item vectors"
        else:
            self._update = same_for_everyone
            self.update_method = "none: the list does not depend on the user"

    def fit(self, split: Split) -> Self:
        start = time.perf_counter()
        self.model.fit(split)
        self.fit_seconds = time.perf_counter() - start
        return self

    def scores(self, users: IntArray) -> FloatArray:
        return self.model.scores(users)

    def update_user(self, user: int, items: IntArray) -> FloatArray:
        return self._update(self.model, user, items)


# --- tuning on the inner validation split ----------------------------------------------


# implicit's own confidence (the README's ALS row) at several strengths, and Hu et
# al.'s 1 + alpha at the regularization that suits each alpha (a scan on the inner
# splits: 1 + alpha needs reg ~ 10-30x alpha here).
Confidence = Literal["hu", "scaled"]
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
BPR_GRID_QUICK: tuple[BPRParams, ...] = (BPRParams(64, 0.01, 0.01, 100),)
BPR_ITERATIONS = (50, 100, 200)
BPR_ITERATIONS_QUICK = (50, 100)
LIGHTFM_COMPONENTS = (32, 64)
LIGHTFM_EPOCHS = (10, 20, 40)
LIGHTFM_COMPONENTS_QUICK = (64,)
LIGHTFM_EPOCHS_QUICK = (10, 20)


def tune_als(
    split: Split,
    grid: Sequence[ALSParams] = ALS_GRID,
    inner: Split | None = None,
    num_threads: int = 2,
) -> TuneResult[ALSParams]:
    """Factors, regularization and confidence for :class:`ALS`."""
    return tune(lambda p: ALS(p, num_threads=num_threads), grid, split, inner)


def _staged(
    split: Split,
    inner: Split | None,
    bases: Sequence[Any],
    stages: Sequence[int],
    start_fn: Any,
    more_fn: Any,
) -> TuneResult[Any]:
    """Tune a training length by continuing one fit through ``stages`` (ascending)
    for each base setting, evaluating inner NDCG@10 after each stage."""
    begin = time.perf_counter()
    inner = inner_validation(split) if inner is None else inner
    table: list[tuple[Any, float]] = []
    for base in bases:
        model = start_fn(base, stages[0]).fit(inner)
        done = stages[0]
        for stage in stages:
            if stage > done:
                more_fn(model, stage - done)
                done = stage
            table.append((model.params, evaluate_scores(inner, model.scores)[TUNE_METRIC]))
    best = max(table, key=lambda row: row[1])[0]
    return TuneResult(best, table, time.perf_counter() - begin)


def tune_bpr(
    split: Split,
    grid: Sequence[BPRParams] = BPR_GRID,
    iterations: Sequence[int] = BPR_ITERATIONS,
    inner: Split | None = None,
) -> TuneResult[BPRParams]:
    """Factors / learning rate from ``grid`` x ``iterations`` (one continued fit per
    grid point; ``grid``'s own iteration counts are ignored)."""

    def start(p: BPRParams, it: int) -> BPR:
        return BPR(BPRParams(p.factors, p.learning_rate, p.regularization, it))

    return _staged(split, inner, grid, iterations, start, BPR.train_more)


def tune_lightfm(
    split: Split,
    item_info: Mapping[int, ItemInfo],
    components: Sequence[int] = LIGHTFM_COMPONENTS,
    epochs: Sequence[int] = LIGHTFM_EPOCHS,
    inner: Split | None = None,
    num_threads: int = 1,
) -> TuneResult[LightFMParams]:
    """Embedding size x epochs for :class:`LightFMHybrid` (one continued fit per size)."""

    def start(dim: int, ep: int) -> LightFMHybrid:
        return LightFMHybrid(item_info, LightFMParams(dim, ep), num_threads=num_threads)

    return _staged(split, inner, components, epochs, start, LightFMHybrid.train_more)
