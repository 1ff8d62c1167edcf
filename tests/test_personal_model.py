"""Interest grouping: liked items join the closest group; over the cap, the two most
similar groups merge."""

from __future__ import annotations

import numpy as np

from ownrank.engine.personal_model import LearnerConfig, Observation, group_interests


def unit(*parts: float) -> np.ndarray:
    v = np.zeros(8, dtype=np.float32)
    v[: len(parts)] = parts
    return v / np.linalg.norm(v)


def test_similar_items_join_and_the_closest_groups_merge_over_the_cap() -> None:
    vectors = {
        "a1": unit(1, 0, 0),
        "a2": unit(1, 0.1, 0),
        "b1": unit(0, 1, 0),
        "c1": unit(0, 0.4, 0.9),  # too far from b to join it, but closer to b than to a
        "d1": unit(0, 0, 0, 1),
    }
    liked = [Observation(ref, False, 1.0, k) for k, ref in enumerate(vectors)]
    four = group_interests(liked, vectors, LearnerConfig(max_interests=4))
    assert [members for _w, members in four] == [[0, 1], [2], [3], [4]]
    three = group_interests(liked, vectors, LearnerConfig(max_interests=3))
    assert [members for _w, members in three] == [[0, 1], [2, 3], [4]]
    assert [w for w, _m in three] == [2.0, 2.0, 1.0]


def test_groups_follow_strength_and_nothing_liked_means_no_interests() -> None:
    assert group_interests([], {}, LearnerConfig()) == []
    vectors = {"x": unit(1, 0), "y": unit(0, 1)}
    liked = [Observation("x", False, 0.5, 0), Observation("y", False, 2.0, 1)]
    groups = group_interests(liked, vectors, LearnerConfig(max_interests=1))
    assert groups == [(2.5, [0, 1])]
