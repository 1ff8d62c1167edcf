"""Per-user latency of ownrank's recommend beside EASE's and ALS's per-user scoring.

bench/quality.py times every ``Engine.recommend`` call of its evaluation pass; this
module times what a fitted peer does for the same users: produce one user's top 10
among the protocol's candidates, everything the user rated excluded (the like for
like list: ownrank never recommends a rated item).

EASE
    The user's training-positive row times B (a gather-sum of B's rows, i.e. the
    sparse row times B), restricted to the candidate columns, rated items set to
    -inf, ``np.argpartition`` for the top 10, sorted, mapped to item ids.
ALS
    The user's fitted factor dot the candidates' item factors, the same exclusion
    and top-10 selection. ``implicit``'s CPU ALS; params from ``ALS_GRID_QUICK``
    (what ``bench/run_peers.py --quick`` tunes over), picked on inner validation.

Each user is timed separately with ``time.perf_counter`` around the per-user work
only (the fit and the index arrays built once per split are outside), with BLAS
limited to one thread (ownrank ranks single-threaded too). Only chrono20 compares:
on cold20 every candidate is new and the collaborative peers cannot score it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.baselines import EASE
from bench.eval_data import IntArray
from bench.peers import ALS, ALS_GRID_QUICK, _blas_single_thread, tune_als, unavailable_reason
from bench.protocols import Split, evaluate

K = 10
UserScorer = Callable[[int], npt.NDArray[np.floating]]


@dataclass(frozen=True)
class Latency:
    """p50 / p99 of per-user wall times, in milliseconds."""

    p50: float
    p99: float
    n: int

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        if not seconds:
            raise ValueError("no timings")
        ms = 1000.0 * np.asarray(seconds, dtype=np.float64)
        return cls(float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), len(ms))

    def json(self) -> dict[str, float]:
        return {"p50": round(self.p50, 4), "p99": round(self.p99, 4), "n": self.n}


@dataclass(frozen=True)
class PeerTiming:
    """A peer's per-user scoring latency, or why there is none."""

    name: str
    chosen: str
    latency: Latency | None = None
    ndcg: float | None = None  # NDCG@10 of the timed lists: proves they are the real ones
    unavailable: str = ""

    def json(self) -> dict[str, Any]:
        if self.latency is None:
            return {"unavailable": self.unavailable}
        return {**self.latency.json(), "chosen": self.chosen, "NDCG@10": self.ndcg}


def rated_columns(split: Split) -> dict[int, IntArray]:
    """Evaluated user -> columns (into ``split.candidates``) of every candidate they
    rated before the split (``train_all``: low ratings included)."""
    rated = split.train_all
    cols = np.searchsorted(split.candidates, rated.item)
    cols = np.minimum(cols, len(split.candidates) - 1)
    ok = (split.candidates[cols] == rated.item) & np.isin(rated.user, split.users)
    users, cols = rated.user[ok], cols[ok]
    order = np.argsort(users, kind="stable")
    users, cols = users[order], cols[order]
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
    top = top[np.argsort(-scores[top], kind="stable")]
    out: IntArray = split.candidates[top]
    return out


def time_users(split: Split, rank: Callable[[int], IntArray]) -> tuple[list[float], float]:
    """Per-user seconds of ``rank`` over ``split.users`` (single-threaded BLAS), and
    the NDCG@10 of the lists it produced."""
    seconds: list[float] = []

    def timed(user: int) -> list[int]:
        t0 = time.perf_counter()
        out = rank(user)
        seconds.append(time.perf_counter() - t0)
        return [int(i) for i in out]

    with _blas_single_thread():
        ndcg = evaluate(split, timed)["NDCG@10"]
    return seconds, ndcg


def ease_ranker(split: Split, model: EASE) -> Callable[[int], IntArray]:
    """One user's top 10 from a fitted :class:`EASE`: history row x B, rated excluded."""
    b = model._b
    x = model._x
    rows = {int(u): i for i, u in enumerate(model.split.train_users)}
    cand = candidate_columns(split, model._items)
    rated = rated_columns(split)

    def rank(user: int) -> IntArray:
        r = rows[user]
        history = x.indices[x.indptr[r] : x.indptr[r + 1]]
        scores = b[history].sum(axis=0)
        if cand is not None:
            scores = scores[cand]
        return top_ids(split, scores, rated[user])

    return rank


def als_ranker(split: Split, model: ALS) -> Callable[[int], IntArray]:
    """One user's top 10 from a fitted :class:`ALS`: user factor . candidate factors."""
    users = np.asarray(model._model.user_factors)
    cand = candidate_columns(split, model._items)
    items = model._item_factors if cand is None else model._item_factors[cand]
    items = np.ascontiguousarray(items)
    rows = {int(u): i for i, u in enumerate(model.split.train_users)}
    rated = rated_columns(split)

    def rank(user: int) -> IntArray:
        scores = items @ users[rows[user]]
        return top_ids(split, scores, rated[user])

    return rank


def peer_timings(split: Split, users: Split, ease: EASE, ease_chosen: str) -> list[PeerTiming]:
    """EASE and ALS per-user latency on ``users`` (a subset of ``split``'s users with
    the same training data); ``ease`` is already fitted on ``split``."""
    seconds, ndcg = time_users(users, ease_ranker(users, ease))
    out = [PeerTiming("EASE", ease_chosen, Latency.of(seconds), ndcg)]
    reason = unavailable_reason("implicit")
    if reason is not None:
        return [*out, PeerTiming("ALS", "", unavailable=f"implicit not importable: {reason}")]
    als = tune_als(split, ALS_GRID_QUICK)
    model = ALS(als.best).fit(split)
    seconds, ndcg = time_users(users, als_ranker(users, model))
    return [*out, PeerTiming("ALS", str(als.best), Latency.of(seconds), ndcg)]


def latency_json(
    ownrank: dict[str, Latency], peers: Sequence[PeerTiming], note: str = ""
) -> dict[str, Any]:
    """The ``latency_ms`` entry of quality.json for one dataset/protocol."""
    out: dict[str, Any] = {
        "ownrank": {mode: lat.json() for mode, lat in ownrank.items()},
        "what": "ownrank: whole Engine.recommend call; peers: one user's top-10 scoring",
    }
    ratios: dict[str, dict[str, float]] = {}
    for peer in peers:
        out[peer.name] = peer.json()
        if peer.latency is None:
            continue
        for mode, lat in ownrank.items():
            ratios[f"{mode} / {peer.name}"] = {
                "p50": round(lat.p50 / peer.latency.p50, 2),
                "p99": round(lat.p99 / peer.latency.p99, 2),
            }
    if ratios:
        out["ratio"] = ratios
    if note:
        out["note"] = note
    return out


def print_latency(ownrank: dict[str, Latency], peers: Sequence[PeerTiming], note: str = "") -> None:
    """One small table per ownrank mode: ownrank's row, then each peer with the ratios
    ownrank / peer."""
    for mode, lat in ownrank.items():
        print(
            f"\n{f'latency per user (ms), {mode}, {lat.n} users':58} {'p50':>8} {'p99':>8} "
            f"{'ratio p50':>10} {'ratio p99':>10}"
        )
        print(f"{'ownrank recommend (SDK call)':58} {lat.p50:8.3f} {lat.p99:8.3f}")
        for peer in peers:
            label = f"{peer.name} scoring ({peer.chosen})" if peer.chosen else peer.name
            if peer.latency is None:
                print(f"{label:58} unavailable: {peer.unavailable}")
                continue
            p = peer.latency
            print(
                f"{label:58} {p.p50:8.3f} {p.p99:8.3f} "
                f"{lat.p50 / p.p50:9.1f}x {lat.p99 / p.p99:9.1f}x"
            )
        if note:
            print(note)
    print(flush=True)
