"""The caps on a user's record: how many events it keeps, and how many bytes.

The newest ``max_events`` events are kept, and the record stays under
``max_record_bytes`` (events go first, oldest first; then earlier items; then
retired event ids). The items of dropped events stay excluded as seen
(``UserRecord.earlier``) and, for a stored user, their ids stay known
(``UserRecord.retired``, ``event_ids.py``). Caps count events, so every copy of a
user's record (a device's too) keeps the same ones.
"""

from __future__ import annotations

from .config import EngineConfig
from .event_merge import retire
from .record_cipher import OVERHEAD
from .user_record import StoredEvent, UserRecord


def event_order(event: StoredEvent) -> tuple[int, int, int, bytes]:
    """Where an event stands in the log: by time; within a second, the engine's events
    by sequence number (the order they came in), then client ids by their bytes. The
    order depends on the set of events alone, never on the order pushes arrived in,
    so every copy folds the same events the same way (``user_sync.py``)."""
    if isinstance(event.eid, bytes):
        return event.ts, 1, 0, event.eid
    return event.ts, 0, event.eid, b""


def apply_caps(
    record: UserRecord,
    user_id: str | None,
    config: EngineConfig,
    *,
    collaborative: bool,
    dimension: int,
    head_rows: int = 0,
) -> None:
    """Apply the caps to ``record`` in place. The byte check bounds what the write
    will add: a ledger naming every item of the events, a model of the largest size
    (head + interests), and a kept head answer of ``head_rows`` rows
    (``head_answer.py``)."""
    cfg = config

    def drop(count: int) -> None:
        dropped = record.events[:count]
        del record.events[:count]
        record.remember_dropped(dropped, cfg.max_earlier_items)
        if user_id is not None:
            retire(record, user_id, dropped, cfg.retired_event_ids)

    record.events.sort(key=event_order)
    if len(record.events) > cfg.max_events:
        drop(len(record.events) - cfg.max_events)
    record.trim_earlier(cfg.max_earlier_items)
    record.retired.trim(cfg.retired_event_ids)
    while size_bound(record, cfg, collaborative, dimension, head_rows) > cfg.max_record_bytes:
        if record.events:
            drop(max(1, len(record.events) // 16))
        elif record.earlier:
            record.trim_earlier(len(record.earlier) // 2)
        elif len(record.retired):
            record.retired.trim(len(record.retired) // 2)
        else:
            break


def size_bound(
    record: UserRecord,
    config: EngineConfig,
    collaborative: bool,
    dimension: int,
    head_rows: int = 0,
) -> int:
    """The most bytes the sealed record can take once written."""
    items = sorted(record.item_ids())
    probe = UserRecord(
        record.consent_shared,
        record.created_at,
        record.version + 1,
        record.log,
        None,
        # the largest ledger: every item liked (and the newest K of them forming pairs)
        {"pop": items, "co": items[: config.collaborative_items]}
        if collaborative
        else {"pop": items},
        record.earlier,
        record.generation,
        record.next_seq,
        record.retired,
        record.devices,
    )
    model_bound = 2 * dimension + 64 + 4 * len(record.events)
    head_bound = 4 * head_rows + 48 if head_rows else 0  # (rows, version, digest, keys)
    return len(probe.to_bytes()) + model_bound + head_bound + OVERHEAD
