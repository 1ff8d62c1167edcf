"""Models, ranking and erasure logic of ownrank."""

from .audit import AuditReport, Finding
from .catalog import Catalog, DeleteReport, Hit, UpsertReport
from .config import EngineConfig
from .encoder import BaseEncoder, Encoder, model_fingerprint
from .engine import Engine, IndexStatus
from .events import Event, RatingScale
from .items import Item
from .ranker import Explanation, Recommendation
from .reconcile import ReconcileReport
from .user_reports import BulkInteractReport, ErasureReceipt, ForgetReport, InteractReport

__all__ = [
    "AuditReport",
    "BaseEncoder",
    "BulkInteractReport",
    "Catalog",
    "DeleteReport",
    "Encoder",
    "Engine",
    "EngineConfig",
    "ErasureReceipt",
    "Event",
    "Explanation",
    "Finding",
    "ForgetReport",
    "Hit",
    "IndexStatus",
    "InteractReport",
    "Item",
    "RatingScale",
    "Recommendation",
    "ReconcileReport",
    "UpsertReport",
    "model_fingerprint",
]
