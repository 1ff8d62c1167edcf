"""Catalog sync for devices: the catalog data a device needs to rank offline, as a
full sync or a delta, page by page (docs/sync.md has the protocol).

Catalog data only: items (id, title, tags, properties, publication time; the body on
request) and their vectors. Nothing derived from users travels (no popularity, no
collaborative statistic): a device asks the server for those when online.

A device keys its copy by the server's **row numbers**: a row is one embedding of
one item and is never reused, a re-embedded item gets a new row. So a removal names
a row (the id of a deleted item may no longer be readable), and an item whose text
changed arrives as the removal of its old row and the add of its new one. Only a
change of properties or publication time keeps the row: it travels as a ``changed``
entry without a vector.

The view, the page and the tokens are ``catalog_wire.py``'s. A sync is a **full**
one (the device clears its copy on the first page, ``reset``) when there is no
cursor, when it names another store or view, or when the change log no longer
reaches back to it (``EngineConfig.changelog_keep``); else a **delta** from the log.

Pages are read one LMDB transaction each, so writes may land between two pages.
Each page reads the items as they are when it is read; the sync brings the copy to
the catalog version taken on its first page (the cursor), and the next delta
re-sends every row that changed after that version. Rows named by the log are
collapsed without cancelling an add against a removal (a row added and removed
after the cursor is sent as removed: harmless when the copy never had it), which is
what makes a copy that read some rows at a later version exact after the next delta.

A newest-N slice moves without its items changing (an add pushes the oldest out,
a delete lets an older one back in): a delta also sends every item of the filter
between the copy's boundary and the new one (as removed, or with its data), so the
device never trims by itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidInputError
from ..storage.catalog_store import CatalogChange, StoredItem
from .catalog_wire import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    Boundary,
    CatalogPage,
    Position,
    SyncItem,
    SyncView,
    check_view,
    decode_cursor,
    decode_page_token,
    encode_cursor,
    encode_page_token,
    encode_vectors,
)
from .filters import MISSING, Column, evaluate, parse_filter
from .property_table import filter_fields

if TYPE_CHECKING:
    from datetime import datetime

    from .catalog import Catalog


# -- the newest-N slice, from the keeper's property table ---------------------------------


def _filtered_rows(catalog: Catalog, view: SyncView) -> tuple[int, np.ndarray, np.ndarray]:
    """(catalog version, the live rows the view's filter admits (sorted), their
    publication times, -inf when undated), all from one state of the property table."""
    keeper = catalog.keeper
    expr = parse_filter(view.filters) if view.filters is not None else None
    for _attempt in range(10):
        keeper.warm_up()  # caught up with LMDB, the table built
        with keeper.lock.reading():
            table = keeper.table
            if table is None:  # rebuilt meanwhile
                continue
            every = table.rows()
            rows = table.matching_rows(expr) if expr is not None else every
            dates = table.column("published_at").dates()
            when = np.nan_to_num(dates[np.searchsorted(every, rows)], nan=-np.inf)
            return keeper.index.seq, rows.copy(), when
    raise RuntimeError("the property table kept being rebuilt")  # pragma: no cover


def _boundary_of(rows: np.ndarray, when: np.ndarray, newest: int | None) -> Boundary:
    if newest is None or len(rows) <= newest:
        return None
    at = int(np.lexsort((rows, -when))[newest - 1])
    edge = float(when[at])
    return (None if edge == -np.inf else edge, int(rows[at]))


def _inside(rows: np.ndarray, when: np.ndarray, boundary: Boundary) -> np.ndarray:
    """Which rows are at or above the boundary (newer, or as new and a lower row)."""
    if boundary is None:
        return np.ones(len(rows), dtype=bool)
    edge = -np.inf if boundary[0] is None else boundary[0]
    return np.asarray((when > edge) | ((when == edge) & (rows <= boundary[1])), dtype=bool)


def _when(stored: StoredItem) -> float:
    published: datetime | None = stored.item.published_at
    return -np.inf if published is None else published.timestamp()


# -- serving a page ------------------------------------------------------------------------


def _store_tag(catalog: Catalog) -> str:
    with catalog.env.read() as txn:
        return str(catalog.store.get_meta(txn, "store_id"))[:16]


def _start(
    catalog: Catalog, view: SyncView, since: str | None, store: str
) -> tuple[Position, str | None]:
    """The position a sync from ``since`` starts at, and why it is a full one (None:
    a delta)."""
    if view.newest is not None:
        seq, rows, when = _filtered_rows(catalog, view)
        boundary = _boundary_of(rows, when, view.newest)
    else:
        with catalog.env.read() as txn:
            seq = catalog.store.catalog_seq(txn)
        boundary = None
    full = Position(store, view, None, seq, None, boundary, -1)
    if since is None:
        return full, "no_cursor"
    cursor = decode_cursor(since)
    if cursor is None:
        return full, "unknown_cursor"
    their_store, digest, their_seq, their_boundary = cursor
    if their_store != store:
        return full, "other_store"
    if digest != view.digest():
        return full, "other_view"
    if their_seq > seq:
        return full, "cursor_ahead"
    with catalog.env.read() as txn:
        if catalog.store.changes_between(txn, their_seq, seq) is None:
            return full, "log_trimmed"
    return Position(store, view, their_seq, seq, their_boundary, boundary, -1), None


def _collapse(changes: Iterable[CatalogChange]) -> tuple[set[int], set[int], set[int]]:
    """(removed, added, re-propertied) rows of a run of changes. A row added and removed
    within it counts as removed (never cancelled: see the module docstring)."""
    removed: set[int] = set()
    added: set[int] = set()
    props: set[int] = set()
    for change in changes:
        removed.update(change.removed)
        added.update(change.added)
        props.update(change.properties)
    added -= removed
    props -= removed | added
    return removed, added, props


def _sync_item(row: int, stored: StoredItem, view: SyncView) -> SyncItem:
    item = stored.item
    return SyncItem(
        row,
        item.id,
        item.title if view.titles else None,
        item.body if view.body else None,
        tuple(item.tags),
        dict(item.properties),
        item.published_at,
    )


def _admitted(view: SyncView, found: Sequence[tuple[int, StoredItem]], boundary: Boundary) -> Any:
    """Which of ``found`` (row, item) the view's slice holds, judged on these very
    items (the data the page sends)."""
    mask = np.ones(len(found), dtype=bool)
    if not found:
        return mask
    if view.filters is not None:
        fields = [filter_fields(stored) for _row, stored in found]

        def column(name: str) -> Column:
            return Column([f.get(name, MISSING) for f in fields])

        mask &= evaluate(parse_filter(view.filters), column, len(found))
    if view.newest is not None:
        rows = np.array([row for row, _s in found], np.int64)
        when = np.array([_when(stored) for _row, stored in found], np.float64)
        mask &= _inside(rows, when, boundary)
    return mask


def _candidates(catalog: Catalog, pos: Position) -> tuple[list[int], set[int], set[int]] | None:
    """The rows a page of a sliced full sync or of a delta looks at (sorted, after
    ``pos.after``), the removed and the added rows among them; None when the log
    no longer holds the delta's range. (An unsliced full sync scans the vectors.)"""
    removed: set[int] = set()
    added: set[int] = set()
    rows: set[int] = set()
    if pos.since is not None:
        with catalog.env.read() as txn:
            changes = catalog.store.changes_between(txn, pos.since, pos.seq)
        if changes is None:
            return None
        removed, added, props = _collapse(changes)
        rows = removed | added | props
    if pos.view.newest is not None or (pos.since is None and pos.view.sliced):
        _seq, live, when = _filtered_rows(catalog, pos.view)
        now = _inside(live, when, pos.boundary)
        # a full sync: the slice; a delta: the items the slice's move lets in or pushes out
        band = live[now] if pos.since is None else live[now != _inside(live, when, pos.old)]
        rows.update(band[band > pos.after].tolist())
    return sorted(r for r in rows if r > pos.after), removed, added


def catalog_changes(
    catalog: Catalog,
    since: str | None = None,
    *,
    page: str | None = None,
    encoding: str = "f32",
    filters: Mapping[str, Any] | None = None,
    newest: int | None = None,
    titles: bool = True,
    body: bool = False,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> CatalogPage:
    """One page of a device's catalog sync (see the module docstring).

    ``since``: the cursor the device's last finished sync ended with (None: a first,
    full sync). ``page``: the ``next`` token of the previous page; it carries the
    sync's view, so the view arguments are then ignored (a token that cannot be
    continued restarts with a full sync of the view asked for, ``reason``
    ``page_unusable``, or of its own view when the log moved past it, ``log_trimmed``).
    ``page_size``: at most this many rows named per page (1..5,000)."""
    if isinstance(page_size, bool) or not isinstance(page_size, int):
        raise InvalidInputError("page_size must be an integer")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInputError(f"page_size must be in 1..{MAX_PAGE_SIZE}")
    store = _store_tag(catalog)
    pos = decode_page_token(page) if page is not None else None
    if pos is not None and pos.store == store:
        return _serve(catalog, pos, page_size, None)
    view = check_view(encoding, filters, newest, titles, body)
    start, reason = _start(catalog, view, since if page is None else None, store)
    return _serve(catalog, start, page_size, "page_unusable" if page is not None else reason)


def _serve(catalog: Catalog, pos: Position, page_size: int, reason: str | None) -> CatalogPage:
    """The page at ``pos``; ``reason``: why a full sync, on its first page."""
    view = pos.view
    dim = catalog.keeper.dimension
    first = pos.after < 0
    found: list[tuple[int, StoredItem]] = []
    vectors: list[np.ndarray] = []
    gone: list[int] = []
    more = False
    added: set[int] = set()
    removed: set[int] = set()
    rows: list[int] = []
    scan = pos.since is None and not view.sliced  # every live row, in order
    if not scan:
        picked = _candidates(catalog, pos)
        if picked is None:  # the log moved past the delta's range meanwhile
            restart, _why = _start(catalog, view, None, pos.store)
            return _serve(catalog, restart, page_size, "log_trimmed")
        candidates, removed, added = picked
        more = len(candidates) > page_size
        rows = candidates[:page_size]
    with catalog.env.read() as txn:
        if scan:
            for row, item_id, vector in catalog.store.vectors_from(txn, pos.after + 1, dim):
                if len(rows) == page_size:
                    more = True
                    break
                rows.append(row)
                stored = catalog.store.get_item(txn, item_id)
                if stored is not None and stored.row == row:
                    found.append((row, stored))
                    vectors.append(vector)
        for row in [] if scan else rows:
            hit = None if row in removed else catalog.store.get_vector(txn, row, dim)
            stored = None if hit is None else catalog.store.get_item(txn, hit[0])
            if hit is None or stored is None or stored.row != row:
                gone.append(row)
            else:
                found.append((row, stored))
                vectors.append(hit[1])
    keep = _admitted(view, found, pos.boundary) if view.sliced else np.ones(len(found), bool)
    items: list[SyncItem] = []
    changed: list[SyncItem] = []
    sent: list[np.ndarray] = []
    for k, (row, stored) in enumerate(found):
        if not keep[k]:
            if pos.since is not None:
                gone.append(row)  # left the slice (or never was in it: harmless)
        elif pos.since is not None and not view.sliced and row not in added:
            changed.append(_sync_item(row, stored, view))  # same row: the copy has it
        else:
            items.append(_sync_item(row, stored, view))
            sent.append(vectors[k])
    packed, scales = encode_vectors(
        np.stack(sent) if sent else np.zeros((0, dim), np.float32), view.encoding
    )
    last = rows[-1] if rows else pos.after
    done = not more
    return CatalogPage(
        store=pos.store,
        full=pos.since is None,
        reset=pos.since is None and first,
        reason=reason if first else None,
        catalog_seq=pos.seq,
        dimension=dim,
        view=view,
        items=items,
        vectors=packed,
        scales=scales,
        changed=changed,
        removed=sorted(gone) if pos.since is not None else [],
        next=None if done else encode_page_token(replace(pos, after=last)),
        cursor=encode_cursor(pos.store, view, pos.seq, pos.boundary) if done else None,
    )
