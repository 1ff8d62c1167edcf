"""One LMDB environment under a data directory, with named databases per concern.

Guarantees (those of LMDB, which we rely on rather than re-implement):
- a write transaction is all-or-nothing, also across a crash or a kill;
- many readers in many processes never block the single writer, and always
  see a consistent snapshot;
- one writer at a time across processes (LMDB's lock file serializes them).

An environment handle must not cross ``fork()``: each process opens its own.
``LmdbEnvironment`` remembers the pid that opened it and refuses to be used
from a child, which is the classic way to corrupt an LMDB file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lmdb

from ..errors import StoreFormatError

# Names of the named databases, in one place: the catalog's four, the user
# records (one key per user), the shared statistics derived from users, and what
# an erasure leaves behind (keyed ids and times only, see engine/erasure_log.py),
# and the catalog's content neighbourhoods (catalog data, see neighbour_lists.py).
DATABASES = (
    "meta",
    "items",
    "vectors",
    "catalog_log",
    "users",
    "shared_counts",
    "popular_rank",
    "tombstones",
    "erasure_journal",
    "neighbours",
    "neighbour_of",
    "co_pairs",
    "item_keys",
)


class LmdbEnvironment:
    """An open LMDB environment and its named databases."""

    def __init__(
        self,
        path: Path,
        *,
        databases: tuple[str, ...] = DATABASES,
        map_size: int = 64 * 2**30,
        max_readers: int = 512,
        readonly: bool = False,
        sync: bool = True,
    ) -> None:
        self.path = Path(path)
        if not readonly:
            self.path.mkdir(parents=True, exist_ok=True)
        try:
            self._env = lmdb.open(
                str(self.path),
                map_size=map_size,
                max_dbs=len(databases) + 4,
                max_readers=max_readers,
                readonly=readonly,
                subdir=True,
                lock=True,
                # Durability: every commit is fsynced (sync=True, metasync=True).
                # sync=False is for tests and benchmarks of logic only: a system
                # crash may then lose (or, on some file systems, corrupt) commits.
                sync=sync,
                metasync=sync,
                readahead=False,
            )
        except lmdb.Error as exc:
            raise StoreFormatError(f"cannot open LMDB environment at {self.path}: {exc}") from exc
        self._pid = os.getpid()
        self._dbs: dict[str, Any] = {}
        for name in databases:
            self._dbs[name] = self._env.open_db(name.encode(), create=not readonly)

    def db(self, name: str) -> Any:
        return self._dbs[name]

    def _check_pid(self) -> None:
        if os.getpid() != self._pid:
            raise RuntimeError(
                "an LMDB environment was used across fork(); open the engine in each process"
            )

    @contextmanager
    def read(self) -> Iterator[Any]:
        """A read-only snapshot transaction."""
        self._check_pid()
        with self._env.begin(write=False, buffers=False) as txn:
            yield txn

    @contextmanager
    def write(self) -> Iterator[Any]:
        """A write transaction: committed on normal exit, aborted on any exception."""
        self._check_pid()
        with self._env.begin(write=True) as txn:
            yield txn

    def stat(self) -> dict[str, Any]:
        info = self._env.info()
        stat = self._env.stat()
        with self.read() as txn:
            entries = {name: txn.stat(db)["entries"] for name, db in self._dbs.items()}
        return {
            "map_size": info["map_size"],
            "used_bytes": (info["last_pgno"] + 1) * stat["psize"],
            "page_size": stat["psize"],
            "entries": entries,
        }

    def last_txn_id(self) -> int:
        """LMDB's id of the last committed transaction (a store-wide sequence number)."""
        self._check_pid()
        return int(self._env.info()["last_txnid"])

    def copy_to(self, path: Path) -> None:
        """A compacted copy (free pages left out) of this environment into the empty
        directory ``path``: a consistent snapshot, safe while others read and write."""
        self._check_pid()
        Path(path).mkdir(parents=True, exist_ok=True)
        self._env.copy(str(path), compact=True)

    def file_size(self) -> int:
        data = self.path / "data.mdb"
        return data.stat().st_size if data.exists() else 0

    def close(self) -> None:
        if os.getpid() == self._pid:
            self._env.close()
