"""Decoded catalog items, kept per catalog version: a result's item without a read.

Every recommend and search decodes the items it returns (an LMDB read, msgpack,
the property check, a datetime: ~5 us an item in a loop, three times that inside
a ranking call, whose other reads have pushed the item pages out of the CPU's
caches). Every catalog write bumps the catalog's sequence number in the same
transaction (``storage/catalog_store.py``), so while it is unchanged every item
is what it was: the items are kept for one sequence number, the newest a call
has read, and a call whose snapshot has another one reads its items itself.
Items are catalog data: no user data goes in.

Each call gets its own item: ``Item`` is frozen, but its ``properties`` is a
dict a caller may change, so the properties are copied (deeply where a value is
a list or an object; a shallow copy otherwise).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable

from .items import Item, trusted_item

_SCALARS = (str, int, float, bool, type(None))
ItemOf = Callable[[str], Item | None]


class DecodedItems:
    """At most ``size`` decoded items of the newest catalog version seen (the oldest
    goes first when full).

    >>> stored = {"a": "A"}; reads = []
    >>> def read(item_id: str) -> Item | None:
    ...     reads.append(item_id)
    ...     title = stored.get(item_id)
    ...     return None if title is None else trusted_item({
    ...         "id": item_id, "title": title, "body": "", "tags": (),
    ...         "properties": {"k": [1]}, "published_at": None})
    >>> cache = DecodedItems(size=2)
    >>> a, b = cache.reader(1, read)("a"), cache.reader(1, read)("a")
    >>> a == b, a is b, a.properties["k"] is b.properties["k"], reads
    (True, False, False, ['a'])
    >>> stored["a"] = "A2"  # a catalog write: a new version
    >>> cache.reader(2, read)("a").title, cache.reader(1, read)("a").title, reads
    ('A2', 'A2', ['a', 'a', 'a'])
    >>> cache.reader(2, read)("gone"), reads[-1]  # (what is not there is not kept)
    (None, 'gone')
    >>> stored.update(b="B", c="C"); _ = [cache.reader(2, read)(i) for i in "bc"]
    >>> list(cache._kept[1])  # full: "a", the oldest, went first
    ['b', 'c']
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._kept: tuple[int, dict[str, tuple[Item, bool]]] = (-1, {})
        self._adding = threading.Lock()

    def reader(self, version: int, read: ItemOf) -> ItemOf:
        """The item of an id as of a snapshot of catalog ``version`` (``read``: it read
        from that snapshot, None if there is none), decoded once per version."""
        kept_version, kept = self._kept
        if version > kept_version:  # (one assignment: threads never see a mix)
            kept = {}
            self._kept = (version, kept)
        elif version < kept_version:  # an older snapshot: its items are its own
            return read

        def item_of(item_id: str) -> Item | None:
            found = kept.get(item_id)  # (a lookup needs no lock)
            if found is None:
                found = _decoded(read(item_id))
                if found is None:
                    return None
                with self._adding:  # SDK users may rank from several threads
                    kept[item_id] = found
                    while len(kept) > self.size:
                        del kept[next(iter(kept))]
            return _fresh(found)

        return item_of


def _decoded(item: Item | None) -> tuple[Item, bool] | None:
    """The item, and whether its properties are flat (no list or object values)."""
    if item is None:
        return None
    return item, all(isinstance(v, _SCALARS) for v in item.properties.values())


def _fresh(found: tuple[Item, bool]) -> Item:
    """A copy of the item with its own properties."""
    item, flat = found
    props = item.properties
    fields = item.__dict__.copy()
    fields["properties"] = dict(props) if flat else copy.deepcopy(props)
    return trusted_item(fields)
