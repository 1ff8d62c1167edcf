"""Bring every user's ledger (and record format) in line with the store's settings.

A user's ledger says what they contribute to the shared statistics, and it
depends on ``shared_statistics`` (``"none"``, ``"popularity"``,
``"collaborative"``) and ``collaborative_items``. When a store is opened with
other settings than those its ledgers were written under (say an existing store
turning the collaborative layer on), every record is read, its ledger
recomputed from its retained events exactly as a write would compute it, the
shared statistics moved from the old ledger to the new one, and the record
rewritten (also in the current record format). This is deterministic, so the
result equals a store that had run with the new settings all along (tested), and
idempotent, so a crash half-way is finished by the next open.

The settings the ledgers were last brought in line with are kept in the store's
metadata (``ledger_settings``); while they match, opening costs one read. A config
that does not set ``shared_statistics`` runs with the store's mode
(``bind_shared_mode``), so a command opening a collaborative store with default
settings never turns the layer off by accident.
"""

from __future__ import annotations

from typing import Any

from ..storage.catalog_store import CatalogStore
from .catalog import Catalog
from .config import EngineConfig
from .personal_model import observations
from .record_cipher import RecordUnreadable
from .record_store import RecordStore
from .shared_stats import SharedStatistics
from .user_record import RECORD_FORMAT, UserRecord

META = "ledger_settings"
CHUNK = 256  # records per write transaction


def bind_shared_mode(store: CatalogStore, config: EngineConfig) -> EngineConfig:
    """``config`` with the store's ``shared_statistics`` when it does not set one (a
    new store: the default, ``"popularity"``)."""
    if "shared_statistics" in config.model_fields_set:
        return config  # explicit: the store is brought in line with it on open
    with store.env.read() as txn:
        stored = store.get_meta(txn, META)
    mode = stored[0] if isinstance(stored, list) and stored else None
    if mode is None or mode == config.shared_statistics:
        return config
    given = {name: getattr(config, name) for name in config.model_fields_set}
    return EngineConfig.model_validate({**given, "shared_statistics": mode})


def ledger_settings(config: EngineConfig) -> list[Any]:
    """What the ledgers depend on (and the record format they are written in)."""
    return [config.shared_statistics, config.collaborative_items, RECORD_FORMAT]


def positive_items(
    record: UserRecord, catalog: Catalog, txn: Any, config: EngineConfig
) -> list[str]:
    """The catalog items with net-positive feedback, oldest first: what the write
    path's refit returns (``personal_model.fit``) for the same events."""
    return [
        o.ref
        for o in observations(record.columns, config.learner)
        if o.liked and catalog.store.has_item(txn, o.ref)
    ]


def upgrade_ledgers(
    catalog: Catalog, shared: SharedStatistics, records: RecordStore, config: EngineConfig
) -> int:
    """Recompute every ledger if the settings changed; return how many records were
    rewritten (0 when the store was already in line)."""
    env = catalog.env
    wanted = ledger_settings(config)
    with env.read() as txn:
        stored = catalog.store.get_meta(txn, META)
        if stored == wanted:
            return 0
        keys = [key for key, _raw in records.scan(txn)]
    # a store without the setting, or written in another record format: every record
    reformat = not isinstance(stored, list) or stored[-1:] != [RECORD_FORMAT]
    rewritten = 0
    for start in range(0, len(keys), CHUNK):
        with env.write() as txn:
            for key in keys[start : start + CHUNK]:
                raw = records.raw(txn, key)
                try:
                    record, data_key = records.decode(key, raw)
                except RecordUnreadable:
                    continue  # an orphan: the reconcile on open purges it and recounts
                if record is None:
                    continue
                positives = positive_items(record, catalog, txn, config)
                ledger = shared.ledger_for(record.consent_shared, positives)
                if ledger == record.ledger and not reformat:
                    continue
                shared.apply(txn, record.ledger, ledger)
                record.ledger = ledger
                records.put(txn, key, records.encode(key, record, data_key))
                rewritten += 1
    with env.write() as txn:
        catalog.store.put_meta(txn, META, wanted)
    return rewritten
