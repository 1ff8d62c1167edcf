"""The SDK's front door: what ``import ownrank`` offers is pinned here, so a change to it
is a decision (and a changelog line), never an accident; and the service goes through
that door only."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import ownrank
from ownrank import Engine

ROOT = Path(__file__).resolve().parents[1]

EXPORTS = {
    "AuditReport", "BaseEncoder", "BatchTooLargeError", "BulkInteractReport", "Catalog",
    "DeleteReport", "DimensionMismatchError", "Encoder", "Engine", "EngineConfig",
    "ErasureReceipt", "Event", "Explanation", "Finding", "ForgetReport", "Hit",
    "IndexStatus", "InteractReport", "InvalidFilterError", "InvalidInputError",
    "InvalidItemError", "Item", "ItemNotFoundError", "ModelLoadError", "ModelMismatchError",
    "OwnrankError", "RatingScale", "RatingScaleMismatchError", "Recommendation",
    "ReconcileReport", "StaleGenerationError", "StoreBusyError", "StoreFormatError",
    "UpsertReport", "UserErasedError", "__version__",
    "EventIdConflictError", "ResetRequiredError", "VersionConflictError",
    "ClockAheadError", "SyncResult", "DeviceClient", "DeviceWiped",
    # devices (engine/devices.py)
    "Device", "DeviceRevokedError", "TooManyDevicesError",
    # device catalog sync (engine/catalog_sync.py, catalog_wire.py, catalog_replica.py)
    "CatalogPage", "CatalogReplica", "ReplicaItem", "SyncItem", "SyncView",
}  # fmt: skip

ENGINE_PUBLIC = {
    # calls
    "audit", "backup", "backup_keystore", "close", "erase", "export", "forget",
    "import_user", "index_status", "info", "interact", "interact_many", "rebuild_index",
    "receipt_public_keys", "recommend", "recommend_from_history", "reconcile",
    "recreate_user", "rotate_master_key", "rotate_signing_key", "save_index", "search",
    "set_consent", "similar", "warm_up",
    "device_active", "devices", "refresh_device", "register_device", "revoke_device",
    # attributes and properties
    "catalog", "config", "data_dir", "encoder", "fingerprint", "last_reconcile",
    "warm_up_seconds", "ledgers_upgraded", "sync", "diagnostics",
}  # fmt: skip


def test_ownrank_exports_exactly_the_pinned_names() -> None:
    assert set(ownrank.__all__) == EXPORTS
    for name in EXPORTS:
        assert hasattr(ownrank, name), name


def test_every_type_an_engine_call_returns_is_exported() -> None:
    hints = {
        name: inspect.signature(getattr(Engine, name)).return_annotation
        for name in ENGINE_PUBLIC
        if callable(getattr(Engine, name, None))
    }
    returned = " ".join(str(h) for h in hints.values())
    for type_name in (
        "ErasureReceipt", "InteractReport", "BulkInteractReport", "ForgetReport",
        "Recommendation", "Hit", "AuditReport", "ReconcileReport", "IndexStatus", "Device",
    ):  # fmt: skip
        assert type_name in returned, type_name
        assert type_name in EXPORTS


def test_engine_public_surface_is_pinned(tmp_path: Path) -> None:
    from conftest import WordHashEncoder

    with Engine(tmp_path, encoder=WordHashEncoder()) as engine:
        public = {n for n in dir(engine) if not n.startswith("_")}
    assert public == ENGINE_PUBLIC


def _chain(node: ast.expr) -> list[str]:
    """``engine.catalog.keeper`` -> ["engine", "catalog", "keeper"]."""
    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        names.append(node.id)
    return names[::-1]


def test_the_service_uses_only_the_public_sdk() -> None:
    """No service module reaches past the engine's public surface: nothing private
    (``engine._users``) and not the catalog's insides (``engine.catalog.keeper``)."""
    offenders = []
    for path in sorted((ROOT / "service").glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            chain = _chain(node)
            if "engine" not in chain[:-1]:
                continue
            after = chain[chain.index("engine") + 1 :]
            private = bool(after) and (after[0].startswith("_") or after[0] not in ENGINE_PUBLIC)
            inside_catalog = after[:1] == ["catalog"] and bool({"keeper", "store"} & set(after))
            if private or inside_catalog:
                offenders.append(f"{path.name}:{node.lineno} {'.'.join(chain)}")
    assert not offenders, sorted(set(offenders))
