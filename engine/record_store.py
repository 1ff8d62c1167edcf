"""User records under keyed ids, sealed: the only code that touches the ``users`` database.

Each user is one record under one key; the key is an HMAC of the user id with a
per-store secret (kept in the catalog's meta database), so raw ids never sit on
disk. Records are sealed with the user's own data key (``record_cipher``; keys in
the ``Keystore``). Reads consult the erasure fence (``storage/erasure_fence.py``):
a record of an erased generation is never returned, even before the next open
purges it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import InvalidInputError
from ..storage.erasure_fence import ErasureFence
from ..storage.keystore import Keystore
from ..storage.lmdb_env import LmdbEnvironment
from .items import is_valid_item_id
from .record_cipher import RecordUnreadable, is_sealed, seal, unseal
from .user_record import UserRecord

SECRET_META_KEY = "user_key_secret"
USERS_DB = "users"


def check_user_id(user_id: object) -> str:
    if not is_valid_item_id(user_id):
        raise InvalidInputError(
            f"invalid user id {user_id!r}: 1-256 characters from A-Z a-z 0-9 . _ : @ ~ -"
        )
    return str(user_id)


class RecordStore:
    """Keyed ids, sealing and unsealing, and read / put / delete / scan of user records."""

    def __init__(
        self,
        env: LmdbEnvironment,
        meta_db: Any,
        keystore: Keystore,
        fence: ErasureFence,
        *,
        seal_records: bool,
        clock: Callable[[], float],
    ) -> None:
        self.env = env
        self._db = env.db(USERS_DB)
        self.keystore = keystore
        self.fence = fence
        self.seal_records = seal_records
        self.clock = clock
        self._secret = self._load_secret(meta_db)

    def _load_secret(self, meta_db: Any) -> bytes:
        with self.env.write() as txn:
            raw = txn.get(SECRET_META_KEY.encode(), db=meta_db)
            if raw is None:
                raw = secrets.token_bytes(32)  # a CSPRNG: the key must not be guessable
                txn.put(SECRET_META_KEY.encode(), raw, db=meta_db)
            return bytes(raw)

    def key(self, user_id: str) -> bytes:
        """The user's key: HMAC-SHA256(store secret, user id), first 16 bytes."""
        check_user_id(user_id)
        return hmac.new(self._secret, user_id.encode(), hashlib.sha256).digest()[:16]

    # -- sealing ------------------------------------------------------------------------

    def decode(self, key: bytes, raw: bytes | None) -> tuple[UserRecord | None, bytes | None]:
        """(record, its data key) from stored bytes; raises ``RecordUnreadable`` for a
        sealed record whose key is gone."""
        if raw is None:
            return None, None
        plain, data_key = self.plaintext(key, raw)
        return UserRecord.from_bytes(plain), data_key

    def plaintext(self, key: bytes, raw: bytes) -> tuple[bytes, bytes | None]:
        """(the record's msgpack bytes, its data key or None if stored unsealed)."""
        if not is_sealed(raw):  # written before records were sealed
            return raw, None
        data_key = self.keystore.get(key)
        return unseal(data_key, key, raw), data_key

    def encode(self, key: bytes, record: UserRecord, data_key: bytes | None) -> bytes:
        plain = record.to_bytes()
        return plain if data_key is None else seal(data_key, key, plain)

    def data_key(self, key: bytes, known: bytes | None) -> tuple[bytes | None, bool]:
        """The data key a write seals with (created if needed): (key, created now)."""
        if not self.seal_records:
            return None, False
        if known is not None:
            return known, False
        return self.keystore.get_or_create(key, int(self.clock()))

    # -- the fence ----------------------------------------------------------------------

    def fenced(self, key: bytes, generation: int) -> bool:
        """Whether the fence rules out a record of this generation: the user was erased
        since, or re-created with a newer generation. (The next open purges such a
        record; until then it is never read nor written on.)"""
        state = self.fence.state(key)
        if state is None:
            return False
        return generation <= state.generation if state.erased else generation < state.generation

    # -- reads and writes ---------------------------------------------------------------

    def raw(self, txn: Any, key: bytes) -> bytes | None:
        """The stored (sealed) bytes under ``key``."""
        found = txn.get(key, db=self._db)
        return None if found is None else bytes(found)

    def get(self, txn: Any, key: bytes) -> UserRecord | None:
        """The user's record as of ``txn``; None if there is none, its data key is gone
        or the fence rules it out."""
        raw = self.raw(txn, key)
        try:
            record = self.decode(key, raw)[0]
        except RecordUnreadable:
            return None  # its key was destroyed: the user does not exist
        return None if record is not None and self.fenced(key, record.generation) else record

    def read(self, user_id: str) -> UserRecord | None:
        with self.env.read() as txn:
            return self.get(txn, self.key(user_id))

    def put(self, txn: Any, key: bytes, value: bytes) -> None:
        txn.put(key, value, db=self._db)

    def delete(self, txn: Any, key: bytes) -> bool:
        return bool(txn.delete(key, db=self._db))

    def scan(self, txn: Any) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, stored bytes) pair, in key order."""
        for key, raw in txn.cursor(db=self._db):
            yield bytes(key), bytes(raw)

    def count(self, txn: Any) -> int:
        return int(txn.stat(self._db)["entries"])
