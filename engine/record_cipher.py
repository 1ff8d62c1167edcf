"""Sealing a user record with that user's own data key (crypto-shredding).

A sealed record is ``0xE1 | nonce (12) | AES-256-GCM(data key, nonce, record,
aad = user key)``. The associated data binds a ciphertext to its user key, so a
record copied under another key does not decrypt. ``0xE1`` can never start a
plaintext record (a msgpack map starts with 0x80-0x8f, 0xde or 0xdf), so stores
written before encryption existed are still read, and sealed on their next write.
"""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SEALED = 0xE1
OVERHEAD = 1 + 12 + 16


class RecordUnreadable(Exception):
    """A sealed record whose data key is gone or wrong: for every purpose, no record."""


def is_sealed(raw: bytes) -> bool:
    return bool(raw) and raw[0] == SEALED


def seal(data_key: bytes, user_key: bytes, plaintext: bytes) -> bytes:
    nonce = secrets.token_bytes(12)
    return bytes([SEALED]) + nonce + AESGCM(data_key).encrypt(nonce, plaintext, user_key)


def unseal(data_key: bytes | None, user_key: bytes, raw: bytes) -> bytes:
    if data_key is None:
        raise RecordUnreadable("the user's data key does not exist")
    try:
        return AESGCM(data_key).decrypt(raw[1:13], raw[13:], user_key)
    except InvalidTag:
        raise RecordUnreadable("the record does not authenticate under its data key") from None
