"""Earlier items: what a heavy user saw before their retained log, about 3 bytes each.

A record keeps only the newest ``max_events`` events. So that "never offer a seen
item" still holds for the items of the dropped events, the record keeps a
*seen filter* of them: a set of entries (fingerprint, day), one per fingerprint.

- **fingerprint**: the top 24 bits of the item id's 32-bit blake2b hash
  (``user_record.item_hash(id) >> 8``, so format-1 records convert without the
  ids). An unseen item whose fingerprint equals a held one is hidden (a false
  positive); a seen item is never shown. The false-positive rate with ``n``
  entries is ``1 - (1 - 2**-24) ** n``, about ``n / 2**24``: **0.024% at 4,096**
  (the default cap; measured: 0.023% of 10^6 random probe ids at 4,000 items,
  ``tests/test_seen_filter.py`` checks 200,000), 0.6% at the config's limit of
  100,000.
- **day**: the UTC day number (0 = 1970-01-01) of the newest dropped event on
  the item: coarse on purpose (it costs a few bits, where seconds cost 16 more).
  It orders the cap (the oldest days go first, ties by fingerprint) and lets
  ``forget(before=..., after=...)`` act on earlier items *conservatively*: an
  entry goes when its day overlaps the range, so nothing that might lie in the
  range survives (an entry just outside the range, on the same day, goes too).

Encoding (canonical): the entries as sorted 40-bit keys ``(day - first day) << 24 |
fingerprint``, Elias-Fano coded: a 7-byte header (``<IHB``: count, first day,
``l``), then each key's low ``l`` bits packed, then the high parts in unary
(bit ``(key >> l) + i`` set for the i-th key), both little-endian bit order and
zero-padded to a byte. ``l = floor(log2(universe / count))``, so an entry costs
``l + 2``-ish bits: 14 bits (1.8 B) when everything was dropped on one day,
about 22 bits (2.8 B) over a year of days, at most 30 bits (3.7 B) over the
whole 1970..2106 range. The bytes depend only on the set of entries, never on
the order of insertions, and deleting an entry leaves the bytes of a filter
that never held it: ``forget(item_ids=[X])`` leaves no trace of X. (Removing X
removes the entry of its fingerprint; when another seen item shares it, odds
~ n / 2**24, that item's entry goes too, so the bytes are those of a filter that
never held either: forgetting errs towards showing an item, never towards
keeping a trace of X.)

All the work is vectorised with numpy: no Python loop over bits or entries.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Collection, Iterable, Sequence

import numpy as np

from ..errors import StoreFormatError

FINGERPRINT_BITS = 24
DAY_SECONDS = 86_400
MAX_DAY = (2**32 - 1) // DAY_SECONDS  # 2106-02-07, the last day a record's times reach
_MASK = np.uint64((1 << FINGERPRINT_BITS) - 1)
_SHIFT = np.uint64(FINGERPRINT_BITS)
_DAY_BITS = np.uint64(16)  # days fit in 16 bits (MAX_DAY < 2**16)
_DAY_MASK = np.uint64((1 << 16) - 1)
_HEADER = struct.Struct("<IHB")  # count, first day, low bits per key


def fingerprint(item_id: str) -> int:
    """The 24-bit fingerprint an earlier item is remembered by (the top bits of its
    32-bit hash, so a format-1 record's hashes convert).

    >>> fingerprint("jazz-0001") == int.from_bytes(
    ...     hashlib.blake2b(b"jazz-0001", digest_size=4).digest(), "little") >> 8
    True
    """
    digest = hashlib.blake2b(item_id.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") >> (32 - FINGERPRINT_BITS)


def day_of(ts: float) -> int:
    """The day number of Unix seconds ``ts``, clamped to the record's range.

    >>> day_of(86_399), day_of(86_400), day_of(-5)
    (0, 1, 0)
    """
    return min(max(int(ts) // DAY_SECONDS, 0), MAX_DAY)


class SeenFilter:
    """Entries (fingerprint, day of the newest dropped event), one per fingerprint.

    Held as sorted keys ``day << 24 | fingerprint`` (oldest first); every change
    makes new arrays, so copies share them safely.

    >>> f = SeenFilter()
    >>> f.add([fingerprint("a"), fingerprint("b")], [19_000, 19_001])
    >>> "a" in f, "c" in f, len(f)
    (True, False, 2)
    >>> f.remove([fingerprint("a")])
    1
    >>> f.to_bytes() == SeenFilter.build([(fingerprint("b"), 19_001)]).to_bytes()
    True
    """

    __slots__ = ("_blob", "_keys", "_sorted")

    def __init__(self) -> None:
        self._keys = np.zeros(0, np.uint64)
        self._blob: bytes | None = b""
        self._sorted: np.ndarray | None = None

    # -- building -------------------------------------------------------------------------

    @classmethod
    def build(cls, entries: Iterable[tuple[int, int]]) -> SeenFilter:
        """A filter of ``(fingerprint, day)`` entries (a repeated fingerprint keeps its
        newest day).

        >>> len(SeenFilter.build([(7, 100), (7, 90), (8, 5)]))
        2
        """
        pairs = np.array(list(entries), np.int64).reshape(-1, 2)
        out = cls()
        out.add(pairs[:, 0], pairs[:, 1])
        return out

    def copy(self) -> SeenFilter:
        """An independent filter with the same entries (cheap: arrays are shared).

        >>> f = SeenFilter.build([(1, 2)]); g = f.copy(); g.trim(0)
        >>> len(f), len(g)
        (1, 0)
        """
        out = SeenFilter()
        out._set(self._keys, self._blob)
        return out

    # -- changes --------------------------------------------------------------------------

    def add(
        self, fingerprints: Sequence[int] | np.ndarray, days: Sequence[int] | np.ndarray
    ) -> None:
        """Remember each fingerprint with its day; one already held keeps the newer day.

        >>> f = SeenFilter(); f.add([5], [10]); f.add([5, 6], [3, 4]); f.entries()
        [(6, 4), (5, 10)]
        """
        fps = np.asarray(fingerprints, np.int64)
        days = np.asarray(days, np.int64)
        if len(fps) != len(days):
            raise ValueError("one day per fingerprint")
        if not len(fps):
            return
        if fps.min() < 0 or fps.max() >> FINGERPRINT_BITS:
            raise ValueError("a fingerprint has 24 bits")
        days = np.clip(days, 0, MAX_DAY).astype(np.uint64)
        held = self._keys
        # sorted by fingerprint, then day: per fingerprint the last is the newest day
        by_fp = np.sort(
            np.concatenate(
                [
                    ((held & _MASK) << _DAY_BITS) | (held >> _SHIFT),
                    (fps.astype(np.uint64) << _DAY_BITS) | days,
                ]
            )
        )
        fp_of = by_fp >> _DAY_BITS
        newest = by_fp[np.append(fp_of[1:] != fp_of[:-1], True)]
        self._set(np.sort(((newest & _DAY_MASK) << _SHIFT) | (newest >> _DAY_BITS)))

    def remove(self, fingerprints: Collection[int] | np.ndarray) -> int:
        """Drop the entries of these fingerprints; return how many went.

        >>> f = SeenFilter.build([(1, 0), (2, 0)]); f.remove([2, 3]), f.entries()
        (1, [(1, 0)])
        """
        return self.forget(fingerprints)

    def forget(
        self,
        fingerprints: Collection[int] | np.ndarray | None = None,
        after: float | None = None,
        before: float | None = None,
    ) -> int:
        """Drop the entries that might match all the given criteria (fingerprint among
        ``fingerprints``; newest dropped event strictly between the Unix seconds
        ``after`` and ``before``): an entry whose day overlaps the range goes.

        >>> f = SeenFilter.build([(1, 0), (2, 1), (3, 2)])
        >>> f.forget(before=86_400.5), f.entries()  # day 1 starts before the bound
        (2, [(3, 2)])
        """
        if not len(self._keys):
            return 0
        drop = np.ones(len(self._keys), bool)
        if fingerprints is not None:
            wanted = np.fromiter((int(f) for f in fingerprints), np.int64)
            drop &= np.isin((self._keys & _MASK).astype(np.int64), wanted)
        start = (self._keys >> _SHIFT).astype(np.int64) * DAY_SECONDS  # first second of day
        if before is not None:
            drop &= start < before
        if after is not None:
            drop &= start + (DAY_SECONDS - 1) > after
        removed = int(drop.sum())
        if removed:
            self._set(self._keys[~drop])
        return removed

    def trim(self, cap: int) -> None:
        """Keep the newest ``cap`` entries (the oldest days go first, ties by fingerprint).

        >>> f = SeenFilter.build([(9, 1), (8, 2), (7, 1)]); f.trim(2); f.entries()
        [(9, 1), (8, 2)]
        """
        if len(self._keys) > cap:
            self._set(self._keys[len(self._keys) - max(cap, 0) :])

    def _set(self, keys: np.ndarray, blob: bytes | None = None) -> None:
        self._keys = keys
        self._blob = blob
        self._sorted = None

    # -- reading --------------------------------------------------------------------------

    def fingerprints(self) -> np.ndarray:
        """The held fingerprints, sorted (uint32), for ``np.isin`` over many items.

        >>> SeenFilter.build([(9, 1), (8, 2)]).fingerprints().tolist()
        [8, 9]
        """
        if self._sorted is None:
            self._sorted = np.sort((self._keys & _MASK).astype(np.uint32))
        return self._sorted

    def entries(self) -> list[tuple[int, int]]:
        """``(fingerprint, day)`` pairs, oldest first (as they are encoded).

        >>> SeenFilter.build([(9, 3), (8, 2)]).entries()
        [(8, 2), (9, 3)]
        """
        fps = (self._keys & _MASK).tolist()
        days = (self._keys >> _SHIFT).tolist()
        return list(zip(fps, days, strict=True))

    def __contains__(self, item_id: object) -> bool:
        if not isinstance(item_id, str) or not len(self._keys):
            return False
        held = self.fingerprints()
        fp = fingerprint(item_id)
        at = int(np.searchsorted(held, fp))
        return at < len(held) and int(held[at]) == fp

    def __len__(self) -> int:
        return len(self._keys)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SeenFilter):
            return NotImplemented
        return bool(np.array_equal(self._keys, other._keys))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SeenFilter({len(self)} entries)"

    # -- bytes ----------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The canonical Elias-Fano encoding (``b""`` when empty).

        >>> SeenFilter().to_bytes(), len(SeenFilter.build([(1, 19_000)]).to_bytes())
        (b'', 9)
        """
        if self._blob is None:
            self._blob = _encode(self._keys)
        return self._blob

    @classmethod
    def from_bytes(cls, raw: bytes) -> SeenFilter:
        """A filter read back from ``to_bytes`` (``StoreFormatError`` if malformed).

        >>> f = SeenFilter.build([(1, 5), (2, 19_000)])
        >>> SeenFilter.from_bytes(f.to_bytes()) == f
        True
        """
        out = cls()
        if raw:
            keys, fingerprints = _decode(raw)
            out._set(keys, bytes(raw))
            out._sorted = fingerprints
        return out


def _low_bits(count: int, universe: int) -> int:
    """Elias-Fano's split: ``floor(log2(universe / count))`` (0 when dense)."""
    return max((universe // count).bit_length() - 1, 0)


def _encode(keys: np.ndarray) -> bytes:
    n = len(keys)
    if not n:
        return b""
    first_day = int(keys[0] >> _SHIFT)
    rel = keys - np.uint64(first_day << FINGERPRINT_BITS)
    low_bits = _low_bits(n, int(rel[-1]) + 1)
    # each key's 64 bits, least significant first; its low ``low_bits`` of them kept
    low = np.unpackbits(rel.astype("<u8").view(np.uint8).reshape(n, 8), axis=1, bitorder="little")
    high = (rel >> np.uint64(low_bits)).astype(np.int64) + np.arange(n)
    unary = np.zeros(int(high[-1]) + 1, np.uint8)
    unary[high] = 1
    return b"".join(
        (
            _HEADER.pack(n, first_day, low_bits),
            np.packbits(low[:, :low_bits].ravel(), bitorder="little").tobytes(),
            np.packbits(unary, bitorder="little").tobytes(),
        )
    )


def _decode(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Keys (and the sorted fingerprints) from ``_encode``'s bytes; anything but the
    canonical bytes of a valid filter is refused, so reading then writing gives the
    same bytes."""
    if len(raw) < _HEADER.size:
        raise StoreFormatError("malformed earlier items in a user record")
    n, first_day, low_bits = _HEADER.unpack_from(raw)
    low_size = (n * low_bits + 7) // 8
    body = np.frombuffer(raw, np.uint8, offset=_HEADER.size)
    if n == 0 or low_bits > 40 or len(body) <= low_size:
        raise StoreFormatError("malformed earlier items in a user record")
    ones = np.flatnonzero(np.unpackbits(body[low_size:], bitorder="little"))
    if len(ones) != n:
        raise StoreFormatError("malformed earlier items in a user record")
    high = (ones - np.arange(n)).astype(np.uint64)
    bits = np.zeros((n, 64), np.uint8)  # each key's low bits, widened to 64
    bits[:, :low_bits] = np.unpackbits(
        body[:low_size], count=n * low_bits, bitorder="little"
    ).reshape(n, low_bits)
    low = np.packbits(bits, axis=1, bitorder="little").view("<u8").ravel().astype(np.uint64)
    keys = ((high << np.uint64(low_bits)) | low) + np.uint64(first_day << FINGERPRINT_BITS)
    fingerprints = np.sort((keys & _MASK).astype(np.uint32))
    if (
        int(keys[-1] >> _SHIFT) > MAX_DAY
        or bool(np.any(fingerprints[1:] == fingerprints[:-1]))  # one entry per fingerprint
        or _encode(keys) != raw
    ):
        raise StoreFormatError("malformed earlier items in a user record")
    return keys, fingerprints
