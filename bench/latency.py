"""Per-user latency of EASE's and ALS's scoring, to set beside ownrank's recommend.

bench/quality.py times every ``Engine.recommend`` call of its evaluation pass; this
times what a fitted peer does for the same users: one user's top 10 among the
protocol's candidates, every rated item excluded (ownrank never recommends a rated
item). EASE: the user's training-positive row times B (a gather-sum of B's rows);
ALS (``implicit``, params tuned over ``ALS_GRID_QUICK``): the user's factor dot the
candidates' factors. Only the per-user work is timed (the fit and the arrays built
once per split are outside), with BLAS on one thread, as ownrank ranks. Only chrono20
compares: on cold20 every candidate is new and the collaborative peers cannot score it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import harness
import numpy as np
import numpy.typing as npt
from baselines import EASE
from eval_data import IntArray
from peers import ALS, ALS_GRID_QUICK, blas_single_thread, tune_als, unavailable_reason
from protocols import Split, evaluate

K = 10


def rated_columns(split: Split) -> dict[int, IntArray]:
    """Evaluated user -> columns (into ``split.candidates``) of every candidate they
    rated before the split (``train_all``: low ratings included)."""
    rated = split.train_all
    cols = np.minimum(np.searchsorted(split.candidates, rated.item), len(split.candidates) - 1)
    ok = (split.candidates[cols] == rated.item) & np.isin(rated.user, split.users)
    order = np.argsort(rated.user[ok], kind="stable")
    users, cols = rated.user[ok][order], cols[ok][order]
    uniq, starts = np.unique(users, return_index=True)
    bounds = [*starts.tolist(), len(users)]
    out = {int(u): np.unique(cols[bounds[i] : bounds[i + 1]]) for i, u in enumerate(uniq)}
    empty = np.zeros(0, dtype=np.int64)
    return {int(u): out.get(int(u), empty) for u in split.users}


def candidate_columns(split: Split, items: IntArray) -> IntArray | None:
    """Positions of the candidates in a model's item axis ``items`` (None: the same axis).
    chrono20's candidates are exactly the training items, so this is None there."""
    if np.array_equal(items, split.candidates):
        return None
    pos = np.searchsorted(items, split.candidates)
    if np.any(pos >= len(items)) or not np.array_equal(items[pos], split.candidates):
        raise ValueError("the model cannot score every candidate (not a chrono20 split?)")
    out: IntArray = pos.astype(np.int64)
    return out


def top_ids(split: Split, scores: npt.NDArray[np.floating], rated: IntArray) -> IntArray:
    """The top :data:`K` candidate ids of one user's candidate scores, ``rated`` excluded."""
    scores[rated] = -np.inf
    top = np.argpartition(-scores, K - 1)[:K]
    out: IntArray = split.candidates[top[np.argsort(-scores[top], kind="stable")]]
    return out


def time_users(split: Split, rank: Callable[[int], IntArray]) -> tuple[list[float], float]:
    """Per-user seconds of ``rank`` over ``split.users`` (single-threaded BLAS), and
    the NDCG@10 of the lists it produced (proof they are the real ones)."""
    seconds: list[float] = []

    def timed(user: int) -> list[int]:
        t0 = time.perf_counter()
        out = rank(user)
        seconds.append(time.perf_counter() - t0)
        return [int(i) for i in out]

    with blas_single_thread():
        ndcg = evaluate(split, timed)["NDCG@10"]
    return seconds, ndcg


def ease_ranker(split: Split, model: EASE) -> Callable[[int], IntArray]:
    """One user's top 10 from a fitted :class:`EASE`: history row x B, rated excluded."""
    b, x = model.b, model.x
    rows = {int(u): i for i, u in enumerate(model.split.train_users)}
    cand = candidate_columns(split, model.items)
    rated = rated_columns(split)

    def rank(user: int) -> IntArray:
        r = rows[user]
        scores = b[x.indices[x.indptr[r] : x.indptr[r + 1]]].sum(axis=0)
        return top_ids(split, scores if cand is None else scores[cand], rated[user])

    return rank


def als_ranker(split: Split, model: ALS) -> Callable[[int], IntArray]:
    """One user's top 10 from a fitted :class:`ALS`: user factor . candidate factors."""
    users = np.asarray(model.model.user_factors)
    cand = candidate_columns(split, model.items)
    items = np.ascontiguousarray(model.item_factors if cand is None else model.item_factors[cand])
    rows = {int(u): i for i, u in enumerate(model.split.train_users)}
    rated = rated_columns(split)

    def rank(user: int) -> IntArray:
        return top_ids(split, items @ users[rows[user]], rated[user])

    return rank


def peer_timings(
    run: harness.Run, split: Split, users: Split, ease: EASE, ease_chosen: str, **labels: str
) -> dict[str, list[float]]:
    """EASE's and ALS's per-user scoring on ``users`` (a subset of ``split``'s users with
    the same training data; ``ease`` is already fitted on ``split``) as rows ``scoring
    calls / p50 / p99``, ``scoring NDCG@10`` and ``params``; returns each peer's seconds."""
    timed: dict[str, list[float]] = {}

    def add(name: str, chosen: str, rank: Callable[[int], IntArray]) -> None:
        seconds, ndcg = time_users(users, rank)
        run.latency("scoring", seconds, **labels, model=name)
        run.add("scoring NDCG@10", ndcg, "NDCG@10", **labels, model=name)
        run.add("params", chosen, "", **labels, model=name)
        timed[name] = seconds

    add("EASE", ease_chosen, ease_ranker(users, ease))
    reason = unavailable_reason("implicit")
    if reason is not None:
        run.note(f"ALS: no timing, implicit not importable: {reason}")
        return timed
    als = tune_als(split, ALS_GRID_QUICK)
    add("ALS", str(als.best), als_ranker(users, ALS(als.best).fit(split)))
    return timed
