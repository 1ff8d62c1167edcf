"""Positions of 64-bit item keys in a candidate pool, many at once.

The collaborative statistic names items by a 64-bit hash of their id
(``co_counts.item_key``); a ranking call has tens of thousands of such keys to
place in its pool. A binary search (``numpy.searchsorted``) pays a dozen
comparisons a key; a direct-mapped table indexed by the key's top bits pays a
gather and a compare. Keys whose slot another pool key took are found by a
binary search among those few.

>>> import numpy as np
>>> lookup = KeyLookup(np.array([7, 2**63 + 5, 42], np.uint64))
>>> lookup.positions(np.array([42, 8, 7], np.uint64)).tolist()
[2, -1, 0]
"""

from __future__ import annotations

import numpy as np


class KeyLookup:
    """Key -> position in ``keys`` (-1: absent); keys are distinct."""

    def __init__(self, keys: np.ndarray) -> None:
        self.keys = np.asarray(keys, np.uint64)
        self.padded = np.append(self.keys, np.uint64(0))  # what an empty slot (-1) takes
        # 16 slots a key: about 3% of keys share a slot
        self.bits = max(8, int(np.ceil(np.log2(max(len(self.keys), 1) * 16))))
        self.shift = np.uint64(64 - self.bits)
        slots = self.keys >> self.shift
        self.table = np.full(1 << self.bits, -1, np.int64)
        self.table[slots] = np.arange(len(self.keys))  # the last key of a slot wins
        lost = np.flatnonzero(self.table[slots] != np.arange(len(self.keys)))
        self.shared_slot = np.zeros(1 << self.bits, bool)
        self.shared_slot[slots[lost]] = True
        order = np.argsort(self.keys[lost])
        self.lost_keys = self.keys[lost][order]
        self.lost_positions = lost[order]

    def positions(self, keys: np.ndarray) -> np.ndarray:
        # slots as intp and ``take``: numpy's indexing with uint64 indices converts and
        # checks them each time (a gather of 7,000: 15 us, against 10 through ``take``)
        slots = (keys >> self.shift).astype(np.intp)
        found = self.table.take(slots)
        # an empty slot (-1) takes the padding: compared, then masked with found >= 0
        hit = self.padded.take(found) == keys
        hit &= found >= 0
        found = np.where(hit, found, -1)
        if len(self.lost_keys):
            again = np.flatnonzero(self.shared_slot.take(slots) & ~hit)
            if len(again):
                at = np.searchsorted(self.lost_keys, keys[again])
                at = np.minimum(at, len(self.lost_keys) - 1)
                match = self.lost_keys[at] == keys[again]
                found[again[match]] = self.lost_positions[at[match]]
        return found
