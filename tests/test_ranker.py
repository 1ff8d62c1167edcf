"""The ranker's lazily lowered scores: the top n of ``PenalisedScores.top`` is the top n
of the scores with every penalty computed, whatever the scores and penalties."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ownrank.engine.ranker import PenalisedScores, top_n

finite = st.floats(-4.0, 4.0, allow_nan=False, width=32)
few_values = st.sampled_from([0.0, 1.0, 0.5, 2.0])  # ties between candidates


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 200).flatmap(
        lambda count: st.tuples(
            arrays(np.float64, count, elements=finite | few_values),
            arrays(np.float64, count, elements=st.floats(0.0, 3.0) | st.just(0.0)),
            arrays(np.float64, count, elements=st.floats(0.0, 1.0) | st.just(0.0)),
        )
    ),
    st.integers(1, 30),
    st.integers(1, 64),
)
def test_the_lazy_top_n_is_the_top_n_of_the_complete_scores(
    drawn: tuple[np.ndarray, np.ndarray, np.ndarray], n: int, first: int
) -> None:
    upper, lower_a, lower_b = drawn
    penalties = {"a": lambda at: -lower_a[at], "b": lambda at: -0.5 * lower_b[at]}
    lowered = PenalisedScores(upper, penalties)
    scores = lowered.top(n, first)
    complete = PenalisedScores(upper, penalties).complete()
    assert top_n(scores, n) == top_n(complete, n)
    chosen = top_n(scores, n)
    assert lowered.done[chosen].all()
    assert np.array_equal(scores[chosen], complete[chosen])
    assert np.array_equal(lowered.parts["a"][chosen], -lower_a[chosen])
    # completing afterwards gives every score, as computing them all at once does
    assert np.array_equal(lowered.complete(), complete)
    assert lowered.done.all()


def test_only_the_candidates_that_can_reach_the_top_are_computed() -> None:
    upper = np.linspace(10.0, 0.0, 1000)
    asked: list[int] = []

    def penalty(at: np.ndarray) -> np.ndarray:
        asked.extend(at.tolist())
        return -np.full(len(at), 0.01)

    PenalisedScores(upper, {"p": penalty}).top(10, first=32)
    assert sorted(asked) == list(range(32))
