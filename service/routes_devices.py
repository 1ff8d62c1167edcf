"""Device routes: a user's devices register, refresh their tokens, and are revoked one
by one (``engine/devices.py`` keeps them; ``auth.py`` has the token format).

- ``POST /users/{user_id}/devices``: the user (a plain user token) or an admin
  registers a device; it gets an access token and a refresh token.
- ``POST /devices/refresh``: no credential but the refresh token, which rotates:
  the answer holds a new pair, and the old refresh token is dead (presented again,
  it revokes the device: it was copied).
- ``GET /users/{user_id}/devices`` lists them; ``DELETE .../{device_id}`` revokes
  one (the admin, the user, or that device itself), and its tokens fail at once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Path, Request
from fastapi.responses import Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .. import Device, DeviceRevokedError, Engine, InvalidInputError
from ..engine.devices import LABEL_PATTERN, MAX_LABEL_CHARS, check_label
from .auth import (
    MAX_CREDENTIAL_CHARS,
    UNAUTHORIZED_HEADERS,
    ActingUser,
    ActingUserNotDevice,
    Authenticated,
    TokenError,
    TokenSigner,
)
from .deps import EngineDep, SettingsDep
from .errors import ApiError, responses
from .settings import ServiceSettings

router = APIRouter(tags=["devices"])

DEVICE_ID_PATTERN = r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$"
DeviceIdPath = Annotated[
    str, Path(pattern=DEVICE_ID_PATTERN, description="a device id (the UUID register returned)")
]
DeviceLabel = Annotated[
    str,
    Field(
        max_length=MAX_LABEL_CHARS,
        # stated for clients; checked by the engine's rule (the same pattern)
        json_schema_extra={"pattern": LABEL_PATTERN},
        description="e.g. the device's name; no control characters",
    ),
    AfterValidator(check_label),
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class DeviceRequest(_Request):
    label: DeviceLabel | None = None


class RefreshRequest(_Request):
    refresh_token: str = Field(min_length=1, max_length=MAX_CREDENTIAL_CHARS)


class DeviceTokens(BaseModel):
    """A device's tokens: the access token is a bearer credential for the user's
    routes; the refresh token only buys the next pair, once."""

    device_id: str
    token_type: Literal["bearer"] = "bearer"
    access_token: str
    access_expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime


class DeviceRegistered(DeviceTokens):
    label: str
    registered_at: datetime


class DeviceOut(BaseModel):
    device_id: str
    label: str
    registered_at: datetime
    refreshed_at: datetime  # registered, or last refreshed its tokens
    counter: int  # refreshes so far


class DeviceList(BaseModel):
    devices: list[DeviceOut]


def _at(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _tokens(
    request: Request, engine: Engine, settings: ServiceSettings, user_id: str, device: Device
) -> DeviceTokens:
    """A fresh pair: the refresh token names the device's current refresh count, and
    lasts as long as the engine lets a device stay offline."""
    signer: TokenSigner = request.app.state.signer
    access, a = signer.mint(user_id, settings.device_access_ttl_seconds, device_id=device.device_id)
    offline = int(engine.config.device_max_offline_days * 86_400)
    refresh, r = signer.mint(
        user_id, offline, device_id=device.device_id, refresh_counter=device.counter
    )
    return DeviceTokens(
        device_id=device.device_id,
        access_token=access,
        access_expires_at=_at(a.expires_at),
        refresh_token=refresh,
        refresh_expires_at=_at(r.expires_at),
    )


def _unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message, headers=UNAUTHORIZED_HEADERS)


@router.post(
    "/users/{user_id}/devices",
    status_code=201,
    responses=responses(400, 401, 403, 409, 413, 422, 429, 503),
)
def register_device(
    user_id: ActingUserNotDevice,
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    body: Annotated[DeviceRequest | None, Body()] = None,
) -> DeviceRegistered:
    """Register a device of the user (a plain user token or an admin key; a device's
    token may not add devices): its id and its first access and refresh tokens. 409
    ``too_many_devices`` past the server's limit per user."""
    device = engine.register_device(user_id, body.label if body else None)
    tokens = _tokens(request, engine, settings, user_id, device)
    return DeviceRegistered(
        **tokens.model_dump(), label=device.label, registered_at=device.registered_at
    )


@router.post("/devices/refresh", responses=responses(400, 401, 413, 422, 503))
def refresh_device(
    body: RefreshRequest, request: Request, engine: EngineDep, settings: SettingsDep
) -> DeviceTokens:
    """Trade a device's refresh token for a new access and refresh token (no
    Authorization header). The old refresh token is dead from then on: presenting it
    again revokes the device. 401 ``token_expired`` when the device was offline past
    the maximum, ``device_revoked`` when it is no longer registered."""
    signer: TokenSigner = request.app.state.signer
    try:
        claims = signer.verify(body.refresh_token, refresh=True)
    except TokenError as exc:
        if exc.code == "token_expired":
            raise _unauthorized(
                exc.code,
                "the refresh token has expired: the device was offline longer than the "
                "maximum; register it again",
            ) from None
        raise _unauthorized(exc.code, exc.message) from None
    assert claims.device_id is not None and claims.counter is not None
    try:
        device = engine.refresh_device(claims.user_id, claims.device_id, claims.counter)
    except DeviceRevokedError as exc:
        raise _unauthorized(exc.code, exc.message) from None
    return _tokens(request, engine, settings, claims.user_id, device)


@router.get("/users/{user_id}/devices", responses=responses(400, 401, 403, 422, 429, 503))
def list_devices(user_id: ActingUser, engine: EngineDep) -> DeviceList:
    """The user's registered devices, by device id."""
    return DeviceList(
        devices=[
            DeviceOut(
                device_id=d.device_id,
                label=d.label,
                registered_at=d.registered_at,
                refreshed_at=d.refreshed_at,
                counter=d.counter,
            )
            for d in engine.devices(user_id)
        ]
    )


@router.delete(
    "/users/{user_id}/devices/{device_id}",
    status_code=204,
    response_class=Response,
    responses=responses(400, 401, 403, 404, 422, 429, 503),
)
def revoke_device(
    user_id: ActingUser, device_id: DeviceIdPath, caller: Authenticated, engine: EngineDep
) -> Response:
    """Revoke one device (the admin, the user, or the device itself): its tokens get
    401 ``device_revoked`` from now on; the user's other devices keep working."""
    if caller.device_id is not None and caller.device_id != device_id.lower():
        raise ApiError(
            403, "device_token_not_allowed", "a device's token may revoke only that device"
        )
    try:
        found = engine.revoke_device(user_id, device_id)
    except InvalidInputError:  # a UUID no device can have (the nil one)
        found = False
    if not found:
        raise ApiError(404, "device_not_found", "the user has no device with this id")
    return Response(status_code=204)
