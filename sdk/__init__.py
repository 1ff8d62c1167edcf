"""ownrank: personalization that can truly forget.

The embedded SDK::

    from ownrank import Engine
    with Engine("data") as engine:
        engine.catalog.upsert([{"id": "a1", "title": "Tomato blight, early signs"}])
        engine.search("plant diseases")
"""

from .device_client import DeviceClient, DeviceWiped
from .engine import (
    AuditReport,
    BaseEncoder,
    BulkInteractReport,
    Catalog,
    DeleteReport,
    Encoder,
    Engine,
    EngineConfig,
    ErasureReceipt,
    Event,
    Explanation,
    Finding,
    ForgetReport,
    Hit,
    IndexStatus,
    InteractReport,
    Item,
    RatingScale,
    Recommendation,
    ReconcileReport,
    UpsertReport,
)
from .engine.catalog_replica import CatalogReplica, ReplicaItem
from .engine.catalog_wire import CatalogPage, SyncItem, SyncView
from .engine.devices import Device
from .engine.user_sync import SyncResult
from .errors import (
    BatchTooLargeError,
    ClockAheadError,
    DeviceRevokedError,
    DimensionMismatchError,
    EventIdConflictError,
    InvalidFilterError,
    InvalidInputError,
    InvalidItemError,
    ItemNotFoundError,
    ModelLoadError,
    ModelMismatchError,
    OwnrankError,
    RatingScaleMismatchError,
    ResetRequiredError,
    StaleGenerationError,
    StoreBusyError,
    StoreFormatError,
    TooManyDevicesError,
    UserErasedError,
    VersionConflictError,
)

__version__ = "0.1.0"

__all__ = [
    "AuditReport",
    "BaseEncoder",
    "BatchTooLargeError",
    "BulkInteractReport",
    "Catalog",
    "CatalogPage",
    "CatalogReplica",
    "ClockAheadError",
    "DeleteReport",
    "Device",
    "DeviceClient",
    "DeviceRevokedError",
    "DeviceWiped",
    "DimensionMismatchError",
    "Encoder",
    "Engine",
    "EngineConfig",
    "ErasureReceipt",
    "Event",
    "EventIdConflictError",
    "Explanation",
    "Finding",
    "ForgetReport",
    "Hit",
    "IndexStatus",
    "InteractReport",
    "InvalidFilterError",
    "InvalidInputError",
    "InvalidItemError",
    "Item",
    "ItemNotFoundError",
    "ModelLoadError",
    "ModelMismatchError",
    "OwnrankError",
    "RatingScale",
    "RatingScaleMismatchError",
    "Recommendation",
    "ReconcileReport",
    "ReplicaItem",
    "ResetRequiredError",
    "StaleGenerationError",
    "StoreBusyError",
    "StoreFormatError",
    "SyncItem",
    "SyncResult",
    "SyncView",
    "TooManyDevicesError",
    "UpsertReport",
    "UserErasedError",
    "VersionConflictError",
    "__version__",
]
