"""Catalog and search routes: the back office (admin) and catalog reads (any caller).

Every route that touches the engine is a plain ``def``: FastAPI runs it in its
threadpool, so model inference and LMDB/FAISS work never block the event loop.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from .. import Hit as SdkHit
from .auth import AdminOnly, Authenticated
from .deps import EngineDep, SettingsDep
from .errors import ApiError, responses
from .schemas import (
    CatalogInfo,
    DeleteRequest,
    DeleteResponse,
    Hit,
    HitsResponse,
    ItemIdPath,
    ItemOut,
    PropertiesUpdate,
    SearchRequest,
    SimilarRequest,
    UpsertRequest,
    UpsertResponse,
)

# every catalog route may answer these (404: an unknown item id)
router = APIRouter(responses=responses(400, 401, 403, 404, 413, 422, 429, 503))


def hits(found: list[SdkHit]) -> HitsResponse:
    return HitsResponse(
        results=[Hit(item_id=h.item_id, score=h.score, item=ItemOut.of(h.item)) for h in found]
    )


def _check_batch(size: int, limit: int, what: str) -> None:
    if size > limit:
        raise ApiError(413, "batch_too_large", f"{size} {what} in one call; the limit is {limit}")


@router.post("/items", tags=["catalog"])
def upsert_items(
    body: UpsertRequest, _admin: AdminOnly, engine: EngineDep, settings: SettingsDep
) -> UpsertResponse:
    """Add or replace items in one transaction (all or nothing). Unchanged texts are not
    re-embedded."""
    _check_batch(len(body.items), settings.max_batch_items, "items")
    report = engine.catalog.upsert([item.model_dump() for item in body.items])
    return UpsertResponse(
        added=report.added,
        updated=report.updated,
        unchanged=report.unchanged,
        embedded=report.embedded,
    )


@router.post("/items/delete", tags=["catalog"])
def delete_items(
    body: DeleteRequest, _admin: AdminOnly, engine: EngineDep, settings: SettingsDep
) -> DeleteResponse:
    """Delete several items in one transaction; unknown ids are listed as missing."""
    _check_batch(len(body.ids), settings.max_batch_items, "ids")
    report = engine.catalog.delete(body.ids)
    return DeleteResponse(deleted=report.deleted, missing=report.missing)


@router.delete("/items/{item_id}", tags=["catalog"])
def delete_item(item_id: ItemIdPath, _admin: AdminOnly, engine: EngineDep) -> DeleteResponse:
    """Delete one item (404 if there is no such item)."""
    report = engine.catalog.delete([item_id])
    if report.missing:
        raise ApiError(404, "item_not_found", f"no item with id {item_id!r}")
    return DeleteResponse(deleted=report.deleted, missing=report.missing)


@router.get("/items/{item_id}", tags=["catalog"])
def get_item(item_id: ItemIdPath, _caller: Authenticated, engine: EngineDep) -> ItemOut:
    """One item of the catalog."""
    return ItemOut.of(engine.catalog.get(item_id))


@router.patch("/items/{item_id}/properties", tags=["catalog"])
def update_properties(
    item_id: ItemIdPath, body: PropertiesUpdate, _admin: AdminOnly, engine: EngineDep
) -> ItemOut:
    """Merge (or with ``replace``, set) an item's properties; never re-embeds."""
    return ItemOut.of(
        engine.catalog.update_properties(item_id, body.properties, replace=body.replace)
    )


@router.get("/catalog", tags=["catalog"])
def catalog_info(_admin: AdminOnly, engine: EngineDep) -> CatalogInfo:
    """Item count, catalog version, base model, rating scale, index and store sizes."""
    facts = engine.info(check_items=False)
    return CatalogInfo(
        items=facts["items"],
        catalog_seq=facts["catalog_seq"],
        model_fingerprint=facts["model_fingerprint"],
        dimension=facts["dimension"],
        rating_scale=facts["rating_scale"],
        index=facts["index"],
        lmdb=facts["lmdb"],
    )


@router.post("/items/{item_id}/similar", tags=["search"])
def similar_items(
    item_id: ItemIdPath,
    _caller: Authenticated,
    engine: EngineDep,
    body: Annotated[SimilarRequest | None, Body()] = None,
) -> HitsResponse:
    """Items closest in meaning to an item (the item itself excluded). The body is optional."""
    body = body or SimilarRequest()
    return hits(engine.similar(item_id, body.n, body.filters))


@router.post("/search", tags=["search"])
def search(body: SearchRequest, _caller: Authenticated, engine: EngineDep) -> HitsResponse:
    """Semantic search over the catalog, not personalized."""
    return hits(engine.search(body.query, body.n, body.filters))
