"""ownrank: personalization that can truly forget.

The embedded SDK::

    from ownrank import Engine
    with Engine("data") as engine:
        engine.catalog.upsert([{"id": "a1", "title": "Tomato blight, early signs"}])
        engine.search("plant diseases")
"""

from .engine import BaseEncoder, Engine, EngineConfig, Event, Hit, Item, Recommendation
from .errors import (
    BatchTooLargeError,
    DimensionMismatchError,
    InvalidFilterError,
    InvalidInputError,
    InvalidItemError,
    ItemNotFoundError,
    ModelLoadError,
    ModelMismatchError,
    OwnrankError,
    StaleGenerationError,
    StoreFormatError,
    UserErasedError,
)

__version__ = "0.1.0"

__all__ = [
    "BaseEncoder",
    "BatchTooLargeError",
    "DimensionMismatchError",
    "Engine",
    "EngineConfig",
    "Event",
    "Hit",
    "InvalidFilterError",
    "InvalidInputError",
    "InvalidItemError",
    "Item",
    "ItemNotFoundError",
    "ModelLoadError",
    "ModelMismatchError",
    "OwnrankError",
    "Recommendation",
    "StaleGenerationError",
    "StoreFormatError",
    "UserErasedError",
    "__version__",
]
