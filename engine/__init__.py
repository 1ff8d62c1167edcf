"""Models, ranking and erasure logic of ownrank."""

from .catalog import Catalog, DeleteReport, Hit, UpsertReport
from .config import EngineConfig
from .encoder import BaseEncoder, Encoder, model_fingerprint
from .engine import Engine
from .items import Item

__all__ = [
    "BaseEncoder",
    "Catalog",
    "DeleteReport",
    "Encoder",
    "Engine",
    "EngineConfig",
    "Hit",
    "Item",
    "UpsertReport",
    "model_fingerprint",
]
