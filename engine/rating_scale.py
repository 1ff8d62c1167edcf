"""The rating scale is stored with the data.

A rating's strength depends on the scale it was given on (``RatingScale.anchor``), so
a store records its scale (catalog meta ``rating_scale``) when it is created, and
keeps it: opening it with another configured scale raises
``RatingScaleMismatchError`` and changes nothing, rather than silently reading the
stored ratings on the new scale. A store written before the scale was recorded holds
ratings on 1-5: it is treated as 1-5, and gets that recorded. A store that has never
held anything (no catalog write, no user record) takes the configured scale.
"""

from __future__ import annotations

from typing import Any

from ..errors import RatingScaleMismatchError
from ..storage.catalog_store import CatalogStore
from .config import EngineConfig
from .events import DEFAULT_RATING_SCALE, RatingScale
from .record_store import USERS_DB

META_KEY = "rating_scale"


def _recorded(store: CatalogStore, txn: Any) -> RatingScale | None:
    raw = store.get_meta(txn, META_KEY)
    return None if raw is None else RatingScale.model_validate(raw)


def _is_empty(store: CatalogStore, txn: Any) -> bool:
    users = int(txn.stat(store.env.db(USERS_DB))["entries"])
    return store.catalog_seq(txn) == 0 and users == 0


def bind_rating_scale(store: CatalogStore, config: EngineConfig) -> EngineConfig:
    """The config an engine on ``store`` runs with: ``config`` with the store's scale
    (recorded first if the store has none yet).

    Raises ``RatingScaleMismatchError`` (writing nothing) when ``config`` names a
    scale other than the store's; ``config.rating_scale`` None takes the store's."""
    with store.env.read() as txn:
        stored = _recorded(store, txn)
    if stored is None:
        with store.env.write() as txn:  # the first open since the scale was recorded
            stored = _recorded(store, txn)
            if stored is None:
                fresh = _is_empty(store, txn)
                stored = (config.rating_scale if fresh else None) or DEFAULT_RATING_SCALE
                if config.rating_scale not in (None, stored):
                    raise RatingScaleMismatchError(str(stored), str(config.rating_scale))
                store.put_meta(txn, META_KEY, stored.model_dump())
    if config.rating_scale not in (None, stored):
        raise RatingScaleMismatchError(str(stored), str(config.rating_scale))
    if config.rating_scale == stored and config.learner.strengths.rating_scale == stored:
        return config
    # validated again, so the learner reads ratings on the scale (``EngineConfig``); also
    # when ``model_copy(update=...)``, which validates nothing, changed only the scale
    return EngineConfig.model_validate({**dict(config), "rating_scale": stored})
