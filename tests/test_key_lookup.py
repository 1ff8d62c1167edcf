"""``KeyLookup`` places 64-bit keys exactly as a dict would, shared slots, empty slots
and the padding value (0) included."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ownrank.engine.key_lookup import KeyLookup

KEYS = st.integers(0, 2**64 - 1)


@settings(max_examples=200, deadline=None)
@given(
    pool=st.lists(st.one_of(KEYS, st.sampled_from([0, 1, 2**64 - 1])), unique=True, max_size=300),
    others=st.lists(st.one_of(KEYS, st.sampled_from([0, 1, 2**64 - 1])), max_size=100),
    top_bits_alike=st.booleans(),
)
def test_positions_are_a_dicts(pool: list[int], others: list[int], top_bits_alike: bool) -> None:
    if top_bits_alike:  # many keys in one slot: the binary search among lost keys
        pool = sorted({k >> 20 for k in pool})
        others = [k >> 20 for k in others]
    keys = np.array(pool, np.uint64)
    asked = np.array(pool[::2] + others, np.uint64)
    where = {key: k for k, key in enumerate(pool)}
    want = [where.get(int(key), -1) for key in asked]
    assert KeyLookup(keys).positions(asked).tolist() == want
