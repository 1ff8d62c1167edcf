"""The keeper's index file: reading it, writing it, and mapping an IVF index from it.

The file is a cache of the catalog's vectors at one catalog sequence number
(``storage/vector_index``): a missing, foreign or unreadable file is rebuilt from
LMDB. With ``EngineConfig.index_mmap`` an IVF index is mapped from the file, so
every process opening the store shares one copy of the vectors in the page cache.
Processes write the file in turn (``index_file_lock``), and write it only when it
does not already hold their catalog state: workers that start, grow or close
together write it once and map the same file.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from ..errors import StoreFormatError
from ..storage.vector_index import VectorIndex, index_file_lock
from .config import EngineConfig

log = logging.getLogger(__name__)


class IndexFile:
    """Where the index file is, whose it is (``stamp``), and the last state saved."""

    def __init__(self, path: Path, stamp: str, dimension: int, config: EngineConfig) -> None:
        self.path = path
        self.stamp = stamp
        self.dimension = dimension
        self.config = config
        self.saved_seq = -1  # the catalog sequence number this process last wrote or read

    def load(self) -> VectorIndex | None:
        """The index in the file (mapped, if so configured and IVF); None: build one.
        With ``index_mmap`` processes open it in turn, and the first to find an IVF
        file of the earlier layout (which is read into memory) rewrites it, so the
        others map it rather than each holding a copy while it is converted."""
        if not self.config.index_mmap:
            return self._read()
        try:
            with index_file_lock(self.path):
                index = self._read()
                due = index is not None and self.due(index)
                return self._write_and_map(index) if due and index is not None else index
        except OSError as exc:  # no lock file here (a read-only folder): read it alone
            log.warning("index file lock: %s", exc)
            return self._read()

    def _read(self) -> VectorIndex | None:
        try:
            index = VectorIndex.load(
                self.path,
                fingerprint=self.stamp,
                dimension=self.dimension,
                mapped=self.config.index_mmap,
            )
        except FileNotFoundError:
            log.info("no index file at %s; building it from LMDB", self.path)
            return None
        except StoreFormatError as exc:
            log.warning("%s; rebuilding the index from LMDB", exc)
            return None
        self.saved_seq = index.seq
        return index

    def due(self, index: VectorIndex) -> bool:
        """Whether ``remapped`` would write or map: an IVF index (``index_mmap``) held
        in memory, or a mapped one whose delta holds more than a quarter of its rows."""
        if not self.config.index_mmap or index.kind != "ivf":
            return False
        return not index.mapped or 4 * index.delta_count > index.ntotal

    def remapped(self, index: VectorIndex) -> VectorIndex:
        """``index`` written to the file and read back mapped when ``due`` (the file is
        mapped as it is if it already holds ``index``'s catalog state); ``index``
        itself otherwise, or when the file cannot be written."""
        if not self.due(index):
            return index
        try:
            with index_file_lock(self.path):
                return self._write_and_map(index)
        except OSError as exc:
            log.warning("the index stays in this process's memory: %s", exc)
            return index

    def _write_and_map(self, index: VectorIndex) -> VectorIndex:
        """``remapped``'s work, under the file lock (the caller holds it)."""
        mapped = self._load_mapped()
        if mapped is None or not _same(mapped, index):
            try:
                index.save(self.path, fingerprint=self.stamp)
            except OSError as exc:
                log.warning("the index stays in this process's memory: %s", exc)
                return index
            mapped = self._load_mapped()
        if mapped is None or not _same(mapped, index):  # replaced by another process
            return index
        self.saved_seq = mapped.seq
        return mapped

    def _load_mapped(self) -> VectorIndex | None:
        """The file's index, mapped, if it holds a mappable index of this store."""
        try:
            found = VectorIndex.load(
                self.path, fingerprint=self.stamp, dimension=self.dimension, mapped=True
            )
        except (FileNotFoundError, StoreFormatError):
            return None
        return found if found.mapped else None

    def save(self, index: VectorIndex, force: bool = False) -> bool:
        """Write ``index`` if it moved since this process last read or wrote the file.
        A mapped index is saved under the file lock, and not when the file already
        holds its catalog state (each write of a mapped index first copies it into
        memory: ``IvfIndex.merged``)."""
        if not force and index.seq == self.saved_seq:
            return False
        with index_file_lock(self.path) if index.mapped else contextlib.nullcontext():
            written = index.mapped and not force  # by another process, maybe
            if not written or VectorIndex.saved_seq(self.path, fingerprint=self.stamp) != index.seq:
                index.save(self.path, fingerprint=self.stamp)
        self.saved_seq = index.seq
        return True


def _same(saved: VectorIndex, index: VectorIndex) -> bool:
    """Whether the file's index holds what ``index`` holds: the same catalog state in
    the same lists and codes (a retrain or a change of codes at the same catalog state
    must be written, not answered by the file)."""
    layout = (saved.ivf_codes, saved.ivf_lists, saved.trained_on)
    return saved.seq == index.seq and layout == (index.ivf_codes, index.ivf_lists, index.trained_on)
