"""Content neighbourhoods: each item's nearest items by the frozen embeddings.

They are catalog data (no user data goes into them), kept in LMDB beside the
catalog (``storage/neighbour_lists.py``) and maintained from the catalog change
log: an add compares the new items with every item (they enter the lists they
beat), a delete recomputes the lists that held it (the reverse index says
which), a re-embed is both. The neighbour scorer then sums over the lists of
the items a user rated instead of comparing every candidate with every rated
item.

Similarity is the cosine of the embeddings centred on a stored *centre* (so
that close means alike, not typical): the catalog's mean when the lists were
last built from scratch, taken again (a rebuild) once the catalog has doubled
or halved since.

Exact, so that maintaining the lists step by step gives the same lists as a
build from scratch on the same centre: centred vectors are scaled to unit
length and rounded to integers (``SCALE``); their dot products are integers
below 2**24, which float32 BLAS computes exactly in any order. A list is the
``k`` other items with the largest similarity, ties broken by the lower row.

Cheap changes are applied right after the catalog write that made them; a
change costing more than ``EngineConfig.neighbour_sync_budget`` multiply-adds
(a large batch into a large catalog) is applied by a background thread,
computed outside any write transaction and committed only if nobody else moved
the lists meanwhile; a store's processes take turns at it (``LOCK_FILE``), so one
computes and the others find the lists current. Until then the lists of the last
maintained state serve (items deleted since are never candidates).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..storage.catalog_store import CatalogChange, CatalogStore, net_change
from ..storage.lmdb_env import LmdbEnvironment
from ..storage.neighbour_lists import NeighbourLists
from ..storage.process_lock import ProcessLock
from .blas import single_threaded

log = logging.getLogger(__name__)

SCALE = 2048  # unit vector -> integers; |dot| <= (SCALE + 10)**2 < 2**24: exact in float32
SIM_SCALE = float(SCALE * SCALE)  # a stored similarity / SIM_SCALE ~ cosine
_BLOCK_CELLS = 2**24  # similarities computed per block (64 MiB of float32)
_NO_FLOOR = -(2**62)  # a list shorter than k: any row enters
_NO_ROWS = np.zeros(0, np.int64)
_NO_SIMS = np.zeros(0, np.int32)
LOCK_FILE = "catalog.neighbours.lock"  # beside the LMDB folder


class _Closing(Exception):
    """The engine is closing: a background step stops where it is."""


def quantize(vectors: np.ndarray, centre: np.ndarray | None = None) -> np.ndarray:
    """``vectors`` (rows) minus ``centre``, scaled to unit length and rounded at
    ``SCALE``, as float32 integers. Row by row (a row's result never depends on the
    other rows).

    >>> quantize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    array([[1229., 1638.],
           [   0.,    0.]], dtype=float32)
    """
    v = np.asarray(vectors, dtype=np.float64)
    if centre is not None:
        v = v - centre
    norms = np.sqrt((v * v).sum(axis=1))
    scale = np.divide(SCALE, norms, out=np.zeros_like(norms), where=norms > 0)
    return np.asarray(np.rint(v * scale[:, None]), dtype=np.float32)


def top_lists(
    sims: np.ndarray, own: np.ndarray, rows: np.ndarray, k: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each row of ``sims`` (owners x live items ``rows``, exact integers) -> its top
    ``k`` (rows, similarities), best first, ties to the lower row; ``own`` is each
    owner's own column, left out.

    >>> top_lists(np.array([[9.0, 5.0, 7.0, 7.0]]), np.array([0]), np.arange(4), 2)
    [(array([2, 3]), array([7, 7], dtype=int32))]
    """
    count, width = sims.shape
    kk = min(k, width - 1)
    if kk <= 0 or count == 0:
        return [(np.zeros(0, np.int64), np.zeros(0, np.int32)) for _ in range(count)]
    sims = sims.copy()
    sims[np.arange(count), own] = -np.inf
    stride = 8 if width >= 64 * kk else 1
    if stride > 1:
        # the k-th value among every 8th column is at most the row's true k-th value:
        # what passes it holds the top k (about 8 k entries per row)
        sample = sims[:, ::stride]
        floor = np.partition(sample, sample.shape[1] - kk, axis=1)[:, sample.shape[1] - kk]
    else:
        part = np.argpartition(sims, width - kk, axis=1)[:, width - kk :]
        floor = np.take_along_axis(sims, part, axis=1).min(axis=1)
    owner, col = np.nonzero(sims >= floor[:, None])  # the top k, ties at its edge, maybe more
    values = sims[owner, col]
    order = np.lexsort((col, -values, owner))
    owner, col, values = owner[order], col[order], values[order]
    starts = np.searchsorted(owner, np.arange(count))
    return [
        (rows[col[lo : lo + kk]], values[lo : lo + kk].astype(np.int32)) for lo in starts.tolist()
    ]


def merge_list(
    rows: np.ndarray, sims: np.ndarray, new_rows: np.ndarray, new_sims: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` of a list and some more entries (same order as ``top_lists``)."""
    all_rows = np.concatenate([rows, new_rows])
    all_sims = np.concatenate([sims, new_sims]).astype(np.int64)
    order = np.lexsort((all_rows, -all_sims))[:k]
    return all_rows[order], all_sims[order].astype(np.int32)


class _Matrix:
    """The quantized vectors of the live rows as of catalog sequence ``seq``
    (rows ascending: new rows are always the largest, so adds append)."""

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self.centre: np.ndarray | None = None
        self.seq = -1
        self.rows = np.zeros(0, np.int64)
        self._buffer = np.zeros((0, dimension), np.float32)

    @property
    def q(self) -> np.ndarray:
        return self._buffer[: len(self.rows)]

    def positions(self, rows: Iterable[int]) -> np.ndarray:
        wanted = np.fromiter(rows, np.int64)
        at = np.searchsorted(self.rows, wanted)
        if len(wanted) and (at.max(initial=0) >= len(self.rows) or (self.rows[at] != wanted).any()):
            raise KeyError("a row is not live")
        return at

    def sync(self, txn: Any, store: CatalogStore, centre: np.ndarray) -> None:
        """Catch up with the catalog as seen by ``txn``, centred on ``centre``."""
        seq = store.catalog_seq(txn)
        same_centre = self.centre is not None and np.array_equal(self.centre, centre)
        if seq == self.seq and same_centre:
            return
        self.centre = centre
        changes = store.changes_since(txn, self.seq) if self.seq >= 0 and same_centre else None
        if changes is None:
            found = list(store.iter_vectors(txn, self.dimension))
            self.rows = np.array([r for r, _i, _v in found], np.int64)
            vectors = np.stack([v for _r, _i, v in found]) if found else np.zeros((0, 0))
            self._buffer = (
                quantize(vectors, centre) if found else np.zeros((0, self.dimension), np.float32)
            )
        else:
            net = net_change(changes)
            if net.removed:
                keep = ~np.isin(self.rows, np.asarray(net.removed, np.int64))
                self._buffer = np.ascontiguousarray(self.q[keep])
                self.rows = self.rows[keep]
            added = [
                (row, hit[1])
                for row in net.added
                if (hit := store.get_vector(txn, row, self.dimension)) is not None
            ]
            if added:
                self._append(
                    np.array([r for r, _v in added], np.int64),
                    quantize(np.stack([v for _r, v in added]), centre),
                )
        self.seq = seq

    def _append(self, rows: np.ndarray, q: np.ndarray) -> None:
        if len(self.rows) and rows.min() <= self.rows[-1]:
            raise AssertionError("catalog rows are allocated in increasing order")
        n = len(self.rows)
        if n + len(rows) > len(self._buffer):
            grown = np.zeros(
                (max(2 * len(self._buffer), n + len(rows), 1024), self.dimension), np.float32
            )
            grown[:n] = self.q
            self._buffer = grown
        self._buffer[n : n + len(rows)] = q
        self.rows = np.concatenate([self.rows, rows])


@dataclass
class _Plan:
    """What one maintenance step writes: computed from a snapshot, committed only if
    the lists are still in the state it started from."""

    seq_from: int | None
    k_from: int | None
    seq_to: int
    clear: bool = False  # a build from scratch, on ``centre`` (taken at ``centred_count`` items)
    centre: np.ndarray | None = None
    centred_count: int = 0
    puts: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    deletes: set[int] = field(default_factory=set)
    reverse: dict[int, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class NeighbourStatus:
    """Where the lists stand: current when built for the catalog's sequence number."""

    k: int
    lists: int
    seq: int | None
    catalog_seq: int

    @property
    def current(self) -> bool:
        return self.seq == self.catalog_seq


class ContentNeighbours:
    """Maintains the neighbour lists and reads them for the scorer."""

    def __init__(
        self,
        env: LmdbEnvironment,
        store: CatalogStore,
        dimension: int,
        k: int,
        sync_budget: int,
        in_memory_entries: int = 0,
        held_entries: int = 0,
    ) -> None:
        self.env = env
        self.store = store
        self.lists = NeighbourLists(env, in_memory_entries, held_entries)
        self.k = k
        self.sync_budget = sync_budget
        self.dimension = dimension
        self._matrix = _Matrix(dimension)
        self._lock = threading.Lock()  # one maintenance step at a time in this process
        self._turn = ProcessLock(env.path.with_name(LOCK_FILE))  # and in the store
        self._thread: threading.Thread | None = None
        self._again = threading.Event()
        self._closing = False
        # each full list's last entry, for the lists' (seq, k) it was read at
        self._floors: tuple[tuple[int | None, int | None], dict[int, tuple[int, int]]] | None = None

    # -- reading --------------------------------------------------------------------

    def status(self) -> NeighbourStatus:
        with self.env.read() as txn:
            return NeighbourStatus(
                self.k,
                self.lists.count(txn),
                self.lists.seq(txn),
                self.store.catalog_seq(txn),
            )

    def behind(self, txn: Any) -> bool:
        return self.k > 0 and (
            self.lists.seq(txn) != self.store.catalog_seq(txn) or self.lists.k(txn) != self.k
        )

    def of_rows(
        self, txn: Any, rows: Sequence[int | None]
    ) -> list[tuple[np.ndarray, np.ndarray] | None]:
        """The stored list of each row (None: no list, or no row), as of ``txn``.

        Lists built with another ``k`` (before a rebuild finished) are used as they are."""
        return [None if row is None else self.lists.get(txn, row) for row in rows]

    # -- maintaining ----------------------------------------------------------------------

    def catch_up(self) -> None:
        """Bring the lists up to date now if that is cheap, else in the background."""
        if self.k <= 0:
            return
        if not self.update(budget=self.sync_budget):
            self.start_background()

    def update(self, budget: int | None = None) -> bool:
        """Maintenance steps until the lists are current; False when the next step
        would cost more than ``budget`` multiply-adds, or another thread of this
        process is at it (it then goes on until they are current)."""
        if self.k <= 0:
            return True
        if not self._lock.acquire(blocking=budget is None):
            self._again.set()
            return False
        try:
            with self.env.read() as txn:
                if not self.behind(txn):
                    return True
            # the store's other processes take turns at it too (then find it done)
            if not self._take_turn(wait=budget is None):
                self._again.set()
                return False
            try:
                for _attempt in range(100):
                    with self.env.read() as txn:
                        if not self.behind(txn):
                            return True
                        plan = self._plan(txn, budget)
                    if plan is None:
                        return False
                    self._commit(plan)
                raise RuntimeError(
                    "neighbour lists kept racing with catalog writes"
                )  # pragma: no cover
            finally:
                self._turn.release()
        finally:
            self._lock.release()

    def _take_turn(self, wait: bool) -> bool:
        if self._turn.acquire(wait, give_up=lambda: self._closing):
            return True
        self._check_closing()  # a closing engine stops waiting
        return False

    def rebuild(self) -> NeighbourStatus:
        """Build every list from scratch (and wait for it)."""
        with self._lock:
            self._take_turn(wait=True)
            try:
                with self.env.read() as txn:
                    plan = self._plan_full(txn, *self._catalog_centre(txn))
                plan.seq_from, plan.k_from = self._state()
                self._commit(plan, check=False)
            finally:
                self._turn.release()
        return self.status()

    def check(self) -> list[int]:
        """The rows whose stored list (or reverse-index entry) differs from a build
        from scratch of the catalog as it is now; writes nothing. Empty when current."""
        with self._lock, self.env.read() as txn:
            centre = self.lists.centre(txn) or self._catalog_centre(txn)
            plan = self._plan_full(txn, *centre)
            stored = {owner: (rows, sims) for owner, rows, sims in self.lists.iter_lists(txn)}
            reverse = dict(self.lists.iter_owners(txn))
        wrong = {
            owner
            for owner in set(stored) | set(plan.puts)
            if owner not in stored
            or owner not in plan.puts
            or not all(
                np.array_equal(a, b) for a, b in zip(stored[owner], plan.puts[owner], strict=True)
            )
        }
        wrong |= {
            row
            for row in set(reverse) | set(plan.reverse)
            if not np.array_equal(reverse.get(row, _NO_ROWS), plan.reverse.get(row, _NO_ROWS))
        }
        return sorted(wrong)

    def start_background(self) -> None:
        """Run ``update`` on a background thread (one per process)."""
        self._again.set()
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(
            target=self._background, name="ownrank-neighbours", daemon=True
        )
        self._thread.start()

    def _background(self) -> None:
        while self._again.is_set() and not self._closing:
            self._again.clear()
            try:
                self.update()
            except _Closing:
                return
            except Exception:  # the lists stay as they were; the next write retries
                log.exception("maintaining the content neighbourhoods failed")
                return

    def close(self) -> None:
        self._closing = True
        thread = self._thread
        if thread is not None:
            thread.join()

    # -- one step ------------------------------------------------------------------

    def _state(self) -> tuple[int | None, int | None]:
        with self.env.read() as txn:
            return self.lists.seq(txn), self.lists.k(txn)

    def _catalog_centre(self, txn: Any) -> tuple[np.ndarray, int]:
        """The catalog's mean embedding now, and its item count."""
        moments = self.store.get_moments(txn, self.dimension)
        if moments.count == 0:
            return np.zeros(self.dimension), 0
        return moments.total / moments.count, moments.count

    def _plan(self, txn: Any, budget: int | None) -> _Plan | None:
        seq, k = self.lists.seq(txn), self.lists.k(txn)
        centre = self.lists.centre(txn)
        live = int(txn.stat(self.store.vectors)["entries"])
        # re-centred (built from scratch) once the catalog doubled or halved since
        drifted = centre is None or live > 2 * max(centre[1], 1) or 2 * live < centre[1]
        fresh = seq is None or k != self.k or drifted
        changes = None if fresh or seq is None else self.store.changes_since(txn, seq)
        if changes is None or centre is None:
            if budget is not None and live * live * self.dimension > budget:
                return None
            plan = self._plan_full(txn, *self._catalog_centre(txn))
        else:
            net = net_change(changes)
            cost = (2 * len(net.added) + self.k * len(net.removed)) * live * self.dimension
            if budget is not None and cost > budget:
                return None
            plan = self._plan_changes(txn, net, centre[0])
        plan.seq_from, plan.k_from = seq, k
        return plan

    def _plan_full(self, txn: Any, centre: np.ndarray, count: int) -> _Plan:
        self._matrix.sync(txn, self.store, centre)
        m = self._matrix
        plan = _Plan(None, None, m.seq, clear=True, centre=centre, centred_count=count)
        owners: list[np.ndarray] = []
        members: list[np.ndarray] = []
        for start, found in self._lists_for(np.arange(len(m.rows))):
            for i, (rows, sims) in enumerate(found):
                owner = int(m.rows[start + i])
                plan.puts[owner] = (rows, sims)
                owners.append(np.full(len(rows), owner, np.int64))
                members.append(rows)
            self._check_closing()
        all_owners = np.concatenate(owners) if owners else _NO_ROWS
        if len(all_owners):
            all_members = np.concatenate(members)
            order = np.lexsort((all_owners, all_members))
            all_owners, all_members = all_owners[order], all_members[order]
            cuts = np.flatnonzero(np.diff(all_members)) + 1
            for group, member in zip(
                np.split(all_owners, cuts), all_members[np.r_[0, cuts]], strict=True
            ):
                plan.reverse[int(member)] = group
        return plan

    def _plan_changes(self, txn: Any, net: CatalogChange, centre: np.ndarray) -> _Plan:
        self._matrix.sync(txn, self.store, centre)
        m = self._matrix
        plan = _Plan(None, None, m.seq)
        live = set(m.rows.tolist())
        gained: dict[int, set[int]] = defaultdict(set)  # row -> owners whose lists gained it
        lost: dict[int, set[int]] = defaultdict(set)
        dirty: set[int] = set()
        for row in net.removed:
            old = self.lists.get(txn, row)
            if old is not None:
                plan.deletes.add(row)
                for member in old[0].tolist():
                    lost[member].add(row)
            dirty.update(self.lists.owners_of(txn, row).tolist())
            plan.reverse[row] = np.zeros(0, np.int64)
        added = [row for row in net.added if row in live]
        redo = sorted((dirty & live) | set(added))
        for start, found in self._lists_for(m.positions(redo)):
            for i, (rows, sims) in enumerate(found):
                owner = redo[start + i]
                old = self.lists.get(txn, owner)
                self._changed(plan, owner, old, rows, sims, gained, lost)
        if added:
            self._merge_added(txn, plan, added, set(redo), gained, lost)
        for member in set(gained) | set(lost):
            if member in plan.reverse:  # removed: its reverse entry goes
                continue
            owners = set(self.lists.owners_of(txn, member).tolist())
            owners = (owners - lost.get(member, set())) | gained.get(member, set())
            plan.reverse[member] = np.array(sorted(owners), np.int64)
        return plan

    def _merge_added(
        self,
        txn: Any,
        plan: _Plan,
        added: list[int],
        skip: set[int],
        gained: dict[int, set[int]],
        lost: dict[int, set[int]],
    ) -> None:
        """New rows enter the lists of the other owners whose last entry they beat."""
        m = self._matrix
        floors = self._floors_of(txn)
        new_rows = np.asarray(added, np.int64)
        new_q = m.q[m.positions(added)]
        others = np.flatnonzero(~np.isin(m.rows, np.fromiter(skip, np.int64, len(skip))))
        other_rows = m.rows[others]
        floor_sim = np.empty(len(others), np.int64)
        floor_row = np.empty(len(others), np.int64)
        for i, row in enumerate(other_rows.tolist()):
            floor_sim[i], floor_row[i] = floors.get(row, (_NO_FLOOR, 0))
        step = max(1, _BLOCK_CELLS // max(1, len(added)))
        for lo in range(0, len(others), step):
            self._check_closing()
            chunk = slice(lo, lo + step)
            with single_threaded():
                sims = (m.q[others[chunk]] @ new_q.T).astype(np.int64)
            fs, fr = floor_sim[chunk, None], floor_row[chunk, None]
            enters = (sims > fs) | ((sims == fs) & (new_rows[None, :] < fr))
            for i in np.flatnonzero(enters.any(axis=1)).tolist():
                owner = int(other_rows[lo + i])
                old = self.lists.get(txn, owner)
                rows, old_sims = old if old is not None else (_NO_ROWS, _NO_SIMS)
                mask = enters[i]
                merged = merge_list(rows, old_sims, new_rows[mask], sims[i][mask], self.k)
                self._changed(plan, owner, old, *merged, gained, lost)

    def _floors_of(self, txn: Any) -> dict[int, tuple[int, int]]:
        """Each full list's last entry (similarity, row): what a new row must beat to
        enter. Lists shorter than ``k`` are absent (anything enters). Kept in memory
        for the lists' state it was read at."""
        state = (self.lists.seq(txn), self.lists.k(txn))
        if self._floors is None or self._floors[0] != state:
            floors = {
                owner: (int(sims[-1]), int(rows[-1]))
                for owner, rows, sims in self.lists.iter_lists(txn)
                if len(rows) >= self.k
            }
            self._floors = (state, floors)
        return self._floors[1]

    def _check_closing(self) -> None:
        if self._closing:
            raise _Closing

    def _changed(
        self,
        plan: _Plan,
        owner: int,
        old: tuple[np.ndarray, np.ndarray] | None,
        rows: np.ndarray,
        sims: np.ndarray,
        gained: dict[int, set[int]],
        lost: dict[int, set[int]],
    ) -> None:
        before = set() if old is None else set(old[0].tolist())
        after = set(rows.tolist())
        for member in before - after:
            lost[member].add(owner)
        for member in after - before:
            gained[member].add(owner)
        plan.puts[owner] = (rows, sims)

    def _lists_for(
        self, positions: np.ndarray
    ) -> Iterable[tuple[int, list[tuple[np.ndarray, np.ndarray]]]]:
        """Full lists of the owners at ``positions``, in blocks: (offset, lists)."""
        m = self._matrix
        q = m.q
        step = max(1, _BLOCK_CELLS // max(1, len(m.rows)))
        for lo in range(0, len(positions), step):
            chunk = positions[lo : lo + step]
            with single_threaded():
                sims = q[chunk] @ q.T
            yield lo, top_lists(sims, chunk, m.rows, self.k)

    def _commit(self, plan: _Plan, check: bool = True) -> bool:
        with self.env.write() as txn:
            if check and (self.lists.seq(txn), self.lists.k(txn)) != (plan.seq_from, plan.k_from):
                return False  # another process moved the lists: plan again from there
            before = self.lists.version(txn)
            if plan.clear:
                self.lists.clear(txn)
                assert plan.centre is not None
                self.lists.set_centre(txn, plan.centre, plan.centred_count)
            for owner in plan.deletes:
                self.lists.delete(txn, owner)
            for owner, (rows, sims) in plan.puts.items():
                self.lists.put(txn, owner, rows, sims)
            for row, owners in plan.reverse.items():
                self.lists.put_owners(txn, row, owners)
            self.lists.set_state(txn, plan.seq_to, self.k)
            after, snapshot = self.lists.version(txn), txn.id()
        if self.lists.held is not None:  # (the lists held by owner)
            written = {o: None for o in plan.deletes} | dict(plan.puts)
            self.lists.held.advance(before, after, snapshot, self.k, written, plan.clear)
        known = self._floors
        if plan.clear or (known is not None and known[0] == (plan.seq_from, plan.k_from)):
            floors = {} if plan.clear or known is None else known[1]
            for owner in plan.deletes:
                floors.pop(owner, None)
            for owner, (rows, sims) in plan.puts.items():
                if len(rows) >= self.k:
                    floors[owner] = (int(sims[-1]), int(rows[-1]))
                else:
                    floors.pop(owner, None)
            self._floors = ((plan.seq_to, self.k), floors)
        else:
            self._floors = None
        return True
