"""Signed erasure receipts: Ed25519 over a canonical JSON body.

The signing key is the operator's: generated on first start under
``DATA_DIR/keys/receipts/`` (mode 0600) and rotatable (``ownrank
rotate-signing-key``). Retired public keys are kept, so receipts signed before a
rotation still verify. A receipt names the key that signed it (``key_id``); a
verifier must take the public key from the operator (``GET
/receipts/public-keys``, or the key files), never from the receipt itself.

Canonical body: the receipt without ``signature``, as JSON with sorted keys,
``(",", ":")`` separators and UTF-8.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from ..errors import InvalidInputError
from ..storage.secret_files import write_new

SIGNATURE_ALGORITHM = "ed25519"
_CURRENT = "current"


def canonical(body: Mapping[str, Any]) -> bytes:
    fields = {k: v for k, v in body.items() if k != "signature"}
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def public_key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class ReceiptSigner:
    """Loads (or creates) the signing key; keeps every public key it ever used."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        if not (self.directory / _CURRENT).exists():
            self._install(Ed25519PrivateKey.generate(), first=True)
        self._load()

    def _install(self, private: Ed25519PrivateKey, *, first: bool = False) -> None:
        """Write the key pair, then make it current. On first start several workers
        may race: the first to create ``current`` wins and the others drop their key."""
        name = public_key_id(private.public_key()).replace(":", "-")
        pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        write_new(self.directory / f"{name}.key", pem)
        write_new(self.directory / f"{name}.pub", (_b64(public) + "\n").encode())
        if first:
            if not write_new(self.directory / _CURRENT, (name + "\n").encode()):
                (self.directory / f"{name}.key").unlink(missing_ok=True)
                (self.directory / f"{name}.pub").unlink(missing_ok=True)
            return
        tmp = self.directory / f".{_CURRENT}.{os.getpid()}"
        tmp.write_text(name + "\n")
        os.replace(tmp, self.directory / _CURRENT)

    def _load(self) -> None:
        name = (self.directory / _CURRENT).read_text().strip()
        key = load_pem_private_key((self.directory / f"{name}.key").read_bytes(), None)
        if not isinstance(key, Ed25519PrivateKey):
            raise InvalidInputError("the receipt signing key is not an Ed25519 key")
        self._private = key
        self.key_id = public_key_id(key.public_key())

    def rotate(self) -> str:
        """A new signing key becomes current; the old public key stays for verification."""
        self._install(Ed25519PrivateKey.generate())
        self._load()
        return self.key_id

    def public_keys(self) -> dict[str, str]:
        """key id -> base64 raw public key, current and retired."""
        out: dict[str, str] = {}
        for path in sorted(self.directory.glob("ed25519-*.pub")):
            raw = base64.b64decode(path.read_text().strip())
            out[public_key_id(Ed25519PublicKey.from_public_bytes(raw))] = _b64(raw)
        return out

    def sign(self, body: Mapping[str, Any]) -> dict[str, Any]:
        receipt = {**body, "key_id": self.key_id, "signature_algorithm": SIGNATURE_ALGORITHM}
        receipt["signature"] = _b64(self._private.sign(canonical(receipt)))
        return receipt


def verify_receipt(receipt: Mapping[str, Any], public_keys: Mapping[str, str]) -> bool:
    """True if ``receipt`` is signed by one of ``public_keys`` (key id -> base64) and
    unchanged since."""
    try:
        raw = base64.b64decode(public_keys[str(receipt["key_id"])])
        signature = base64.b64decode(str(receipt["signature"]))
        Ed25519PublicKey.from_public_bytes(raw).verify(signature, canonical(receipt))
    except (KeyError, ValueError, InvalidSignature):
        return False
    return receipt.get("signature_algorithm") == SIGNATURE_ALGORITHM
