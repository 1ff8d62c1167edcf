"""Backups, restores and compaction of a data directory's two LMDB environments.

- ``backup_data``: a compacted, consistent copy of the data environment (catalog,
  sealed user records, shared statistics, tombstones). Never the keystore: a
  data backup alone cannot reveal any user, and once a user's data key is
  destroyed their records in every data backup are unreadable for good.
- ``backup_keystore``: a copy of the keystore into a timestamped folder, pruning
  keystore backups older than ``retention_days`` (default 7, which must stay below
  the erasure journal's retention so a restored keystore's erased keys are
  destroyed again on open). The master key is not in it: back it up separately.
- ``compact``: rewrites both environments without their free pages (LMDB keeps
  freed pages, with old bytes, until it reuses them) and swaps them in. It needs
  the data directory to itself: every open engine holds a shared lock on
  ``DATA_DIR/.ownrank.lock``, and compaction takes it exclusively or refuses.
- ``restore_data`` / ``restore_keystore``: put a backup back (also exclusive). The
  erasure fence (``erasure_fence.py``) is in neither backup and is never restored: the
  next open re-applies it, so no restore brings an erased user back. A backup taken
  before the fence's horizon (only with a fence retention set) is refused: erasures
  from before the horizon are forgotten, and the backup could hold such a user.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ..errors import StoreBusyError, StoreFormatError
from .erasure_fence import FileErasureFence, fence_path
from .keystore import KEYSTORE_DATABASES
from .lmdb_env import LmdbEnvironment

LOCK_FILE = ".ownrank.lock"
LMDB_DIR = "lmdb"
KEYSTORE_DIR = "keystore"
MANIFEST = "manifest.json"
KEYSTORE_BACKUP_PREFIX = "keystore-"
# derived from the data environment; rebuilt by the engine when missing
DERIVED_FILES = ("catalog.index",)


class DirectoryLock:
    """An advisory lock on a data directory: shared by engines, exclusive for swaps."""

    def __init__(self, data_dir: Path) -> None:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        self._fh: IO[bytes] | None = open(Path(data_dir) / LOCK_FILE, "ab")  # noqa: SIM115

    def shared(self) -> DirectoryLock:
        assert self._fh is not None
        fcntl.flock(self._fh, fcntl.LOCK_SH)
        return self

    def exclusive(self) -> DirectoryLock:
        assert self._fh is not None
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            raise StoreBusyError(
                "the data directory is open elsewhere (a running service or engine); stop it first"
            ) from None
        return self

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()  # closing the file drops the lock
            self._fh = None


@contextmanager
def exclusive(data_dir: Path) -> Iterator[None]:
    lock = DirectoryLock(data_dir).exclusive()
    try:
        yield
    finally:
        lock.release()


def _stamp(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%S%fZ")


def _empty_dir(path: Path) -> Path:
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise StoreFormatError(f"{path} is not empty")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _write_manifest(directory: Path, content: dict[str, Any]) -> None:
    (directory / MANIFEST).write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")


def backup_data(env: LmdbEnvironment, dest: Path, *, store_id: str) -> dict[str, Any]:
    """Copy the data environment (compacted) into the empty folder ``dest``."""
    dest = _empty_dir(dest)
    env.copy_to(dest / LMDB_DIR)
    now = time.time()
    manifest = {
        "kind": "ownrank-data-backup",
        "store_id": store_id,
        "created": _stamp(now),
        "created_unix": now,
        "lmdb_txn_id": env.last_txn_id(),
        "bytes": (dest / LMDB_DIR / "data.mdb").stat().st_size,
    }
    _write_manifest(dest, manifest)
    return manifest


def backup_keystore(
    env: LmdbEnvironment, root: Path, *, retention_days: float = 7.0, now: float | None = None
) -> dict[str, Any]:
    """Copy the keystore into ``root/keystore-<time>/`` and prune expired copies."""
    now = time.time() if now is None else now
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    dest = _empty_dir(root / f"{KEYSTORE_BACKUP_PREFIX}{_stamp(now)}")
    env.copy_to(dest / KEYSTORE_DIR)
    manifest = {"kind": "ownrank-keystore-backup", "created_unix": now, "created": _stamp(now)}
    _write_manifest(dest, manifest)
    pruned = []
    for old in sorted(root.glob(f"{KEYSTORE_BACKUP_PREFIX}*")):
        try:
            created = float(json.loads((old / MANIFEST).read_text())["created_unix"])
        except (OSError, ValueError, KeyError):
            continue
        if now - created > retention_days * 86_400:
            shutil.rmtree(old)
            pruned.append(old.name)
    return {**manifest, "path": str(dest), "pruned": pruned}


def _swap_in(source: Path, target: Path) -> None:
    """Replace the environment folder ``target`` with ``source`` (same file system)."""
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.rename(target, old)
    os.rename(source, target)
    if old.exists():
        shutil.rmtree(old)


def compact(data_dir: Path) -> dict[str, dict[str, int]]:
    """Rewrite both environments without free pages; return bytes before and after."""
    data_dir = Path(data_dir)
    out: dict[str, dict[str, int]] = {}
    with exclusive(data_dir):
        for name, databases in ((LMDB_DIR, None), (KEYSTORE_DIR, KEYSTORE_DATABASES)):
            folder = data_dir / name
            if not (folder / "data.mdb").exists():
                continue
            before = (folder / "data.mdb").stat().st_size
            tmp = data_dir / f".{name}.compact"
            if tmp.exists():
                shutil.rmtree(tmp)
            kwargs: dict[str, Any] = {} if databases is None else {"databases": databases}
            env = LmdbEnvironment(folder, **kwargs)
            try:
                env.copy_to(tmp)
            finally:
                env.close()
            _swap_in(tmp, folder)
            out[name] = {
                "bytes_before": before,
                "bytes_after": (folder / "data.mdb").stat().st_size,
            }
    return out


def _created(manifest: dict[str, Any]) -> float:
    """When a backup was taken (Unix seconds), from its manifest."""
    try:
        if "created_unix" in manifest:
            return float(manifest["created_unix"])
        stamp = datetime.strptime(str(manifest["created"]), "%Y%m%dT%H%M%S%fZ")
    except (KeyError, TypeError, ValueError):
        raise StoreFormatError("the backup manifest does not say when it was taken") from None
    return stamp.replace(tzinfo=UTC).timestamp()


def check_fence_horizon(manifest: dict[str, Any], data_dir: Path) -> None:
    """Refuse a backup taken before the erasure fence's horizon (see the module doc)."""
    path = fence_path(data_dir)
    horizon = FileErasureFence(path).horizon() if path.exists() else 0
    created = _created(manifest)
    if created < horizon:
        raise StoreFormatError(
            f"the backup was taken at {_stamp(created)}, before the erasure fence's horizon "
            f"({_stamp(horizon)}): the fence no longer remembers erasures from before it, "
            "so this backup could bring erased users back. Restore a newer backup."
        )


def _restore(backup: Path, data_dir: Path, name: str, kind: str) -> None:
    try:
        manifest = json.loads((Path(backup) / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise StoreFormatError(f"{backup} has no readable backup manifest: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != kind:
        raise StoreFormatError(f"{backup} is not an {kind}")
    check_fence_horizon(manifest, data_dir)
    with exclusive(data_dir):
        tmp = Path(data_dir) / f".{name}.restore"
        if tmp.exists():
            shutil.rmtree(tmp)
        shutil.copytree(Path(backup) / name, tmp)
        _swap_in(tmp, Path(data_dir) / name)


def restore_data(backup: Path, data_dir: Path) -> None:
    """Put a data backup in place of the data environment (the keystore stays)."""
    _restore(backup, data_dir, LMDB_DIR, "ownrank-data-backup")
    for name in DERIVED_FILES:
        (Path(data_dir) / name).unlink(missing_ok=True)


def restore_keystore(backup: Path, data_dir: Path) -> None:
    """Put a keystore backup in place of the keystore (the data environment stays)."""
    _restore(backup, data_dir, KEYSTORE_DIR, "ownrank-keystore-backup")
