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
- **Device tokens** are user tokens that also name a registered device
  (``engine/devices.py``): ``"dev"`` (the device id, a UUID) and ``"typ"``. An
  *access* token (``"typ": "access"``, short-lived) acts for its user like a user
  token, but only while the device is registered: every request checks
  (``Engine.device_active``), so revoking the device, or erasing the user, ends it at
  once. A *refresh* token (``"typ": "refresh"``, ``"k"``: the device's refresh count
  when minted, lifetime ``EngineConfig.device_max_offline_days``) is taken only by
  ``POST /devices/refresh``, never as a bearer credential.

Keys and tokens travel as ``Authorization: Bearer <key or token>``. Failures: no
or malformed credentials, a bad signature, an expired token, a refresh token as a
credential, or a device no longer registered (``device_revoked``) are 401; a valid
token on another user's path, or a user token on an admin route, is 403.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from .. import Engine
from ..engine.items import is_valid_item_id
from ..storage import secret_files
from .errors import ApiError
from .ratelimit import RateLimiter
from .schemas import UserIdPath
from .settings import ServiceSettings

TOKEN_PREFIX = "ort1"
SECRET_FILE = "token_secret"
MAX_CREDENTIAL_CHARS = 2_048
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": "Bearer"}
# "user": a plain user token; "access" and "refresh": a device's (payload "typ")
TokenKind = Literal["user", "access", "refresh"]


@dataclass(frozen=True)
class TokenClaims:
    user_id: str
    issued_at: int
    expires_at: int
    device_id: str | None = None  # a device's token: the device (a UUID string)
    kind: TokenKind = "user"
    counter: int | None = None  # a refresh token: the device's refresh count at minting


class TokenError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def is_device_id(text: object) -> bool:
    """A device id as the engine writes it: a canonical (lowercase) UUID string."""
    if not isinstance(text, str) or len(text) != 36:
        return False
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def _claims(payload: Any) -> TokenClaims:
    """The claims of a decoded payload; ``TokenError`` if they do not fit together."""
    if not isinstance(payload, dict):
        raise TokenError("invalid_token", "malformed token payload")
    user = str(payload["sub"])
    issued, expires = int(payload["iat"]), int(payload["exp"])
    dev, typ, k = payload.get("dev"), payload.get("typ"), payload.get("k")
    if dev is None and typ is None and k is None:
        claims = TokenClaims(user, issued, expires)
    elif is_device_id(dev) and typ == "access" and k is None:
        claims = TokenClaims(user, issued, expires, dev, "access")
    elif is_device_id(dev) and typ == "refresh" and type(k) is int and k >= 0:
        claims = TokenClaims(user, issued, expires, dev, "refresh", k)
    else:
        raise TokenError("invalid_token", "malformed token payload")
    if not is_valid_item_id(claims.user_id):
        raise TokenError("invalid_token", "malformed token payload")
    return claims


class TokenSigner:
    """Mints and verifies user and device tokens with one HMAC-SHA256 secret."""

    def __init__(self, secret: bytes, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 32:
            raise ValueError("the token secret must be at least 32 bytes")
        self._secret = secret
        self.clock = clock

    def _sign(self, signed_part: str) -> str:
        return _b64(hmac.new(self._secret, signed_part.encode(), hashlib.sha256).digest())

    def mint(
        self,
        user_id: str,
        ttl_seconds: int,
        *,
        device_id: str | None = None,
        refresh_counter: int | None = None,
    ) -> tuple[str, TokenClaims]:
        """A user token; with ``device_id``, that device's access token, and with
        ``refresh_counter`` too, its refresh token at that refresh count."""
        if not is_valid_item_id(user_id):
            raise ValueError("invalid user id")
        if device_id is not None and not is_device_id(device_id):
            raise ValueError("invalid device id")
        if refresh_counter is not None and (device_id is None or refresh_counter < 0):
            raise ValueError("a refresh token is a device's, at a count >= 0")
        now = int(self.clock())
        kind: TokenKind = (
            "user" if device_id is None else "access" if refresh_counter is None else "refresh"
        )
        claims = TokenClaims(user_id, now, now + int(ttl_seconds), device_id, kind, refresh_counter)
        body: dict[str, Any] = {
            "sub": claims.user_id,
            "iat": claims.issued_at,
            "exp": claims.expires_at,
        }
        if device_id is not None:
            body.update(dev=device_id, typ=kind)
        if refresh_counter is not None:
            body["k"] = refresh_counter
        payload = json.dumps(body, separators=(",", ":"))
        signed_part = f"{TOKEN_PREFIX}.{_b64(payload.encode())}"
        return f"{signed_part}.{self._sign(signed_part)}", claims

    def verify(self, token: str, *, refresh: bool = False) -> TokenClaims:
        """The claims of a valid, unexpired token: a user or device access token, or
        with ``refresh``, a device refresh token (and only that)."""
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
            raise TokenError("invalid_token", "malformed token")
        signed_part = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(self._sign(signed_part), parts[2]):
            raise TokenError("invalid_token", "bad token signature")
        try:
            claims = _claims(json.loads(_unb64(parts[1])))
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise TokenError("invalid_token", "malformed token payload") from None
        if refresh and claims.kind != "refresh":
            raise TokenError("invalid_token", "not a refresh token")
        if not refresh and claims.kind == "refresh":
            raise TokenError(
                "invalid_token",
                "a refresh token is no access token: exchange it at POST /devices/refresh",
            )
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
    """The authenticated caller: an admin, or the user a token was minted for (with
    ``device_id``: through that device's access token)."""

    kind: Literal["admin", "user"]
    user_id: str | None
    rate_key: str
    device_id: str | None = None

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
                headers=UNAUTHORIZED_HEADERS,
            )
        if len(credential) > MAX_CREDENTIAL_CHARS:
            raise ApiError(401, "invalid_token", "malformed token", headers=UNAUTHORIZED_HEADERS)
        rate_key = hashlib.sha256(credential.encode()).hexdigest()[:24]
        if credential.startswith(TOKEN_PREFIX + "."):
            try:
                claims = self.signer.verify(credential)
            except TokenError as exc:
                raise ApiError(401, exc.code, exc.message, headers=UNAUTHORIZED_HEADERS) from None
            principal = Principal("user", claims.user_id, rate_key, claims.device_id)
        elif self._admin(credential):
            principal = Principal("admin", None, rate_key)
        else:
            raise ApiError(
                401,
                "invalid_credentials",
                "unknown admin key or malformed token",
                headers=UNAUTHORIZED_HEADERS,
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
    principal = auth.authenticate(credentials.credentials if credentials else None)
    if principal.device_id is not None:
        await _check_device(request, principal)
    return principal


async def _check_device(request: Request, principal: Principal) -> None:
    """A device's access token works only while the device is registered: one record
    read per request (in the engine's thread pool), so a revocation or an erasure
    of the user ends the token at once."""
    engine: Engine | None = getattr(request.app.state, "engine", None)
    if engine is None:
        raise ApiError(503, "not_ready", "the engine is not open yet")
    assert principal.user_id is not None and principal.device_id is not None
    if not await run_in_threadpool(engine.device_active, principal.user_id, principal.device_id):
        if await run_in_threadpool(engine.sync.status, principal.user_id) == "erased":
            raise ApiError(  # every copy of an erased user resets (docs/sync.md)
                409,
                "user_erased",
                "this user was erased: wipe the device's copy; nothing was written",
            )
        raise ApiError(
            401,
            "device_revoked",
            "this device was revoked, offline too long, or its user erased; register it again",
            headers=UNAUTHORIZED_HEADERS,
        )


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


async def acting_user_not_device(
    user_id: Annotated[str, Depends(acting_user)],
    principal: Annotated[Principal, Depends(authenticated)],
) -> str:
    """Dependency: as ``acting_user``, but not through a device's token (what only the
    user or an admin may do, such as registering devices)."""
    if principal.device_id is not None:
        raise ApiError(
            403, "device_token_not_allowed", "a device's token may not do this: use a user token"
        )
    return user_id


Authenticated = Annotated[Principal, Depends(authenticated)]
AdminOnly = Annotated[Principal, Depends(admin_only)]
ActingUser = Annotated[str, Depends(acting_user)]
ActingUserNotDevice = Annotated[str, Depends(acting_user_not_device)]
