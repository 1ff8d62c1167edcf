"""Secrets kept in files: created once, 0600, never half-written, never raced.

Several workers may start at the same moment against a fresh data directory;
each must end up with the same secret. The content is written to a private
temporary file first and then ``link()``-ed to its final name: a link either
creates the complete file or fails because another process already did, so a
reader never sees a partial secret and the first writer wins.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path


def write_new(path: Path, content: bytes) -> bool:
    """Create ``path`` (mode 0600) with ``content``; False if it already existed."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def read_or_create(path: Path, make: Callable[[], bytes]) -> bytes:
    """The file's content, creating it with ``make()`` first if it does not exist."""
    if not path.exists():
        write_new(path, make())
    return path.read_bytes()


def new_secret() -> bytes:
    """32 random bytes from the operating system's CSPRNG."""
    return secrets.token_bytes(32)


def new_admin_key() -> str:
    """A random admin API key (URL-safe, 256 bits)."""
    return "ork_" + secrets.token_urlsafe(32)
