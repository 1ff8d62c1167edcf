"""Users: the engine's user side, put together from its parts.

Each part is one idea in a module of its own:

- ``record_store.RecordStore``: keyed ids, sealing, read / put / delete / scan of user
  records (the only code that touches the ``users`` database);
- ``write_path.WritePath``: interact, forget, consent, import, export and the catch-up
  that drops deleted catalog items; ledgers and shared-statistic deltas;
- ``erasure.Erasure``: erase and explicit re-creation (the erasure fence first);
- ``recommender.Recommender``: the ranking pipeline (candidates -> scorers -> ranker)
  and personalized search, which only read.

``Users`` holds one of each over one store and passes the SDK's calls on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ..storage.erasure_fence import ErasureFence
from ..storage.keystore import Keystore
from .catalog import Catalog, Hit
from .config import EngineConfig
from .erasure import Erasure
from .erasure_log import ErasureLog
from .events import Event
from .ranker import Recommendation
from .recommender import Recommender
from .record_store import RecordStore, check_user_id
from .shared_stats import SharedStatistics
from .user_record import UserRecord
from .user_reports import BulkInteractReport, ErasureReceipt, ForgetReport, InteractReport
from .write_path import WritePath

__all__ = [
    "BulkInteractReport",
    "ErasureReceipt",
    "ForgetReport",
    "InteractReport",
    "Recommendation",
    "Users",
    "check_user_id",
]


class Users:
    """The user side of one store: records, writes, erasure and ranking."""

    def __init__(
        self,
        catalog: Catalog,
        shared: SharedStatistics,
        config: EngineConfig,
        clock: Callable[[], float],
        model_fingerprint: str,
        keystore: Keystore,
        fence: ErasureFence,
    ) -> None:
        self.catalog = catalog
        self.env = catalog.env
        self.shared = shared
        self.config = config
        self.clock = clock
        self.keystore = keystore
        self.fence = fence
        self.erasures = ErasureLog(
            self.env, config.tombstone_retention_days, config.erasure_journal_retention_days
        )
        self.records = RecordStore(
            self.env,
            catalog.store.meta,
            keystore,
            fence,
            seal_records=config.encrypt_user_records,
            clock=clock,
        )
        self.writes = WritePath(
            catalog, shared, config, clock, self.records, self.erasures, self.erase
        )
        self.erasure = Erasure(
            catalog,
            shared,
            config,
            clock,
            self.records,
            self.erasures,
            self.writes,
            model_fingerprint,
        )
        self.ranking = Recommender(catalog, shared, config, clock, self.records, self.writes)
        # what this process keeps of the shared statistic before an erasure goes (other
        # processes replace theirs on their next call: the statistic changed)
        self.erasure.on_erased += [self.ranking.popularity.forget, catalog.keeper.forget_shared]

    # -- records --------------------------------------------------------------------------

    def key(self, user_id: str) -> bytes:
        """The user's keyed id (HMAC of the id with the store's secret)."""
        return self.records.key(user_id)

    def record(self, user_id: str) -> UserRecord | None:
        return self.records.read(user_id)

    # -- writes ---------------------------------------------------------------------------

    def interact(
        self,
        user_id: str,
        events: Sequence[Event | Mapping[str, Any]],
        generation: int | None = None,
    ) -> InteractReport:
        """Record feedback; events on unknown items are reported back, not stored."""
        return self.writes.interact(user_id, events, generation)

    def interact_many(
        self, batches: Mapping[str, Sequence[Event | Mapping[str, Any]]]
    ) -> BulkInteractReport:
        return self.writes.interact_many(batches)

    def set_consent(self, user_id: str, shared: bool) -> int:
        return self.writes.set_consent(user_id, shared)

    def forget(
        self,
        user_id: str,
        item_ids: Iterable[str] | None = None,
        before: datetime | None = None,
        after: datetime | None = None,
    ) -> ForgetReport:
        return self.writes.forget(user_id, item_ids, before, after)

    def export(self, user_id: str) -> dict[str, Any]:
        return self.writes.export(user_id)

    def import_user(self, data: Mapping[str, Any], expected_version: int | None = None) -> int:
        return self.writes.import_user(data, expected_version)

    def recount_shared(self, txn: Any) -> int:
        return self.writes.recount_shared(txn)

    # -- erasure --------------------------------------------------------------------------

    def erase(self, user_id: str) -> ErasureReceipt:
        return self.erasure.erase(user_id)

    def recreate(self, user_id: str, consent_shared: bool | None = None) -> int:
        return self.erasure.recreate(user_id, consent_shared)

    def fence_expire(self, now: float) -> int:
        return self.erasure.fence_expire(now)

    # -- ranking --------------------------------------------------------------------------

    def warm_up(self) -> None:
        self.ranking.warm_up()

    def recommend(
        self,
        user_id: str,
        n: int = 10,
        filters: Mapping[str, Any] | None = None,
        *,
        exclude_seen: bool = True,
        diversity: float = 0.0,
    ) -> list[Recommendation]:
        return self.ranking.recommend(
            user_id, n, filters, exclude_seen=exclude_seen, diversity=diversity
        )

    def recommend_from_history(
        self,
        events: Sequence[Event | Mapping[str, Any]],
        n: int = 10,
        filters: Mapping[str, Any] | None = None,
        *,
        exclude_seen: bool = True,
        diversity: float = 0.0,
    ) -> list[Recommendation]:
        return self.ranking.recommend_from_history(
            events, n, filters, exclude_seen=exclude_seen, diversity=diversity
        )

    def search(
        self,
        query: str,
        user_id: str | None = None,
        n: int = 10,
        filters: Mapping[str, Any] | None = None,
    ) -> list[Hit]:
        return self.ranking.search(query, user_id, n, filters)
