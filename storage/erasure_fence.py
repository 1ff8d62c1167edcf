"""The erasure fence: which users were erased, kept outside every backup set.

Tombstones and the erasure journal live in the data environment, so restoring a data
backup taken before an erasure drops them, and they expire. The fence is the record
of erasures that no restore rolls back: one small append-only file of its own
(``DATA_DIR/erasure-fence/fence.log``), neither in the data environment nor in the
keystore, so neither kind of backup holds it and neither kind of restore replaces it.

It holds only keyed user ids (the 16-byte HMAC of the user id with the store's
secret, never the raw id), times and a *generation* per user:

- ``erased(key, at, generation)``: the user's generation ``generation`` was erased;
- ``recreated(key, at, generation)``: the user was explicitly re-created and starts
  generation ``generation`` (one more than any before), so anything stamped with an
  older generation (an export, a device copy, a restored record) is refused.

The latest entry of a key says where the user stands. By default entries are kept as
long as the store exists (a suppression list of pseudonymous ids: the minimum needed
to honour an erasure); with a retention, entries older than it are dropped and the
fence's *horizon* (the time since which it remembers every erasure) moves forward,
and restoring a backup older than the horizon is refused (``backup.py``).

Format: a 16-byte magic line, then 48-byte entries (kind, key, time, generation,
CRC-32), each written with one ``write`` under an exclusive ``flock`` and fsynced
before the erasure goes on. A crash can only leave a torn last entry, which readers
skip and the next writer cuts off. Any number of processes may share the file.
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Protocol

FENCE_DIR = "erasure-fence"
FENCE_FILE = "fence.log"
MAGIC = b"ownrank-fence-1\n"
_ENTRY = struct.Struct(">B7x16sQQ")  # kind, padding, user key, time, generation
_CRC = struct.Struct(">I4x")
ENTRY_SIZE = _ENTRY.size + _CRC.size  # 48
KEY_SIZE = 16


class FenceKind(IntEnum):
    erased = 1
    recreated = 2
    horizon = 3  # the fence forgot entries older than ``at`` (key and generation: zero)


@dataclass(frozen=True)
class FenceEntry:
    kind: FenceKind
    key: bytes
    at: int  # Unix seconds
    generation: int

    def pack(self) -> bytes:
        body = _ENTRY.pack(int(self.kind), self.key, self.at, self.generation)
        return body + _CRC.pack(zlib.crc32(body))


@dataclass(frozen=True)
class FenceState:
    """Where one user stands: their latest entry, and the time of their last erasure."""

    erased: bool  # the latest entry is an erasure: nothing of the user may exist
    generation: int  # the erased generation, or the current one after a re-creation
    at: int  # the time of the latest entry
    last_erased_at: int  # the time of the latest erasure (also after a re-creation)


class ErasureFence(Protocol):
    """What the engine needs of a fence; a shared store (several service nodes) can
    implement the same methods (``FileErasureFence`` documents each)."""

    def state(self, key: bytes) -> FenceState | None: ...

    def states(self) -> dict[bytes, FenceState]: ...

    def horizon(self) -> int: ...

    def erased(self, key: bytes, at: int, generation: int) -> None: ...

    def recreated(self, key: bytes, at: int, generation: int) -> None: ...

    def add(self, entries: Iterable[FenceEntry]) -> None: ...

    def expire(self, now: int, retention_seconds: float | None) -> int: ...


def fence_path(data_dir: Path) -> Path:
    return Path(data_dir) / FENCE_DIR / FENCE_FILE


def _decode(raw: bytes) -> Iterator[FenceEntry]:
    """The entries of a fence file's bytes after the magic line (a torn or corrupt
    entry is skipped: only the last one can be torn, by a crash mid-append)."""
    for start in range(0, len(raw) - ENTRY_SIZE + 1, ENTRY_SIZE):
        chunk = raw[start : start + ENTRY_SIZE]
        body = chunk[: _ENTRY.size]
        if _CRC.unpack(chunk[_ENTRY.size :])[0] != zlib.crc32(body):
            continue
        kind, key, at, generation = _ENTRY.unpack(body)
        if kind in FenceKind._value2member_map_:
            yield FenceEntry(FenceKind(kind), key, at, generation)


class FileErasureFence:
    """The fence as an append-only file; reads are served from memory, caught up with
    what other processes appended whenever the file grew (one ``stat`` per read)."""

    def __init__(self, path: Path, *, sync: bool = True) -> None:
        self.path = Path(path)
        self.sync = sync
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            with _locked(fd, fcntl.LOCK_EX):
                if os.fstat(fd).st_size == 0:
                    os.write(fd, MAGIC)
                    self._fsync(fd)
        finally:
            os.close(fd)
        self._lock = threading.Lock()
        self._states: dict[bytes, FenceState] = {}
        self._horizon = 0
        self._inode = -1
        self._read_to = 0

    # -- reading ----------------------------------------------------------------------

    def _catch_up(self) -> None:
        """Apply what was appended since the last read (all of it if the file was
        replaced, by ``expire``)."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            info = None
        with self._lock:
            if info is not None and info.st_ino == self._inode and info.st_size == self._read_to:
                return
            with open(self.path, "rb") as fh:
                ino = os.fstat(fh.fileno()).st_ino
                if ino != self._inode:
                    if fh.read(len(MAGIC)) != MAGIC:
                        raise OSError(f"{self.path} is not an ownrank erasure fence")
                    self._states, self._horizon, self._read_to = {}, 0, len(MAGIC)
                    self._inode = ino
                fh.seek(self._read_to)
                raw = fh.read()
            whole = len(raw) - len(raw) % ENTRY_SIZE  # a torn tail is read again later
            for entry in _decode(raw[:whole]):
                self._apply(entry)
            self._read_to += whole

    def _apply(self, entry: FenceEntry) -> None:
        if entry.kind == FenceKind.horizon:
            self._horizon = max(self._horizon, entry.at)
            return
        before = self._states.get(entry.key)
        erased = entry.kind == FenceKind.erased
        last_erased = entry.at if erased else (before.last_erased_at if before else 0)
        self._states[entry.key] = FenceState(erased, entry.generation, entry.at, last_erased)

    def state(self, key: bytes) -> FenceState | None:
        """Where the user with this keyed id stands (None: never erased)."""
        self._catch_up()
        return self._states.get(key)

    def states(self) -> dict[bytes, FenceState]:
        self._catch_up()
        with self._lock:
            return dict(self._states)

    def horizon(self) -> int:
        """The fence remembers every erasure since this time (0: since the store began)."""
        self._catch_up()
        return self._horizon

    # -- writing ----------------------------------------------------------------------

    def erased(self, key: bytes, at: int, generation: int) -> None:
        """Record an erasure; durable when this returns (before anything is deleted)."""
        self._append([FenceEntry(FenceKind.erased, _check_key(key), at, generation)])

    def recreated(self, key: bytes, at: int, generation: int) -> None:
        """Record an explicit re-creation starting ``generation``; durable on return."""
        self._append([FenceEntry(FenceKind.recreated, _check_key(key), at, generation)])

    def add(self, entries: Iterable[FenceEntry]) -> None:
        """Append several entries at once (migrating an older store's erasures)."""
        self._append(list(entries))

    def _append(self, entries: list[FenceEntry]) -> None:
        if not entries:
            return
        data = b"".join(e.pack() for e in entries)
        while True:
            fd = os.open(self.path, os.O_RDWR)
            try:
                with _locked(fd, fcntl.LOCK_EX):
                    if os.fstat(fd).st_ino != os.stat(self.path).st_ino:
                        continue  # ``expire`` replaced the file while we waited: reopen
                    size = os.fstat(fd).st_size
                    whole = len(MAGIC) + (size - len(MAGIC)) // ENTRY_SIZE * ENTRY_SIZE
                    if whole != size:  # a crash tore the last entry: cut it off first
                        os.ftruncate(fd, whole)
                    os.lseek(fd, whole, os.SEEK_SET)
                    os.write(fd, data)
                    self._fsync(fd)
                    break
            finally:
                os.close(fd)
        self._catch_up()

    def expire(self, now: int, retention_seconds: float | None) -> int:
        """Drop entries older than the retention (None: keep all) and move the horizon
        to ``now - retention``; returns how many entries were dropped.

        The file is rewritten beside the old one and renamed over it, so a crash
        leaves either the old fence or the new one, never a mix."""
        if retention_seconds is None:
            return 0
        horizon = int(now - retention_seconds)
        fd = os.open(self.path, os.O_RDWR)
        try:
            with _locked(fd, fcntl.LOCK_EX):
                if os.fstat(fd).st_ino != os.stat(self.path).st_ino:
                    return 0  # another process expired it while we waited
                with open(self.path, "rb") as fh:
                    fh.seek(len(MAGIC))
                    entries = list(_decode(fh.read()))
                kept = [e for e in entries if e.kind != FenceKind.horizon and e.at >= horizon]
                dropped = sum(1 for e in entries if e.kind != FenceKind.horizon) - len(kept)
                if dropped == 0:
                    return 0
                head = FenceEntry(FenceKind.horizon, bytes(KEY_SIZE), horizon, 0)
                tmp = self.path.with_name(f".{self.path.name}.tmp")
                with open(tmp, "wb") as out:
                    out.write(MAGIC + b"".join(e.pack() for e in [head, *kept]))
                    out.flush()
                    self._fsync(out.fileno())
                os.replace(tmp, self.path)
                self._fsync_dir()
        finally:
            os.close(fd)
        self._catch_up()
        return dropped

    def _fsync(self, fd: int) -> None:
        if self.sync:
            os.fsync(fd)

    def _fsync_dir(self) -> None:
        if self.sync:
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def _check_key(key: bytes) -> bytes:
    if len(key) != KEY_SIZE:
        raise ValueError(f"a fence key is the {KEY_SIZE}-byte keyed user id")
    return key


class _locked:
    """``flock`` held for a ``with`` block."""

    def __init__(self, fd: int, how: int) -> None:
        self.fd = fd
        self.how = how

    def __enter__(self) -> None:
        fcntl.flock(self.fd, self.how)

    def __exit__(self, *_exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
