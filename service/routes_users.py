"""User routes: feedback, recommendations, personalized search, and the user's rights
(export, forget, consent, erase). A user token acts only on its own ``{user_id}``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Response

from .. import Engine, InteractReport, RatingScale
from .. import Recommendation as SdkRecommendation
from .auth import ActingUser, AdminOnly, Authenticated
from .conditional import IF_MATCH_RULE, expected_version, version_tag
from .deps import EngineDep, MetricsDep, SettingsDep
from .errors import ApiError, responses
from .rating_scale import check_ratings
from .routes_catalog import hits
from .schemas import (
    BulkInteractRequest,
    BulkInteractResponse,
    ConsentRequest,
    EventIn,
    Explanation,
    ForgetRequest,
    ForgetResponse,
    HistoryRecommendRequest,
    HitsResponse,
    InteractRequest,
    InteractResponse,
    ItemOut,
    Recommendation,
    RecommendRequest,
    RecommendResponse,
    RecreateRequest,
    SearchRequest,
    UserExport,
    UserIdPath,
    VersionResponse,
)
from .schemas_erasure import AuditResponse, ErasureReceipt, PublicKeys

router = APIRouter(responses=responses(400, 401, 403, 409, 413, 422, 429, 503))


def _events(
    events: Sequence[EventIn],
    limit: int,
    engine: Engine,
    loc: tuple[str | int, ...] = ("body", "events"),
) -> list[dict[str, Any]]:
    if len(events) > limit:
        raise ApiError(
            413, "batch_too_large", f"{len(events)} events in one call; the limit is {limit}"
        )
    check_ratings(events, engine.config.rating_scale or RatingScale(), loc)
    return [e.model_dump(exclude_none=True) for e in events]


def recommendations(found: list[SdkRecommendation]) -> RecommendResponse:
    return RecommendResponse(
        results=[
            Recommendation(
                item_id=r.item_id,
                score=r.score,
                item=ItemOut.of(r.item),
                explanation=Explanation.model_validate(r.explanation),
            )
            for r in found
        ]
    )


@router.post("/users/{user_id}/interactions", tags=["users"])
def interact(
    user_id: ActingUser,
    body: InteractRequest,
    engine: EngineDep,
    settings: SettingsDep,
) -> InteractResponse:
    """Record a batch of feedback events. A malformed event rejects the whole batch;
    events on items not in the catalog are listed and not stored. An event that
    repeats a stored event's ``id`` and content is a retry (counted in
    ``duplicates``, nothing changes); the same id with other content is 409
    ``event_id_conflict``, an unknown id older than the record remembers is 409
    ``reset_required``: nothing of the batch is stored then."""
    report = engine.interact(
        user_id,
        _events(body.events, settings.max_batch_events, engine),
        generation=body.generation,
    )
    return interact_response(report)


@router.post("/interactions", tags=["users"])
def interact_many(
    body: BulkInteractRequest, _admin: AdminOnly, engine: EngineDep, settings: SettingsDep
) -> BulkInteractResponse:
    """Admin, for bulk ingest: feedback of many users in one group commit. A malformed
    event rejects the whole call; erased users are listed and not written."""
    users = [b.user_id for b in body.batches]
    if len(set(users)) != len(users):
        raise ApiError(400, "duplicate_user", "a user id appears twice in batches")
    total = sum(len(b.events) for b in body.batches)
    limit = settings.max_batch_events * 10
    if total > limit:
        raise ApiError(413, "batch_too_large", f"{total} events in one call; the limit is {limit}")
    batches = {
        b.user_id: _events(
            b.events, settings.max_batch_events, engine, ("body", "batches", pos, "events")
        )
        for pos, b in enumerate(body.batches)
    }
    report = engine.interact_many(batches)
    return BulkInteractResponse(
        results={uid: interact_response(r) for uid, r in report.reports.items()},
        erased=report.erased,
        conflicts=report.conflicts,
    )


def interact_response(report: InteractReport) -> InteractResponse:
    return InteractResponse(
        accepted=report.accepted,
        unknown_items=report.unknown_items,
        version=report.version,
        generation=report.generation,
        duplicates=report.duplicates,
        event_ids=report.event_ids,
    )


@router.post("/users/{user_id}/recommend", tags=["users"])
def recommend(
    user_id: ActingUser,
    engine: EngineDep,
    metrics: MetricsDep,
    body: Annotated[RecommendRequest | None, Body()] = None,
) -> RecommendResponse:
    """Recommendations for the user, each with an explanation. The body is optional;
    unknown users get the cold-start list."""
    body = body or RecommendRequest()
    started = time.perf_counter()
    found = engine.recommend(
        user_id, body.n, body.filters, exclude_seen=body.exclude_seen, diversity=body.diversity
    )
    metrics.recommend_latency.labels(kind="user").observe(time.perf_counter() - started)
    return recommendations(found)


@router.post("/users/{user_id}/search", tags=["users"])
def personalized_search(
    user_id: ActingUser, body: SearchRequest, engine: EngineDep
) -> HitsResponse:
    """Semantic search re-ranked by the user's model."""
    return hits(engine.search(body.query, body.n, body.filters, user_id=user_id))


@router.post("/recommend/from-history", tags=["users"])
def recommend_from_history(
    body: HistoryRecommendRequest,
    _caller: Authenticated,
    engine: EngineDep,
    metrics: MetricsDep,
    settings: SettingsDep,
) -> RecommendResponse:
    """Stateless recommendations from a posted history: nothing is stored."""
    events = _events(body.events, settings.max_batch_events, engine)
    started = time.perf_counter()
    found = engine.recommend_from_history(
        events, body.n, body.filters, exclude_seen=body.exclude_seen, diversity=body.diversity
    )
    metrics.recommend_latency.labels(kind="history").observe(time.perf_counter() - started)
    return recommendations(found)


@router.get("/users/{user_id}/export", tags=["users"])
def export_user(user_id: ActingUser, engine: EngineDep, response: Response) -> UserExport:
    """Everything stored about the user (``exists`` is false for an unknown user). The
    ``ETag`` is the record version (``"0"``: no such user): send it back as
    ``If-Match`` to ``PUT /users/{user_id}``."""
    data = engine.export(user_id)
    response.headers["ETag"] = version_tag(int(data.get("version", 0)))
    return UserExport.model_validate(data)


@router.put("/users/{user_id}", tags=["users"], responses=responses(412, 428))
def import_user(
    user_id: UserIdPath,
    body: UserExport,
    _admin: AdminOnly,
    engine: EngineDep,
    response: Response,
    if_match: Annotated[str | None, Header(description=IF_MATCH_RULE)] = None,
) -> VersionResponse:
    """Restore a user from an export (replaces the current record). Admin only. A
    conditional write: ``If-Match`` names the version the caller read (the export's
    ``ETag``; ``"0"`` = the user must not exist; ``*`` = whatever is there); another
    version is 412 ``version_conflict`` and nothing is written, no ``If-Match`` is
    428."""
    if body.user_id != user_id:
        raise ApiError(400, "user_id_mismatch", "the export is of another user id")
    version = engine.import_user(body.model_dump(), expected_version=expected_version(if_match))
    response.headers["ETag"] = version_tag(version)
    return VersionResponse(version=version)


@router.post("/users/{user_id}/forget", tags=["users"])
def forget(user_id: ActingUser, body: ForgetRequest, engine: EngineDep) -> ForgetResponse:
    """Forget the events matching all given criteria; the model is refit without them."""
    report = engine.forget(user_id, body.item_ids, before=body.before, after=body.after)
    return ForgetResponse(
        events_removed=report.events_removed,
        shared_units_subtracted=report.shared_units_subtracted,
        version=report.version,
    )


@router.put("/users/{user_id}/consent", tags=["users"])
def set_consent(user_id: ActingUser, body: ConsentRequest, engine: EngineDep) -> VersionResponse:
    """Give or withdraw consent to shared statistics (withdrawal subtracts at once)."""
    return VersionResponse(version=engine.set_consent(user_id, body.shared_statistics))


@router.delete("/users/{user_id}", tags=["users"])
def erase_user(user_id: ActingUser, engine: EngineDep, metrics: MetricsDep) -> ErasureReceipt:
    """Erase the user: their key is deleted and their shared contributions subtracted,
    in one transaction. Returns the receipt."""
    receipt = engine.erase(user_id)
    metrics.erasures.inc()
    return ErasureReceipt.model_validate(receipt.as_dict())


@router.post("/users/{user_id}/recreate", tags=["users"])
def recreate_user(user_id: ActingUser, body: RecreateRequest, engine: EngineDep) -> VersionResponse:
    """Bring an erased user back explicitly (new consent): lifts the tombstone that
    otherwise rejects every write for this user with 409 ``user_erased``."""
    return VersionResponse(
        version=engine.recreate_user(user_id, shared_statistics=body.shared_statistics)
    )


@router.get("/users/{user_id}/audit", tags=["users"])
def audit_user(user_id: UserIdPath, _admin: AdminOnly, engine: EngineDep) -> AuditResponse:
    """Admin: confirm nothing of the user is left: no record, no data key, no ledger,
    shared statistics equal to the ledgers of existing users, and a byte scan of
    every file of the store for the raw user id."""
    return AuditResponse.model_validate(engine.audit(user_id).as_dict())


@router.get("/receipts/public-keys", tags=["users"])
def receipt_public_keys(engine: EngineDep) -> PublicKeys:
    """The operator's receipt signing keys (current and retired), to verify receipts."""
    return PublicKeys(keys=engine.receipt_public_keys())
