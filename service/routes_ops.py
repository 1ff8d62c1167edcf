"""Operator routes: minting user tokens, liveness, readiness and metrics."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .auth import AdminOnly, TokenSigner
from .deps import EngineDep, MetricsDep, SettingsDep
from .errors import ApiError, responses
from .schemas import Health, Readiness, TokenRequest, TokenResponse

router = APIRouter()


@router.post("/tokens", tags=["auth"], responses=responses(400, 401, 403, 413, 422, 429))
def mint_token(
    body: TokenRequest, request: Request, _admin: AdminOnly, settings: SettingsDep
) -> TokenResponse:
    """Mint a signed bearer token that acts only for ``user_id``, until it expires."""
    ttl = body.ttl_seconds if body.ttl_seconds is not None else settings.token_ttl_seconds
    if ttl > settings.token_max_ttl_seconds:
        # the schema states the default maximum; this server's may differ
        limit = settings.token_max_ttl_seconds
        raise ApiError(
            422,
            "validation_error",
            f"ttl_seconds may be at most {limit}",
            details=[
                {
                    "loc": ["body", "ttl_seconds"],
                    "msg": f"Input should be less than or equal to {limit}",
                    "type": "less_than_equal",
                }
            ],
        )
    signer: TokenSigner = request.app.state.signer
    token, claims = signer.mint(body.user_id, ttl)
    return TokenResponse(
        token=token,
        user_id=claims.user_id,
        expires_at=datetime.fromtimestamp(claims.expires_at, UTC),
    )


@router.get("/health", tags=["operations"])
async def health() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get("/ready", tags=["operations"], responses=responses(503))
def ready(engine: EngineDep) -> Readiness:
    """Readiness: the store is open and the catalog index loaded (503 until then)."""
    index = engine.index_status()
    return Readiness(
        status="ready", items=index.items, catalog_seq=index.catalog_seq, index=index.kind
    )


@router.get(
    "/metrics",
    tags=["operations"],
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics(metrics: MetricsDep) -> Response:
    """Prometheus metrics (no user ids, item ids or tokens in any label)."""
    return Response(metrics.exposition(), media_type=metrics.content_type)
