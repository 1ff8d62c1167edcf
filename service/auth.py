"""Who is calling: admin API keys, and signed per-user bearer tokens.

- **Admin keys** come from ``OWNRANK_ADMIN_KEYS`` (comma separated) and from a
  key file (``OWNRANK_ADMIN_KEYS_FILE``, default ``DATA_DIR/service/admin_keys``,
  one key per line). Several keys may be valid at once, for rotation: add the new
  key, restart, move clients, remove the old one. When no key is configured at
  all, the first start writes one random key to the default file (0600).
- **User tokens** are ``ort1.<payload>.<signature>``: the payload is base64url
  JSON ``{"sub": user id, "iat": ..., "exp": ...}``, the signature
  HMAC-SHA256 over ``ort1.<payload>`` with a 256-bit server secret kept in
  ``DATA_DIR/service/token_secret`` (0600, created once, shared by every worker
  and every restart). A token acts only for its own user.

Both travel as ``Authorization: Bearer <key or token>``. Failures: no or
malformed credentials, a bad signature or an expired token are 401; a valid
token on another user's path, or a user token on an admin route, is 403.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..engine.items import is_valid_item_id
from ..storage import secret_files
from .errors import ApiError
from .ratelimit import RateLimiter
from .schemas import UserIdPath
from .settings import ServiceSettings

TOKEN_PREFIX = "ort1"
SECRET_FILE = "token_secret"
MAX_CREDENTIAL_CHARS = 2_048
_UNAUTHORIZED_HEADERS = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class TokenClaims:
    user_id: str
    issued_at: int
    expires_at: int


class TokenError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Mints and verifies user tokens with one HMAC-SHA256 secret."""

    def __init__(self, secret: bytes, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 32:
            raise ValueError("the token secret must be at least 32 bytes")
        self._secret = secret
        self.clock = clock

    def _sign(self, signed_part: str) -> str:
        return _b64(hmac.new(self._secret, signed_part.encode(), hashlib.sha256).digest())

    def mint(self, user_id: str, ttl_seconds: int) -> tuple[str, TokenClaims]:
        if not is_valid_item_id(user_id):
            raise ValueError("invalid user id")
        now = int(self.clock())
        claims = TokenClaims(user_id, now, now + int(ttl_seconds))
        payload = json.dumps(
            {"sub": claims.user_id, "iat": claims.issued_at, "exp": claims.expires_at},
            separators=(",", ":"),
        )
        signed_part = f"{TOKEN_PREFIX}.{_b64(payload.encode())}"
        return f"{signed_part}.{self._sign(signed_part)}", claims

    def verify(self, token: str) -> TokenClaims:
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
            raise TokenError("invalid_token", "malformed token")
        signed_part = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(self._sign(signed_part), parts[2]):
            raise TokenError("invalid_token", "bad token signature")
        try:
            payload = json.loads(_unb64(parts[1]))
            claims = TokenClaims(str(payload["sub"]), int(payload["iat"]), int(payload["exp"]))
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise TokenError("invalid_token", "malformed token payload") from None
        if not is_valid_item_id(claims.user_id):
            raise TokenError("invalid_token", "malformed token payload")
        if claims.expires_at <= self.clock():
            raise TokenError("token_expired", "the token has expired")
        return claims


def load_signer(settings: ServiceSettings) -> TokenSigner:
    """The signer of this data directory, creating its secret on first use."""
    path = settings.service_dir / SECRET_FILE
    return TokenSigner(secret_files.read_or_create(path, secret_files.new_secret))


def read_key_file(path: Path) -> list[str]:
    if not path.exists():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def admin_keys(settings: ServiceSettings, *, create: bool = True) -> list[str]:
    """The configured admin keys; with ``create``, one is generated when there are none."""
    keys = list(settings.admin_keys)
    path = settings.effective_admin_keys_file
    keys += read_key_file(path)
    if not keys and create and settings.admin_keys_file is None:
        secret_files.write_new(path, (secret_files.new_admin_key() + "\n").encode())
        keys = read_key_file(path)
    return keys


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: an admin, or the user a token was minted for."""

    kind: Literal["admin", "user"]
    user_id: str | None
    rate_key: str

    def may_act_for(self, user_id: str) -> bool:
        return self.kind == "admin" or self.user_id == user_id


class Authenticator:
    """Turns an ``Authorization`` credential into a ``Principal`` (or a 401/429)."""

    def __init__(
        self, signer: TokenSigner, keys: Sequence[str], limiter: RateLimiter | None = None
    ) -> None:
        self.signer = signer
        self._key_digests = [_digest(k) for k in keys]
        self.limiter = limiter or RateLimiter(0.0, 1)

    def _admin(self, credential: str) -> bool:
        candidate = _digest(credential)
        found = False
        for digest in self._key_digests:  # no early exit: time does not tell which matched
            found |= hmac.compare_digest(candidate, digest)
        return found

    def authenticate(self, credential: str | None) -> Principal:
        if not credential:
            raise ApiError(
                401,
                "missing_credentials",
                "send Authorization: Bearer <admin key or token>",
                headers=_UNAUTHORIZED_HEADERS,
            )
        if len(credential) > MAX_CREDENTIAL_CHARS:
            raise ApiError(401, "invalid_token", "malformed token", headers=_UNAUTHORIZED_HEADERS)
        rate_key = hashlib.sha256(credential.encode()).hexdigest()[:24]
        if credential.startswith(TOKEN_PREFIX + "."):
            try:
                claims = self.signer.verify(credential)
            except TokenError as exc:
                raise ApiError(401, exc.code, exc.message, headers=_UNAUTHORIZED_HEADERS) from None
            principal = Principal("user", claims.user_id, rate_key)
        elif self._admin(credential):
            principal = Principal("admin", None, rate_key)
        else:
            raise ApiError(
                401,
                "invalid_credentials",
                "unknown admin key or malformed token",
                headers=_UNAUTHORIZED_HEADERS,
            )
        wait = self.limiter.acquire(principal.rate_key)
        if wait > 0.0:
            raise ApiError(
                429,
                "rate_limited",
                "too many requests for this credential",
                headers={"Retry-After": str(max(1, round(wait + 0.5)))},
            )
        return principal


bearer = HTTPBearer(
    auto_error=False,
    description="An admin API key, or a user token minted with POST /tokens.",
)


async def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """Dependency: any valid admin key or user token (``async``, like every dependency
    here: it never waits, and a plain ``def`` would cost a thread hop per request)."""
    auth: Authenticator = request.app.state.auth
    return auth.authenticate(credentials.credentials if credentials else None)


async def admin_only(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
    """Dependency: an admin key."""
    if principal.kind != "admin":
        raise ApiError(403, "admin_required", "this operation needs an admin key")
    return principal


async def acting_user(
    user_id: UserIdPath, principal: Annotated[Principal, Depends(authenticated)]
) -> str:
    """Dependency: the path's user id, if the caller is that user or an admin."""
    if not principal.may_act_for(user_id):
        raise ApiError(403, "forbidden", "this token belongs to another user")
    return user_id


Authenticated = Annotated[Principal, Depends(authenticated)]
AdminOnly = Annotated[Principal, Depends(admin_only)]
ActingUser = Annotated[str, Depends(acting_user)]
