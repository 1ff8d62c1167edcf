"""The ranker's lazily computed penalties: the top n of ``LazyScores.top`` (and its
``best``) is the top n of the scores with every penalty computed, whatever the scores
and penalties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ownrank.engine.ranker import LazyScores, select, top_n

finite = st.floats(-4.0, 4.0, allow_nan=False, width=32)
few_values = st.sampled_from([0.0, 1.0, 0.5, 2.0])  # ties between candidates
fraction = st.floats(0.0, 1.0) | st.just(0.0) | st.just(1.0)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 200).flatmap(
        lambda count: st.tuples(
            arrays(np.float64, count, elements=finite | few_values),
            arrays(np.float64, count, elements=fraction),
            arrays(np.float64, count, elements=fraction),
        )
    ),
    st.floats(0.0, 3.0) | st.just(0.0),
    st.integers(1, 30),
    st.integers(1, 64),
)
def test_the_lazy_top_n_is_the_top_n_of_the_complete_scores(
    drawn: tuple[np.ndarray, np.ndarray, np.ndarray], scale: float, n: int, first: int
) -> None:
    """Two penalties, zero for some candidates (they keep ``known``: ties with the
    n-th score included)."""
    known, share_a, share_b = drawn
    penalties = {"a": lambda at: -scale * share_a[at], "b": lambda at: -0.5 * share_b[at]}
    lazily = LazyScores(known, penalties)
    scores = lazily.top(n, first)
    complete = LazyScores(known, penalties).complete()
    chosen = top_n(scores, n)
    assert chosen == top_n(complete, n) == lazily.best
    assert lazily.done[chosen].all()
    assert np.array_equal(scores[chosen], complete[chosen])
    assert np.array_equal(lazily.parts["b"][chosen], -0.5 * share_b[chosen])
    # completing afterwards gives every score, as computing them all at once does
    assert np.array_equal(lazily.complete(), complete)
    assert lazily.done.all()


def test_only_the_candidates_that_can_reach_the_top_are_computed() -> None:
    known = np.linspace(10.0, 0.0, 1001)  # 0.01 apart
    asked: list[int] = []

    def penalty(at: np.ndarray) -> np.ndarray:
        asked.extend(at.tolist())
        return np.where(at < 5, -0.5, 0.0)  # the five best sink below the 10th

    LazyScores(known, {"p": penalty}).top(10, first=32)
    # the 32 best, then nobody else: the 10th exact score (position 14) beats the rest
    assert sorted(asked) == list(range(32))


def _mmr_reference(scores: np.ndarray, vectors: np.ndarray, n: int, diversity: float) -> list[int]:
    """Maximal marginal relevance as ``select`` computed it before it was vectorised
    (a full sort, a value per candidate left, one by one)."""
    order = np.lexsort((np.arange(len(scores)), -scores))
    best = order[: max(n * 10, 50)]
    vectors_of = vectors[best]
    spread = float(scores.std()) or 1.0
    relevance = ((scores - scores.mean()) / spread)[best]
    chosen: list[int] = []
    best_sim = np.full(len(best), -1.0)
    pool = list(range(len(best)))
    while pool and len(chosen) < n:
        values = [(1 - diversity) * relevance[i] - diversity * 3.0 * best_sim[i] for i in pool]
        pick = pool.pop(int(np.argmax(values)))
        chosen.append(int(best[pick]))
        best_sim = np.maximum(best_sim, vectors_of @ vectors_of[pick])
    return chosen


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 300).flatmap(
        lambda count: st.tuples(
            arrays(np.float64, count, elements=finite | few_values),
            arrays(np.float64, (count, 4), elements=st.sampled_from([0.0, 1.0, -1.0, 0.5])),
        )
    ),
    st.integers(1, 30),
    st.floats(0.01, 1.0),
)
def test_maximal_marginal_relevance_picks_as_the_reference_does(
    drawn: tuple[np.ndarray, np.ndarray], n: int, diversity: float
) -> None:
    """The same picks, in the same order, as the one-by-one version (ties in scores and
    in similarities included: vectors from four values, so many are alike)."""
    scores, vectors = drawn
    chosen = select(scores, lambda at: vectors[at], n, diversity)
    assert chosen == _mmr_reference(scores, vectors, n, diversity)


@pytest.mark.parametrize(
    "module", ["ownrank.engine.ranker", "ownrank.engine.candidates", "ownrank.engine.scoring"]
)
def test_the_examples_in_the_docstrings_run(module: str) -> None:
    """LazyScores, top_n, contributions, PoolIds and BestEntry, as in their docstrings."""
    import doctest
    import importlib

    failed, attempted = doctest.testmod(importlib.import_module(module))
    assert attempted >= 2 and failed == 0


@pytest.mark.parametrize("seed", range(20))
def test_best_entry_narrowed_or_not_finds_what_a_full_scan_finds(seed: int) -> None:
    """An explanation's source is the same whether or not the entries were narrowed to
    the explained candidates first (and for candidates outside the narrowed set)."""
    from ownrank.engine.scoring import BestEntry

    rng = np.random.default_rng(seed)
    pool_size = 30
    position = rng.integers(0, pool_size, 200)
    source = rng.integers(0, 8, 200)
    contribution = rng.integers(0, 4, 200).astype(float)  # ties: the first entry wins
    eligible = np.sort(rng.choice(pool_size, 20, replace=False))

    def full_scan(k: int) -> int | None:
        mine = [i for i in range(200) if position[i] == eligible[k]]
        if not mine:
            return None
        return int(source[max(mine, key=lambda i: (contribution[i], -i))])

    plain = BestEntry(position, source, contribution, eligible, pool_size)
    narrowed = BestEntry(position, source, contribution, eligible, pool_size)
    narrowed.prepare(rng.choice(20, 5, replace=False).tolist())
    for k in range(20):
        assert plain.source_of(k) == narrowed.source_of(k) == full_scan(k)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 60), unique=True, max_size=20),
    st.lists(st.integers(-1, 70), max_size=30),
    st.booleans(),
)
def test_pool_slots_and_positions_follow_their_definition(
    pool_rows: list[int], asked: list[int], sparse: bool
) -> None:
    """``CandidatePool.slots`` (one past the pool for a row not in it, -1 included) and
    ``positions`` (-1 there), by the table of rows and, for rows too sparse for one,
    by binary search; in any shape."""
    from ownrank.engine.candidates import CandidatePool

    shift = 3_000_000 if sparse else 0  # past 2**20: no table
    rows = np.array([r + shift for r in pool_rows], np.int64)
    pool = CandidatePool(rows, [f"i{r}" for r in pool_rows], np.zeros((len(rows), 1)), np.zeros(1))
    assert (pool.slot_by_row is None) == (sparse and bool(pool_rows))
    wanted = np.array([r + shift if r >= 0 else -1 for r in asked], np.int64)
    where = {int(r): k for k, r in enumerate(rows)}
    expected = [where.get(int(r), len(rows)) for r in wanted]
    assert pool.slots(wanted).tolist() == expected
    assert pool.positions(wanted).tolist() == [-1 if e == len(rows) else e for e in expected]
    if len(wanted) % 2 == 0:
        assert pool.slots(wanted.reshape(2, -1)).ravel().tolist() == expected


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 40).flatmap(
        lambda count: st.tuples(
            arrays(np.float32, (count, 8), elements=finite),
            st.lists(st.integers(0, count - 1), max_size=2 * count),
        )
    ),
    arrays(np.float32, 8, elements=finite),
    arrays(np.float32, 8, elements=finite),
)
def test_cosines_of_some_candidates_are_the_bits_of_the_whole_pools(
    pool: tuple[np.ndarray, list[int]], mean: np.ndarray, direction: np.ndarray
) -> None:
    """``CandidatePool.cosines_at`` computes only the asked rows' norms while the pool's
    are not computed: the same bits as from the pool's ``inverse_norms``, any rows."""
    from ownrank.engine.candidates import CandidatePool, Centre

    vectors, asked = pool
    at = np.array(asked, np.intp)
    centre = Centre.of(direction / max(float(np.linalg.norm(direction)), 1e-6), mean)
    fresh = CandidatePool(np.arange(len(vectors)), [""] * len(vectors), vectors, mean)
    some = fresh.cosines_at(at)(centre)
    assert "inverse_norms" not in fresh.__dict__  # (only those rows' norms computed)
    whole = CandidatePool(np.arange(len(vectors)), [""] * len(vectors), vectors, mean)
    assert whole.inverse_norms.shape == (len(vectors),)
    assert some.tobytes() == whole.cosines_at(at)(centre).tobytes()
    assert some.tobytes() == whole.cosines(centre, at).tobytes()
