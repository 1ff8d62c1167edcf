"""The wire format of catalog sync (``catalog_sync.py`` serves it, ``catalog_replica.py``
applies it; docs/sync.md describes it for clients in other languages).

A **view** is what a device's copy holds: the vector encoding (``f32`` exact
little-endian, ``f16``, or ``i8`` with a float32 scale per vector), a slice (a
property filter in the engine's grammar, ``filters.py``, and/or the ``newest`` N
items by publication time, undated items last, ties to the lower row), and whether
titles and bodies come. A **page** names rows: ``removed`` rows, ``changed`` items
(same row: new properties or publication time, no vector) and ``items`` with their
vectors, packed into one blob per page in the items' order.

Positions are opaque tokens (base64url of msgpack). A **cursor** names the store, the
view (a digest), the catalog version the copy is at and, for a newest-N slice, the
copy's boundary: the (publication time, row) of its N-th newest item. A **page
token** names where the next page of a sync starts, and carries the sync's view.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import msgpack
import numpy as np

from ..errors import InvalidInputError
from .filters import parse_filter

FORMAT = 1
Encoding = Literal["f32", "f16", "i8"]
ENCODINGS: tuple[Encoding, ...] = ("f32", "f16", "i8")
WIDTH = {"f32": 4, "f16": 2, "i8": 1}  # bytes per vector component on the wire
DEFAULT_PAGE_SIZE = 1_000
MAX_PAGE_SIZE = 5_000
MAX_NEWEST = 10_000_000
MAX_TOKEN_CHARS = 2**20  # a page token carries the view, its filter too
CURSOR_PREFIX = "c1."
PAGE_PREFIX = "p1."

# A newest-N slice's edge: the (publication time in Unix seconds, None if undated;
# row) of its N-th newest item. None: the whole filtered set (fewer than N items).
Boundary = tuple[float | None, int] | None


@dataclass(frozen=True)
class SyncView:
    """What a device's copy holds (see the module docstring)."""

    encoding: Encoding = "f32"
    filters: dict[str, Any] | None = None
    newest: int | None = None
    titles: bool = True
    body: bool = False

    @property
    def sliced(self) -> bool:
        return self.filters is not None or self.newest is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "encoding": self.encoding,
            "filters": self.filters,
            "newest": self.newest,
            "titles": self.titles,
            "body": self.body,
        }

    def digest(self) -> bytes:
        text = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.blake2b(text.encode(), digest_size=8).digest()


def check_view(
    encoding: str = "f32",
    filters: Mapping[str, Any] | None = None,
    newest: int | None = None,
    titles: bool = True,
    body: bool = False,
) -> SyncView:
    """A valid ``SyncView``; ``InvalidInputError`` (``InvalidFilterError``) says why not."""
    if encoding not in ENCODINGS:
        raise InvalidInputError(f"encoding must be one of {', '.join(ENCODINGS)}")
    if newest is not None and (
        isinstance(newest, bool) or not isinstance(newest, int) or not 1 <= newest <= MAX_NEWEST
    ):
        raise InvalidInputError(f"newest must be an integer in 1..{MAX_NEWEST}")
    if not isinstance(titles, bool) or not isinstance(body, bool):
        raise InvalidInputError("titles and body must be booleans")
    if filters is not None:
        if not isinstance(filters, Mapping):
            raise InvalidInputError("filters must be an object")
        filters = dict(filters) or None
        if filters is not None:
            parse_filter(filters)
    return SyncView(encoding, filters, newest, titles, body)


@dataclass(frozen=True)
class SyncItem:
    """One item of a page, under its row. ``title``/``body`` are None when the view
    leaves them out."""

    row: int
    id: str
    title: str | None
    body: str | None
    tags: tuple[str, ...]
    properties: dict[str, Any]
    published_at: datetime | None

    def to_wire(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "id": self.id,
            "title": self.title,
            "body": self.body,
            "tags": list(self.tags),
            "properties": self.properties,
            "published_at": None if self.published_at is None else self.published_at.isoformat(),
        }


@dataclass(frozen=True)
class CatalogPage:
    """One page of a catalog sync. Apply in this order: ``reset`` (clear the copy),
    ``removed`` rows, ``changed`` items (same row, new properties or publication time;
    the copy keeps their vectors), then ``items`` with their vectors (``vectors``: the
    packed vectors of ``items`` in their order, ``scales``: i8's float32 scale per
    vector). ``next``: the page token of the next page (None: the sync is done, and
    ``cursor`` is where the copy now is)."""

    store: str
    full: bool
    reset: bool
    reason: str | None  # why a full sync: no_cursor, unknown_cursor, other_store, ...
    catalog_seq: int
    dimension: int
    view: SyncView
    items: list[SyncItem]
    vectors: bytes
    scales: bytes | None
    changed: list[SyncItem]
    removed: list[int]
    next: str | None
    cursor: str | None
    format: int = FORMAT

    def to_wire(self, *, binary: bool = False) -> dict[str, Any]:
        """The page as JSON-ready data (blobs base64), or with ``binary`` the blobs as
        bytes (for msgpack)."""

        def blob(data: bytes | None) -> bytes | str | None:
            if data is None or binary:
                return data
            return base64.b64encode(data).decode("ascii")

        return {
            "format": self.format,
            "store": self.store,
            "full": self.full,
            "reset": self.reset,
            "reason": self.reason,
            "catalog_seq": self.catalog_seq,
            "dimension": self.dimension,
            "view": self.view.as_dict(),
            "items": [i.to_wire() for i in self.items],
            "vectors": blob(self.vectors),
            "scales": blob(self.scales),
            "changed": [i.to_wire() for i in self.changed],
            "removed": self.removed,
            "next": self.next,
            "cursor": self.cursor,
        }


# -- vector encodings ------------------------------------------------------------------


def encode_vectors(vectors: np.ndarray, encoding: Encoding) -> tuple[bytes, bytes | None]:
    """(packed vectors, packed scales or None), little-endian. ``i8``: each vector is
    divided by its scale (its largest magnitude / 127, float32) and rounded."""
    v = np.ascontiguousarray(vectors, dtype="<f4")
    if encoding == "f32":
        return v.tobytes(), None
    if encoding == "f16":
        return v.astype("<f2").tobytes(), None
    peak = np.abs(v).max(axis=1) if v.size else np.zeros(len(v), "<f4")
    scales = (peak / np.float32(127)).astype("<f4")
    safe = np.where(scales > 0, scales, np.float32(1))
    quantized = np.clip(np.rint(v / safe[:, None]), -127, 127).astype("i1")
    return quantized.tobytes(), scales.tobytes()


def decode_vectors(
    blob: bytes, scales: bytes | None, encoding: Encoding, count: int, dimension: int
) -> np.ndarray:
    """The float32 vectors (``count`` x ``dimension``) that ``encode_vectors`` packed."""
    width = WIDTH[encoding]
    if len(blob) != count * dimension * width:
        raise InvalidInputError(
            f"{len(blob)} bytes of vectors for {count} x {dimension} {encoding} components"
        )
    dtype = {"f32": "<f4", "f16": "<f2", "i8": "i1"}[encoding]
    packed = np.frombuffer(blob, dtype=dtype).reshape(count, dimension)
    if encoding != "i8":
        return packed.astype(np.float32)
    if scales is None or len(scales) != 4 * count:
        raise InvalidInputError(f"i8 vectors need {count} float32 scales")
    decoded: np.ndarray = packed.astype(np.float32) * np.frombuffer(scales, "<f4")[:, None]
    return decoded


# -- positions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    """Where a sync stands: what it brings the copy to, and how far it got."""

    store: str
    view: SyncView
    since: int | None  # the copy's catalog version; None: a full sync
    seq: int  # the catalog version the sync brings the copy to
    old: Boundary  # the copy's newest-N boundary (deltas)
    boundary: Boundary  # the boundary the sync brings the copy to
    after: int  # every row up to this one is done


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _pack_boundary(b: Boundary) -> list[Any] | None:
    return None if b is None else [b[0], b[1]]


def _unpack_boundary(raw: Any) -> Boundary:
    if raw is None:
        return None
    when, row = raw
    if when is not None and not isinstance(when, float):
        raise ValueError("boundary time")
    if isinstance(row, bool) or not isinstance(row, int):
        raise ValueError("boundary row")
    return (when, row)


def encode_cursor(store: str, view: SyncView, seq: int, boundary: Boundary) -> str:
    packed = msgpack.packb([store, view.digest(), seq, _pack_boundary(boundary)])
    return CURSOR_PREFIX + _b64(packed)


def decode_cursor(text: str) -> tuple[str, bytes, int, Boundary] | None:
    if not isinstance(text, str) or len(text) > MAX_TOKEN_CHARS:
        return None
    if not text.startswith(CURSOR_PREFIX):
        return None
    try:
        store, digest, seq, boundary = msgpack.unpackb(_unb64(text[len(CURSOR_PREFIX) :]))
        if not isinstance(store, str) or not isinstance(digest, bytes):
            return None
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            return None
        return store, digest, seq, _unpack_boundary(boundary)
    except Exception:  # anything a client sends that is not a cursor of ours
        return None


def encode_page_token(pos: Position) -> str:
    packed = msgpack.packb(
        [
            pos.store,
            pos.view.as_dict(),
            pos.since,
            pos.seq,
            _pack_boundary(pos.old),
            _pack_boundary(pos.boundary),
            pos.after,
        ]
    )
    return PAGE_PREFIX + _b64(packed)


def decode_page_token(text: str) -> Position | None:
    if not isinstance(text, str) or len(text) > MAX_TOKEN_CHARS:
        return None
    if not text.startswith(PAGE_PREFIX):
        return None
    try:
        store, view, since, seq, old, boundary, after = msgpack.unpackb(
            _unb64(text[len(PAGE_PREFIX) :])
        )
        numbers = [seq, after] if since is None else [since, seq, after]
        if not isinstance(store, str) or not isinstance(view, dict):
            return None
        if any(isinstance(n, bool) or not isinstance(n, int) for n in numbers):
            return None
        return Position(
            store,
            check_view(**view),
            since,
            seq,
            _unpack_boundary(old),
            _unpack_boundary(boundary),
            after,
        )
    except Exception:  # anything a client sends that is not a page token of ours
        return None


def unblob(data: bytes | str | None) -> bytes | None:
    """A blob of a page as bytes: msgpack carries bytes, JSON base64 text."""
    if data is None or isinstance(data, bytes):
        return data
    return base64.b64decode(data, validate=True)
