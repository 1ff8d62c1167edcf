"""The FAISS index over catalog rows, and its file beside the LMDB environment.

Three kinds, chosen by catalog size (see ``EngineConfig``):
- ``flat``: exact inner product (vectors are normalized, so cosine). Removal
  deletes the vector from the index at once.
- ``hnsw``: approximate graph search. HNSW cannot remove nodes, so a removed row
  becomes a tombstone that every search excludes through an ID selector; the
  engine rebuilds the graph once tombstones pass a configured share.
- ``ivf``: the vectors, as float16 codes by default (``ivf_codes``), in inverted
  lists around centroids trained on a sample of the catalog; a search scans the
  ``nprobe`` lists of the nearest centroids. Removal deletes the vector at once (a
  hash table maps rows to their list), so no tombstones. With float16 codes the
  vectors as added are kept apart (``row_table.py``): searches return exact scores
  and ``reconstruct`` the exact vectors, as with every other kind.

Labels are catalog rows (see ``catalog_store``). The file records the catalog
sequence number it reflects, so the engine can tell a stale file from a
current one and catch it up from the change log. It is written to a temporary
name and renamed, so a crash never leaves a torn index behind (and a process that
has mapped the old file keeps reading it until it opens the new one).

File layout: FAISS's own serialization first, so that FAISS can map an IVF index's
lists straight from the file (``load(mapped=True)``); for float16 codes, the table of
exact vectors (at a 64-byte boundary: the rows, int64 ascending, then their float32
vectors; mapped too); then a JSON header (``table``: where the table starts and its
row count), its length and ``_TRAILER_MAGIC``. Files of the earlier layout
(``_MAGIC``, length, header, FAISS) are still read, into memory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import struct
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
import numpy.typing as npt

from ..errors import DimensionMismatchError, StoreFormatError
from .ivf_index import IvfCodes, IvfIndex
from .row_table import RowTable

IndexType = Literal["flat", "hnsw", "ivf"]

_MAGIC = b"OWNRIDX1"  # the earlier layout: at the start
_TRAILER_MAGIC = b"OWNRIDX2"  # this layout: at the end
_HEADER_LEN = struct.Struct("<I")

Rows = npt.NDArray[np.int64]
Scores = npt.NDArray[np.float32]


_threads: dict[str, int | None] = {"wanted": None}


def set_faiss_threads(count: int) -> None:
    """The OpenMP thread count of every FAISS call of this module in this process,
    from now on (until then each thread keeps FAISS's own setting)."""
    _threads["wanted"] = count


def use_faiss_threads() -> None:
    """Apply ``set_faiss_threads`` in the calling thread.

    OpenMP keeps the thread count per calling thread: ``faiss.omp_set_num_threads``
    in the thread that opened the engine leaves every other thread (a service's
    request threads) at one OpenMP thread per core, and then each FAISS call from
    such a thread wakes a helper thread that spin-waits after it, taking a core."""
    wanted = _threads["wanted"]
    if wanted is not None and faiss.omp_get_max_threads() != wanted:
        faiss.omp_set_num_threads(wanted)


class VectorIndex:
    """A FAISS index whose labels are catalog rows, plus the tombstones of an HNSW graph.

    An ``ivf`` index is trained on construction: ``training`` holds the sample its
    ``ivf_lists`` centroids are fitted to (k-means, FAISS's fixed seed), and
    ``trained_on`` records how many live items the catalog had then, so the owner
    can tell when the catalog has outgrown the lists.
    """

    def __init__(
        self,
        kind: IndexType,
        dimension: int,
        *,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 96,
        ivf_lists: int = 0,
        nprobe: int = 64,
        training: npt.NDArray[np.float32] | None = None,
        trained_on: int = 0,
        ivf_codes: IvfCodes = "float16",
        _faiss_index: Any = None,
        _mapped: bool = False,
        _table: RowTable | None = None,
    ) -> None:
        self.kind: IndexType = kind
        self.dimension = dimension
        self.ef_search = ef_search
        self.nprobe = nprobe
        self.trained_on = trained_on
        self.seq = 0
        self.path: Path | None = None  # the file a loaded index was read from
        self.dead: set[int] = set()
        self._ivf: IvfIndex | None = None
        if kind == "ivf" and _faiss_index is not None:
            self._ivf = IvfIndex(_faiss_index, mapped=_mapped, table=_table)
        elif kind == "ivf":
            self._ivf = IvfIndex.trained(dimension, ivf_lists, training, ivf_codes)
        if self._ivf is not None:
            self._index = self._ivf.faiss
        elif _faiss_index is not None:
            self._index = _faiss_index
        elif kind == "flat":
            self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))
        elif kind == "hnsw":
            graph = faiss.IndexHNSWFlat(dimension, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            graph.hnsw.efConstruction = ef_construction
            graph.hnsw.efSearch = ef_search
            self._index = faiss.IndexIDMap2(graph)

    # -- size --------------------------------------------------------------------------

    @property
    def ntotal(self) -> int:
        """Vectors in the index, tombstones included."""
        return self._ivf.ntotal if self._ivf is not None else int(self._index.ntotal)

    @property
    def live_count(self) -> int:
        return self.ntotal - len(self.dead)

    @property
    def tombstone_ratio(self) -> float:
        return len(self.dead) / self.ntotal if self.ntotal else 0.0

    def prefetch(self) -> None:
        """Read a mapped index's file once, front to back, into the page cache: the
        first searches would otherwise fault its pages in one at a time from disk
        (``posix_fadvise`` read-ahead did not fill the cache on this VM)."""
        if self.mapped and self.path is not None:
            with contextlib.suppress(OSError), self.path.open("rb", buffering=0) as fh:
                chunk = bytearray(8 * 2**20)
                while fh.readinto(chunk):
                    pass

    # -- changes -----------------------------------------------------------------------

    def add(self, rows: Rows, vectors: npt.NDArray[np.float32]) -> None:
        if len(rows) == 0:
            return
        use_faiss_threads()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension:
            raise DimensionMismatchError(self.dimension, int(vectors.shape[-1]))
        if self._ivf is not None:
            self._ivf.add(np.asarray(rows, dtype=np.int64), vectors)
        else:
            self._index.add_with_ids(vectors, np.ascontiguousarray(rows, dtype=np.int64))

    def remove(self, rows: Iterable[int]) -> None:
        rows = [int(r) for r in rows]
        if not rows:
            return
        use_faiss_threads()
        if self.kind == "flat":
            self._index.remove_ids(faiss.IDSelectorBatch(np.asarray(rows, dtype=np.int64)))
        elif self._ivf is not None:
            self._ivf.remove(np.asarray(rows, dtype=np.int64))
        else:
            self.dead.update(rows)

    @property
    def mapped(self) -> bool:
        """Whether the vectors are read from the mapped file (shared between processes)."""
        return self._ivf is not None and self._ivf.mapped

    @property
    def delta_count(self) -> int:
        """Rows a mapped index holds in memory, added since its file was written."""
        return self._ivf.delta_count if self._ivf is not None else 0

    @property
    def ivf_codes(self) -> IvfCodes | None:
        """How an IVF index holds its vectors (None for the other kinds)."""
        return self._ivf.codes if self._ivf is not None else None

    @property
    def ivf_lists(self) -> int:
        """The number of inverted lists (0 for the other kinds)."""
        return self._ivf.nlist if self._ivf is not None else 0

    # -- queries -----------------------------------------------------------------------

    def search(
        self,
        queries: npt.NDArray[np.float32],
        k: int,
        *,
        allowed: Rows | None = None,
        ef_search: int | None = None,
        nprobe: int | None = None,
        exact: bool = True,
    ) -> tuple[Scores, Rows]:
        """Top-``k`` rows per query by inner product; -1 labels pad missing results.

        ``allowed`` restricts the search to those rows (filtered search inside
        the index); tombstones are always excluded. ``ef_search`` (HNSW) and
        ``nprobe`` (IVF; filtered: the lists' worth of admitted rows it scans, see
        ``ivf_index``) override the index's own breadth for this search. ``exact``
        False: an unfiltered IVF search with float16 codes may score and order the
        rows by their codes (the same rows: for a caller that wants only which).
        """
        use_faiss_threads()
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dimension)
        k = max(1, min(k, self.ntotal)) if self.ntotal else 0
        if k == 0:
            n = queries.shape[0]
            return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
        if self._ivf is not None and allowed is not None:
            return self._ivf.search_within(queries, k, allowed, nprobe=nprobe or self.nprobe)
        if self._ivf is not None:
            return self._ivf.search(queries, k, nprobe=nprobe or self.nprobe, exact=exact)
        selector: Any = None
        if allowed is not None:
            if self.dead:
                dead = np.fromiter(self.dead, dtype=np.int64, count=len(self.dead))
                allowed = np.setdiff1d(allowed, dead)
            selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
        elif self.dead:
            dead = np.fromiter(self.dead, dtype=np.int64, count=len(self.dead))
            inner = faiss.IDSelectorBatch(dead)
            selector = faiss.IDSelectorNot(inner)
        if self.kind == "hnsw":
            # (faiss' bundled type stubs predate search parameters)
            params: Any = faiss.SearchParametersHNSW(  # type: ignore[attr-defined]
                efSearch=max(ef_search or self.ef_search, k), sel=selector
            )
        elif selector is not None:
            params = faiss.SearchParameters(sel=selector)  # type: ignore[call-arg]
        else:
            params = None
        scores, rows = self._index.search(queries, k, params=params)
        return scores, rows

    def reconstruct(self, rows: Rows) -> npt.NDArray[np.float32]:
        """The stored vectors of these rows, bit for bit (all must be present)."""
        if len(rows) == 0:
            return np.zeros((0, self.dimension), np.float32)
        use_faiss_threads()
        if self._ivf is not None:
            return self._ivf.reconstruct(np.asarray(rows, dtype=np.int64))
        return np.asarray(
            self._index.reconstruct_batch(np.ascontiguousarray(rows, dtype=np.int64)),
            dtype=np.float32,
        )

    def labels(self) -> Rows:
        """Every label in the index, tombstones included."""
        if self._ivf is not None:
            return self._ivf.labels()
        return np.asarray(faiss.vector_to_array(self._index.id_map), dtype=np.int64)

    # -- persistence ------------------------------------------------------------------

    def save(self, path: Path, *, fingerprint: str) -> None:
        """Write atomically: temp file in the same folder, fsync, rename (a mapped IVF
        index is first merged into memory: ``IvfIndex.merged``)."""
        fields: dict[str, Any] = {
            "kind": self.kind,
            "dimension": self.dimension,
            "seq": self.seq,
            "dead": sorted(self.dead),
            "fingerprint": fingerprint,
            "ef_search": self.ef_search,
            "nprobe": self.nprobe,
            "trained_on": self.trained_on,
        }
        index = self._ivf.merged() if self._ivf is not None else self._index
        table = self._ivf.table if self._ivf is not None else None
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                # streamed: no in-memory copy of the whole index
                writer = faiss.PyCallbackIOWriter(fh.write)  # type: ignore[attr-defined]
                faiss.write_index(index, writer)
                del writer  # done with FAISS's writer before the header follows
                if table is not None:
                    fields["table"] = _write_table(fh, table, self.labels())
                header = json.dumps(fields).encode()
                fh.write(header)
                fh.write(_HEADER_LEN.pack(len(header)))
                fh.write(_TRAILER_MAGIC)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @staticmethod
    def saved_seq(path: Path, *, fingerprint: str) -> int | None:
        """The catalog sequence number the file at ``path`` reflects, from its header
        alone (None: no file, another model's, or one of the earlier layout)."""
        try:
            with path.open("rb") as fh:
                found = _header(fh)
            if found is None or found[0].get("fingerprint") != fingerprint:
                return None
            return int(found[0]["seq"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    @classmethod
    def load(
        cls, path: Path, *, fingerprint: str, dimension: int, mapped: bool = False
    ) -> VectorIndex:
        """Read an index file; ``StoreFormatError`` if it is torn, foreign or of another
        model. With ``mapped``, an IVF index's lists stay in the file, mapped read-only
        (shared with every process that maps the same file)."""
        with path.open("rb") as fh:  # FileNotFoundError: the caller builds a new index
            try:
                header, index, mapped = _read(fh, path, mapped)
                if header["fingerprint"] != fingerprint or header["dimension"] != dimension:
                    raise StoreFormatError(f"index file {path} belongs to another model")
                entry = header.get("table")
                table = None
                if entry is not None:
                    table = _read_table(fh, _name_of(fh, path), entry, dimension, mapped)
                out = cls(
                    header["kind"],
                    dimension,
                    ef_search=header["ef_search"],
                    nprobe=header.get("nprobe", 64),
                    trained_on=header.get("trained_on", 0),
                    _faiss_index=index,
                    _mapped=mapped,
                    _table=table,
                )
            except StoreFormatError:
                raise
            except Exception as exc:
                raise StoreFormatError(f"unreadable index file {path}: {exc}") from exc
        out.seq = int(header["seq"])
        out.dead = set(header["dead"])
        out.path = path
        return out


def _write_table(fh: Any, table: RowTable, rows: Rows) -> dict[str, int]:
    """Write the table of ``rows`` at the next 64-byte boundary of ``fh``: the rows,
    then their vectors; returns the header's ``table`` entry."""
    start = -fh.tell() % 64 + fh.tell()
    fh.write(bytes(start - fh.tell()))
    fh.write(np.ascontiguousarray(rows, dtype="<i8").tobytes())
    table.write(fh, rows)
    return {"offset": start, "rows": len(rows)}


def _read_table(
    fh: Any, name: str, entry: dict[str, int], dimension: int, mapped: bool
) -> RowTable:
    """The table a header's ``table`` entry points to, its vectors mapped from the file
    (``name``: one that opens the same file as ``fh``) or read into memory."""
    offset, count = int(entry["offset"]), int(entry["rows"])
    fh.seek(offset)
    rows = np.frombuffer(fh.read(8 * count), dtype="<i8").astype(np.int64)
    start = offset + 8 * count
    if len(rows) != count:
        raise ValueError("the table is cut short")
    vectors: npt.NDArray[np.float32]
    if mapped and count:
        vectors = np.memmap(name, dtype="<f4", mode="r", offset=start, shape=(count, dimension))
    else:
        raw = fh.read(4 * count * dimension)
        if len(raw) != 4 * count * dimension:
            raise ValueError("the table is cut short")
        vectors = np.frombuffer(raw, dtype="<f4").reshape(count, dimension)
    return RowTable(dimension, rows, vectors)


@contextlib.contextmanager
def index_file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock, across processes, for writing the index file at ``path``
    (an advisory ``flock`` on a ``.lock`` file beside it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(path.name + ".lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _header(fh: Any) -> tuple[dict[str, Any], int] | None:
    """The header of an open file of this layout and where FAISS's bytes end (None: a
    file of the earlier layout)."""
    if fh.read(len(_MAGIC)) == _MAGIC:
        return None
    end = fh.seek(0, os.SEEK_END)
    tail = len(_TRAILER_MAGIC) + _HEADER_LEN.size
    if end < tail:
        raise ValueError("too short")
    fh.seek(end - tail)
    (hlen,) = _HEADER_LEN.unpack(fh.read(_HEADER_LEN.size))
    if fh.read(len(_TRAILER_MAGIC)) != _TRAILER_MAGIC or hlen > end - tail:
        raise ValueError("bad magic")
    body = end - tail - hlen
    fh.seek(body)
    return json.loads(fh.read(hlen)), body


def _read(fh: Any, path: Path, mapped: bool) -> tuple[dict[str, Any], Any, bool]:
    """The header and FAISS index of an open index file (either layout), and whether
    the index's lists are mapped from the file (asked for, IVF, the current layout)."""
    found = _header(fh)
    if found is None:  # the earlier layout: header first
        (hlen,) = _HEADER_LEN.unpack(fh.read(_HEADER_LEN.size))
        header = json.loads(fh.read(hlen))
        index = faiss.read_index(faiss.PyCallbackIOReader(fh.read))  # type: ignore[attr-defined]
        if fh.read(1):
            raise ValueError("trailing bytes")
        return header, index, False
    header, body = found
    if mapped and header["kind"] == "ivf":
        # through this open file, not its name: a save by another process may have
        # renamed a newer file onto the name since the header was read
        return header, faiss.read_index(_name_of(fh, path), faiss.IO_FLAG_MMAP_IFC), True
    fh.seek(0)
    index = faiss.read_index(faiss.PyCallbackIOReader(fh.read))  # type: ignore[attr-defined]
    end = int(header["table"]["offset"]) if "table" in header else body
    if not 0 <= end - fh.tell() < (64 if "table" in header else 1):
        raise ValueError("the index does not end where the header starts")
    return header, index, False


def _name_of(fh: Any, path: Path) -> str:
    """A name that opens the very file ``fh`` has open (Linux: its /proc descriptor)."""
    by_descriptor = Path(f"/proc/self/fd/{fh.fileno()}")
    return str(by_descriptor) if by_descriptor.exists() else str(path)
