"""The ranker's lazily computed parts: the top n of ``LazyScores.top`` is the top n of
the scores with every part computed, whatever the scores, parts and bounds."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ownrank.engine.ranker import LazyScores, top_n

finite = st.floats(-4.0, 4.0, allow_nan=False, width=32)
few_values = st.sampled_from([0.0, 1.0, 0.5, 2.0])  # ties between candidates
fraction = st.floats(0.0, 1.0) | st.just(0.0) | st.just(1.0)  # 1.0: a value at its bound


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
    drawn: tuple[np.ndarray, np.ndarray, np.ndarray], bound: float, n: int, first: int
) -> None:
    """A part up to a positive bound (as the personal head's) and one that only lowers
    (the dislikes': bound 0), values at their bound included."""
    known, share_a, share_b = drawn
    lazy = {
        "a": (lambda at: bound * (2 * share_a[at] - 1), bound),
        "b": (lambda at: -0.5 * share_b[at], 0.0),
    }
    lazily = LazyScores(known, lazy)
    scores = lazily.top(n, first)
    complete = LazyScores(known, lazy).complete()
    chosen = top_n(scores, n)
    assert chosen == top_n(complete, n)
    assert lazily.done[chosen].all()
    assert np.array_equal(scores[chosen], complete[chosen])
    assert np.array_equal(lazily.parts["b"][chosen], -0.5 * share_b[chosen])
    # completing afterwards gives every score, as computing them all at once does
    assert np.array_equal(lazily.complete(), complete)
    assert lazily.done.all()


def test_only_the_candidates_that_can_reach_the_top_are_computed() -> None:
    known = np.linspace(10.0, 0.0, 1001)  # 0.01 apart
    asked: list[int] = []

    def part(at: np.ndarray) -> np.ndarray:
        asked.extend(at.tolist())
        return np.zeros(len(at))

    LazyScores(known, {"p": (part, 0.5)}).top(10, first=32)
    # the 32 best, then the ones within the bound of the 10th: 10.0 - 0.09 - 0.5
    assert sorted(asked) == list(range(60))
