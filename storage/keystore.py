"""Per-user data keys, wrapped by a master key, in their own LMDB environment.

Why a separate environment: destroying a user's data key makes every copy of
that user's ciphertext unreadable (old LMDB pages, backups of the data
environment), which is what makes erasure reach copies that cannot be deleted
one by one. A data backup therefore never contains the keys; the keystore has
its own, short-lived backups (see ``storage/backup.py``).

Entry format (value under the user's 16-byte keyed id)::

    b"K1" | master key id (8) | created, Unix seconds (>Q) | nonce (12) |
    AES-256-GCM(master key, nonce, data key (32), aad = b"ownrank-dk" + user key)

The master key comes from ``OWNRANK_MASTER_KEY`` (base64 of 32 bytes; a comma
separated list during a rotation: the first is current, the others only
unwrap), from ``OWNRANK_MASTER_KEY_FILE``, or from a file created on first use
(``DATA_DIR/keys/master.key``, mode 0600; keep it off the data disk in
production). ``rotate`` re-wraps every data key under the current master key
without touching a single user record.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import StoreFormatError
from .lmdb_env import LmdbEnvironment
from .secret_files import read_or_create

MASTER_KEY_ENV = "OWNRANK_MASTER_KEY"
MASTER_KEY_FILE_ENV = "OWNRANK_MASTER_KEY_FILE"
KEYSTORE_DATABASES = ("data_keys",)

_MAGIC = b"K1"
_HEAD = struct.Struct(">2s8sQ12s")
_AAD = b"ownrank-dk"


def key_id(master_key: bytes) -> bytes:
    """A master key's public id: the first 8 bytes of its SHA-256."""
    return hashlib.sha256(b"ownrank-master-key-id" + master_key).digest()[:8]


@dataclass(frozen=True)
class MasterKeys:
    """The current master key and older ones that may still unwrap data keys."""

    current: bytes
    previous: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        for key in (self.current, *self.previous):
            if len(key) != 32:
                raise StoreFormatError("a master key must be 32 bytes (AES-256)")

    def cipher(self, kid: bytes) -> AESGCM | None:
        """The AES-GCM cipher of the master key with this id (built once: every read
        of a sealed record unwraps its data key)."""
        return self._ciphers.get(kid)

    @cached_property
    def _ciphers(self) -> dict[bytes, AESGCM]:
        # oldest first, so that the current key wins an id two keys share
        return {key_id(k): AESGCM(k) for k in reversed((self.current, *self.previous))}

    @staticmethod
    def parse(text: str) -> MasterKeys:
        """From ``base64[,base64...]`` (current first)."""
        try:
            keys = [
                base64.b64decode(p.strip(), validate=True) for p in text.split(",") if p.strip()
            ]
        except ValueError as exc:
            raise StoreFormatError(f"master key is not base64: {exc}") from None
        if not keys:
            raise StoreFormatError("no master key given")
        return MasterKeys(keys[0], tuple(keys[1:]))

    @staticmethod
    def load(default_file: Path) -> MasterKeys:
        """From the environment, a key file named by it, or ``default_file`` (created
        on first use)."""
        if os.environ.get(MASTER_KEY_ENV):
            return MasterKeys.parse(os.environ[MASTER_KEY_ENV])
        path = Path(os.environ.get(MASTER_KEY_FILE_ENV) or default_file)
        raw = read_or_create(path, lambda: base64.b64encode(secrets.token_bytes(32)) + b"\n")
        return MasterKeys.parse(raw.decode())


@dataclass(frozen=True)
class KeyEntry:
    created: int
    master_id: bytes


class Keystore:
    """Data keys by user key. Thread-safe; open one per process (LMDB rule)."""

    def __init__(
        self, path: Path, masters: MasterKeys, *, map_size: int = 2**30, sync: bool = True
    ) -> None:
        self.path = Path(path)
        self.masters = masters
        self.env = LmdbEnvironment(
            self.path, databases=KEYSTORE_DATABASES, map_size=map_size, sync=sync
        )
        self.db = self.env.db("data_keys")

    # -- wrapping -----------------------------------------------------------------------

    def _wrap(self, user_key: bytes, data_key: bytes, created: int) -> bytes:
        nonce = secrets.token_bytes(12)
        master = self.masters.current
        sealed = AESGCM(master).encrypt(nonce, data_key, _AAD + user_key)
        return _HEAD.pack(_MAGIC, key_id(master), created, nonce) + sealed

    def _unwrap(self, user_key: bytes, raw: bytes) -> bytes:
        magic, kid, _created, nonce = _HEAD.unpack_from(raw)
        if magic != _MAGIC:
            raise StoreFormatError("keystore entry has an unknown format")
        master = self.masters.cipher(kid)
        if master is None:
            raise StoreFormatError(
                f"data key wrapped by unknown master key {kid.hex()}; "
                f"set {MASTER_KEY_ENV} to include it"
            )
        try:
            return master.decrypt(nonce, raw[_HEAD.size :], _AAD + user_key)
        except InvalidTag:
            raise StoreFormatError("a data key failed authentication") from None

    @staticmethod
    def entry_info(raw: bytes) -> KeyEntry:
        _magic, kid, created, _nonce = _HEAD.unpack_from(raw)
        return KeyEntry(created, kid)

    # -- operations ---------------------------------------------------------------------

    def get(self, user_key: bytes) -> bytes | None:
        """The user's data key, or None if there is none (never created, or destroyed)."""
        with self.env.read() as txn:
            raw = txn.get(user_key, db=self.db)
        return None if raw is None else self._unwrap(user_key, bytes(raw))

    def get_many(self, user_keys: Iterable[bytes]) -> dict[bytes, bytes | None]:
        """``get`` of each user key, in one read transaction."""
        with self.env.read() as txn:
            raws = {k: txn.get(k, db=self.db) for k in user_keys}
        return {k: None if raw is None else self._unwrap(k, bytes(raw)) for k, raw in raws.items()}

    def get_or_create(self, user_key: bytes, now: int) -> tuple[bytes, bool]:
        """The user's data key, creating (and durably committing) one if needed;
        returns (key, created)."""
        found = self.get(user_key)
        if found is not None:
            return found, False
        with self.env.write() as txn:
            raw = txn.get(user_key, db=self.db)
            if raw is not None:  # another process created it meanwhile
                return self._unwrap(user_key, bytes(raw)), False
            data_key = AESGCM.generate_key(bit_length=256)
            txn.put(user_key, self._wrap(user_key, data_key, now), db=self.db)
        return data_key, True

    def get_or_create_many(
        self, user_keys: Sequence[bytes], now: int
    ) -> dict[bytes, tuple[bytes, bool]]:
        """``get_or_create`` for many users with one commit; key -> (data key, created)."""
        out: dict[bytes, tuple[bytes, bool]] = {}
        with self.env.write() as txn:
            for user_key in user_keys:
                raw = txn.get(user_key, db=self.db)
                if raw is not None:
                    out[user_key] = (self._unwrap(user_key, bytes(raw)), False)
                    continue
                data_key = AESGCM.generate_key(bit_length=256)
                txn.put(user_key, self._wrap(user_key, data_key, now), db=self.db)
                out[user_key] = (data_key, True)
        return out

    def destroy(self, user_key: bytes, created_before: int | None = None) -> bool:
        """Delete the user's data key (optionally only one created at or before a time);
        True if one was deleted."""
        with self.env.write() as txn:
            raw = txn.get(user_key, db=self.db)
            if raw is None:
                return False
            if created_before is not None and self.entry_info(bytes(raw)).created > created_before:
                return False
            txn.delete(user_key, db=self.db)
            return True

    def destroy_exact(self, data_keys: Mapping[bytes, bytes]) -> list[bytes]:
        """Delete each user's data key while it is still the one given (user key -> data
        key; one made after a destroy stays); returns the user keys whose key went."""
        gone: list[bytes] = []
        with self.env.write() as txn:
            for user_key, data_key in data_keys.items():
                raw = txn.get(user_key, db=self.db)
                if raw is None:
                    continue
                if hmac.compare_digest(self._unwrap(user_key, bytes(raw)), data_key):
                    txn.delete(user_key, db=self.db)
                    gone.append(user_key)
        return gone

    def destroy_many(self, user_keys: Sequence[bytes]) -> int:
        with self.env.write() as txn:
            return sum(bool(txn.delete(k, db=self.db)) for k in user_keys)

    def entries(self) -> Iterator[tuple[bytes, KeyEntry]]:
        """Every (user key, entry info), in key order (a snapshot)."""
        with self.env.read() as txn:
            for key, raw in txn.cursor(db=self.db):
                yield bytes(key), self.entry_info(bytes(raw))

    def wrapped(self, user_key: bytes) -> bytes | None:
        """The stored (wrapped) entry, for audits and byte scans."""
        with self.env.read() as txn:
            raw = txn.get(user_key, db=self.db)
        return None if raw is None else bytes(raw)

    def rotate(self) -> int:
        """Re-wrap every data key not yet under the current master key; return how many.

        Records are untouched: their data keys do not change."""
        current = key_id(self.masters.current)
        changed = 0
        with self.env.write() as txn:
            stale = [
                (bytes(k), bytes(v))
                for k, v in txn.cursor(db=self.db)
                if self.entry_info(bytes(v)).master_id != current
            ]
            for user_key, raw in stale:
                data_key = self._unwrap(user_key, raw)
                created = self.entry_info(raw).created
                txn.put(user_key, self._wrap(user_key, data_key, created), db=self.db)
                changed += 1
        return changed

    def count(self) -> int:
        with self.env.read() as txn:
            return int(txn.stat(self.db)["entries"])

    def last_txn_id(self) -> int:
        return self.env.last_txn_id()

    def close(self) -> None:
        self.env.close()
