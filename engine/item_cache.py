"""Decoded catalog items, kept by their stored bytes: a result's item without a decode.

Every recommend and search decodes the items it returns (msgpack, the property
check, a datetime: ~5 us an item, a tenth of a cold-start recommend). The
stored bytes of an item are the whole of what its decode reads, so the item
decoded from the same id and the same bytes is the same: the cache is looked up
by both, after the read that the call makes anyway (a deleted or changed item
is never served from it). Items are catalog data: no user data goes in.

Each call gets its own item: ``Item`` is frozen, but its ``properties`` is a
dict a caller may change, so the properties are copied (deeply where a value is
a list or an object; a shallow copy otherwise).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

from .items import Item

_SCALARS = (str, int, float, bool, type(None))


class DecodedItems:
    """At most ``size`` decoded items; the oldest goes first when full.

    >>> from ownrank.engine.items import trusted_item
    >>> decoded = []
    >>> def decode(item_id: str, raw: bytes) -> Item:
    ...     decoded.append(item_id)
    ...     return trusted_item({"id": item_id, "title": raw.decode(), "body": "",
    ...                          "tags": (), "properties": {"k": [1]}, "published_at": None})
    >>> cache = DecodedItems(size=2)
    >>> a, b = cache.get("a", b"A", decode), cache.get("a", b"A", decode)
    >>> a == b, a is b, a.properties["k"] is b.properties["k"], decoded
    (True, False, False, ['a'])
    >>> cache.get("a", b"A2", decode).title, decoded  # new bytes: decoded again
    ('A2', ['a', 'a'])
    >>> _ = cache.get("b", b"B", decode); len(cache._items)  # "a" with b"A" went first
    2
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._items: dict[tuple[str, bytes], tuple[Item, bool]] = {}
        self._lock = threading.Lock()  # for adding (a lookup needs none)

    def get(self, item_id: str, raw: bytes, decode: Callable[[str, bytes], Item]) -> Item:
        """The item stored as ``raw`` under ``item_id``, decoded by ``decode`` unless
        kept; a copy of its own either way."""
        key = (item_id, raw)
        found = self._items.get(key)
        if found is None:
            item = decode(item_id, raw)
            found = (item, all(isinstance(v, _SCALARS) for v in item.properties.values()))
            with self._lock:  # SDK users may rank from several threads
                self._items[key] = found
                while len(self._items) > self.size:
                    del self._items[next(iter(self._items))]
        item, flat = found
        props = item.properties
        return _copy(item, dict(props) if flat else copy.deepcopy(props))


def _copy(item: Item, properties: dict[str, Any]) -> Item:
    """``item`` with these properties (as ``items.trusted_item`` builds an item)."""
    fields = item.__dict__.copy()
    fields["properties"] = properties
    new = Item.__new__(Item)
    object.__setattr__(new, "__dict__", fields)
    object.__setattr__(new, "__pydantic_fields_set__", set(item.__pydantic_fields_set__))
    object.__setattr__(new, "__pydantic_extra__", None)
    object.__setattr__(new, "__pydantic_private__", None)
    return new
