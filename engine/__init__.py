"""Models, ranking and erasure logic of ownrank."""

from .catalog import Catalog, DeleteReport, Hit, UpsertReport
from .config import EngineConfig
from .encoder import BaseEncoder, Encoder, model_fingerprint
from .engine import Engine
from .events import Event
from .items import Item
from .ranker import Recommendation
from .user_reports import ErasureReceipt, ForgetReport, InteractReport

__all__ = [
    "BaseEncoder",
    "Catalog",
    "DeleteReport",
    "Encoder",
    "Engine",
    "EngineConfig",
    "ErasureReceipt",
    "Event",
    "ForgetReport",
    "Hit",
    "InteractReport",
    "Item",
    "Recommendation",
    "UpsertReport",
    "model_fingerprint",
]
