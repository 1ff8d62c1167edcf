"""The embedded engine: one data directory, one frozen base model, one catalog.

Data directory layout::

    DATA_DIR/lmdb/          LMDB environment (data.mdb, lock.mdb): the source of truth
    DATA_DIR/keystore/      LMDB environment of per-user data keys (see storage/keystore.py)
    DATA_DIR/keys/          master key file (unless given by the environment) and the
                            receipt signing keys (``EngineConfig.keys_dir`` moves them)
    DATA_DIR/catalog.index  FAISS index of the catalog, derived, rebuilt when needed
    DATA_DIR/erasure-fence/ the erasure fence: which (keyed) users were erased, outside
                            both backup sets (``storage/erasure_fence.py``)
    DATA_DIR/.ownrank.lock  held shared by every open engine, exclusively by compaction

The store records the base model's fingerprint when it is created and refuses
to open with any other model. Open one ``Engine`` per process (LMDB handles
must not cross ``fork()``); any number of processes may open the same directory.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from ..errors import DimensionMismatchError, ModelMismatchError
from ..storage import backup
from ..storage.catalog_store import CatalogStore
from ..storage.erasure_fence import FileErasureFence, fence_path
from ..storage.keystore import Keystore, MasterKeys
from ..storage.lmdb_env import LmdbEnvironment
from .audit import AuditReport, audit_user
from .catalog import Catalog, Hit
from .config import EngineConfig
from .devices import Device, Devices
from .diagnostics import Diagnostics
from .encoder import Encoder, load_encoder
from .events import Event, RatingScale
from .index_keeper import IndexKeeper
from .items import MAX_PROPERTY_DEPTH
from .ledger_upgrade import bind_shared_mode, upgrade_ledgers
from .rating_scale import bind_rating_scale
from .receipts import ReceiptSigner
from .reconcile import ReconcileReport, reconcile
from .shared_stats import SharedStatistics
from .user_sync import UserSync
from .users import (
    BulkInteractReport,
    ErasureReceipt,
    ForgetReport,
    InteractReport,
    Recommendation,
    Users,
)

INDEX_FILE = "catalog.index"
LMDB_DIR = backup.LMDB_DIR
KEYSTORE_DIR = backup.KEYSTORE_DIR
MASTER_KEY_FILE = "master.key"
RECEIPT_KEYS_DIR = "receipts"
NONCONFORMING_SHOWN = 20  # ids of nonconforming items ``info`` lists (it counts them all)


@dataclass(frozen=True)
class IndexStatus:
    items: int
    catalog_seq: int  # the catalog version the index reflects
    kind: str  # "flat" or "hnsw"


class Engine:
    """Entry point of the SDK: ``with Engine("data") as engine: engine.search("...")``."""

    def __init__(
        self,
        data_dir: Path | str,
        config: EngineConfig | None = None,
        *,
        encoder: Encoder | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config or EngineConfig()
        self.data_dir = Path(data_dir)
        self.encoder: Encoder = (
            encoder
            if encoder is not None
            else load_encoder(
                self.config.encoder_backend,
                model_dir=self.config.model_dir,
                threads=self.config.encoder_threads,
                batch_size=self.config.encode_batch_size,
            )
        )
        self._lock = backup.DirectoryLock(self.data_dir).shared()
        keys_dir = self.config.keys_dir or self.data_dir / "keys"
        try:
            self._keystore = Keystore(
                self.data_dir / KEYSTORE_DIR,
                MasterKeys.load(keys_dir / MASTER_KEY_FILE),
                sync=self.config.lmdb_sync,
            )
        except BaseException:
            self._lock.release()
            raise
        try:
            self._signer = ReceiptSigner(keys_dir / RECEIPT_KEYS_DIR)
            self._env = LmdbEnvironment(
                self.data_dir / LMDB_DIR,
                map_size=self.config.lmdb_map_size,
                max_readers=self.config.lmdb_max_readers,
                sync=self.config.lmdb_sync,
            )
        except BaseException:
            self._keystore.close()
            self._lock.release()
            raise
        try:
            store = CatalogStore(self._env)
            self._identity = store.initialize(self.encoder.fingerprint, self.encoder.dimension)
            store.backfill_item_keys()  # stores from before the index of item keys
            if self._identity.model_fingerprint != self.encoder.fingerprint:
                raise ModelMismatchError(self._identity.model_fingerprint, self.encoder.fingerprint)
            if self._identity.dimension != self.encoder.dimension:
                raise DimensionMismatchError(self._identity.dimension, self.encoder.dimension)
            # the store's collaborative mode unless the config names one (ledger_upgrade.py)
            self.config = bind_shared_mode(store, self.config)
            # ratings are read on the scale stored with the data (rating_scale.py)
            self.config = bind_rating_scale(store, self.config)
            keeper = IndexKeeper(
                self._env,
                store,
                self.config,
                self.data_dir / INDEX_FILE,
                stamp=f"{self._identity.store_id}/{self._identity.model_fingerprint}",
                dimension=self._identity.dimension,
            )
            self._fence = FileErasureFence(fence_path(self.data_dir), sync=self.config.lmdb_sync)
        except BaseException:
            self._env.close()
            self._keystore.close()
            self._lock.release()
            raise
        self._clock = clock
        self.catalog = Catalog(store, keeper, self.encoder, self.config, clock)
        self._shared = SharedStatistics(
            self._env,
            store,
            self.config.shared_statistics,
            self._identity.dimension,
            self.config.collaborative_items,
        )
        self.catalog.vector_listeners.append(self._shared.on_item_vector)
        self._users = Users(
            self.catalog,
            self._shared,
            self.config,
            clock,
            self.fingerprint,
            self._keystore,
            self._fence,
        )
        self._devices = Devices(self._users.writes, clock, self.config)
        self.sync = UserSync(self._users.writes, clock)  # device sync (engine/user_sync.py)
        self._closed = False
        # ledgers written under other settings (the collaborative layer turned on or
        # off, an older record format): recomputed from the retained events, once
        self.ledgers_upgraded = upgrade_ledgers(
            self.catalog, self._shared, self._users.records, self.config
        )
        # lists missing or behind (an older store, another process's write): built
        # now if cheap, else by ``warm_up`` or the first ranking call, in the background
        self.catalog.neighbours.update(budget=self.config.neighbour_sync_budget)
        self.last_reconcile: ReconcileReport | None = None
        if self.config.reconcile_on_open:
            self.last_reconcile = self.reconcile()
        self.warm_up_seconds: float | None = None
        if self.config.warm_up_on_open:
            self.warm_up()

    # -- the SDK surface -----------------------------------------------------------------

    def search(
        self,
        text: str,
        n: int = 10,
        filters: Mapping[str, Any] | None = None,
        *,
        user_id: str | None = None,
    ) -> list[Hit]:
        """Semantic search; with ``user_id``, re-ranked by that user's model.

        >>> [hit.item_id for hit in engine.search("roses", n=2)]
        ['a1', 'a2']
        >>> [hit.item_id for hit in engine.search("bread", n=2, filters={"topic": "cooking"})]
        ['a4', 'a3']
        """
        if user_id is None:
            return self.catalog.search(text, n, filters)
        return self._users.search(text, user_id, n, filters)

    def interact(
        self,
        user_id: str,
        events: Sequence[Event | Mapping[str, Any]],
        *,
        generation: int | None = None,
    ) -> InteractReport:
        """Record a batch of feedback events (see ``Event``). ``generation``: the user's
        generation the caller's copy is of (``InteractReport.generation``, exports); a
        write from an erased generation raises ``StaleGenerationError``.

        >>> report = engine.interact(
        ...     "doc-ann",
        ...     [{"kind": "like", "item_id": "a1"}, {"kind": "click", "item_id": "no-such-item"}],
        ... )
        >>> report.accepted, report.unknown_items, report.version, report.generation
        (1, ['no-such-item'], 1, 0)
        """
        return self._users.interact(user_id, events, generation)

    def interact_many(
        self, batches: Mapping[str, Sequence[Event | Mapping[str, Any]]]
    ) -> BulkInteractReport:
        """Feedback of many users in one group commit (bulk ingest).

        >>> bulk = engine.interact_many({"doc-bo": [{"kind": "click", "item_id": "a3"}]})
        >>> bulk.reports["doc-bo"].accepted, bulk.erased
        (1, [])
        """
        return self._users.interact_many(batches)

    def recommend(
        self,
        user_id: str,
        n: int = 10,
        filters: Mapping[str, Any] | None = None,
        *,
        exclude_seen: bool = True,
        diversity: float = 0.0,
    ) -> list[Recommendation]:
        """Items for the user, best first, never one the user has an event on (with
        ``exclude_seen``), each with its score and explanation; an unknown user gets
        the cold-start list (popular, else recent and diverse).

        >>> _ = engine.interact("doc-cy", [{"kind": "like", "item_id": "a3"}])
        >>> best = engine.recommend("doc-cy", n=3)[0]  # the other bread post, by its neighbour
        >>> best.item_id, best.explanation["reason"], best.explanation["because_of"]
        ('a4', 'neighbours', 'a3')
        >>> sorted(best.explanation["parts"])
        ['collaborative', 'dislikes', 'neighbours', 'personal', 'popularity', 'recency']
        """
        return self._users.recommend(
            user_id, n, filters, exclude_seen=exclude_seen, diversity=diversity
        )

    def recommend_from_history(
        self,
        history: Sequence[Event | Mapping[str, Any]],
        n: int = 10,
        filters: Mapping[str, Any] | None = None,
        *,
        exclude_seen: bool = True,
        diversity: float = 0.0,
    ) -> list[Recommendation]:
        """Stateless recommendations from a list of events; nothing is stored.

        >>> found = engine.recommend_from_history([{"kind": "like", "item_id": "a5"}], n=3)
        >>> len(found), "a5" in [r.item_id for r in found]
        (3, False)
        """
        return self._users.recommend_from_history(
            history, n, filters, exclude_seen=exclude_seen, diversity=diversity
        )

    def export(self, user_id: str) -> dict[str, Any]:
        """Everything stored about the user, as JSON-ready data (format 1).

        >>> _ = engine.interact("doc-di", [{"kind": "like", "item_id": "a2"}])
        >>> data = engine.export("doc-di")
        >>> data["exists"], [e["item_id"] for e in data["events"]], data["ledger"]
        (True, ['a2'], {'pop': ['a2']})
        """
        return self._users.export(user_id)

    def import_user(self, data: Mapping[str, Any], *, expected_version: int | None = None) -> int:
        """Restore a user from ``export`` output (replacing the record); returns the
        record version. A copy of an erased generation is refused. With
        ``expected_version`` (the version the caller read; 0 = no such user) a record
        that moved since raises ``VersionConflictError`` and nothing is written.

        >>> _ = engine.interact("doc-el", [{"kind": "like", "item_id": "a4"}])
        >>> data = engine.export("doc-el")
        >>> engine.import_user(data, expected_version=data["version"]) == data["version"] + 1
        True
        >>> engine.export("doc-el") == {**data, "version": data["version"] + 1}
        True
        >>> engine.import_user(data, expected_version=data["version"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ownrank.errors.VersionConflictError: user 'doc-el' is at version 2, not the expected 1...
        """
        return self._users.import_user(data, expected_version)

    def forget(
        self,
        user_id: str,
        item_ids: Iterable[str] | None = None,
        *,
        before: datetime | None = None,
        after: datetime | None = None,
    ) -> ForgetReport:
        """Drop the user's events matching every criterion given (items, before,
        after); the model is refit and the shared counts follow.

        >>> _ = engine.interact(
        ...     "doc-ed", [{"kind": "like", "item_id": "a4"}, {"kind": "like", "item_id": "a6"}]
        ... )
        >>> engine.forget("doc-ed", ["a4"]).events_removed
        1
        >>> [e["item_id"] for e in engine.export("doc-ed")["events"]]
        ['a6']
        """
        return self._users.forget(user_id, item_ids, before, after)

    def erase(self, user_id: str) -> ErasureReceipt:
        """Erase the user: the erasure fence first, then the record, the user's shared
        counts and data key (``erasure.py``); the receipt is signed (``receipts.py``).

        >>> _ = engine.interact("doc-fi", [{"kind": "like", "item_id": "a1"}])
        >>> receipt = engine.erase("doc-fi")
        >>> receipt.existed, receipt.data_key_destroyed, engine.export("doc-fi")["exists"]
        (True, True, False)
        """
        receipt = self._users.erase(user_id)
        signed = self._signer.sign(receipt.as_dict())
        return dataclasses.replace(
            receipt,
            key_id=signed["key_id"],
            signature_algorithm=signed["signature_algorithm"],
            signature=signed["signature"],
        )

    def recreate_user(self, user_id: str, *, shared_statistics: bool | None = None) -> int:
        """Bring an erased user back, explicitly (new consent), as a new generation;
        returns the record version.

        >>> _ = engine.erase("doc-gu")
        >>> engine.recreate_user("doc-gu", shared_statistics=False)
        1
        >>> engine.export("doc-gu")["generation"]
        1
        """
        return self._users.recreate(user_id, shared_statistics)

    def audit(self, user_id: str, terms: Mapping[str, bytes] | None = None) -> AuditReport:
        """Check that nothing of ``user_id`` is left (store, keystore, shared
        statistics, and a byte scan of every file under the data directory).

        >>> _ = engine.interact("doc-ha", [{"kind": "like", "item_id": "a5"}])
        >>> engine.audit("doc-ha").clean
        False
        >>> _ = engine.erase("doc-ha")
        >>> engine.audit("doc-ha").clean
        True
        """
        return audit_user(self._users, self.data_dir, user_id, terms)

    def receipt_public_keys(self) -> dict[str, str]:
        """Key id -> base64 Ed25519 public key of every receipt signing key.

        >>> receipt = engine.erase("doc-ka")
        >>> receipt.key_id in engine.receipt_public_keys()
        True
        """
        return self._signer.public_keys()

    def set_consent(self, user_id: str, shared_statistics: bool) -> int:
        """Give or withdraw consent to the shared statistics (withdrawing subtracts the
        user's counts at once); returns the record version.

        >>> _ = engine.interact("doc-io", [{"kind": "like", "item_id": "a6"}])
        >>> engine.set_consent("doc-io", shared_statistics=False)
        2
        >>> engine.export("doc-io")["ledger"]
        {}
        """
        return self._users.set_consent(user_id, shared_statistics)

    # -- devices: registered clients of a user, with tokens of their own (devices.py) ----

    def register_device(self, user_id: str, label: str | None = None) -> Device:
        """Register a device of the user (at most ``config.max_devices``; the user is
        created if new): its id, and refresh count 0 for its first refresh token.

        >>> phone = engine.register_device("doc-ju", "phone")
        >>> phone.label, phone.counter, len(phone.device_id)
        ('phone', 0, 36)
        """
        return self._devices.register(user_id, label)

    def refresh_device(self, user_id: str, device_id: str, counter: int) -> Device:
        """Move the device on from the refresh count its refresh token names. Another
        count (a replayed token; the one just before is a lost answer's retry for a
        minute), an unknown device, or a device offline longer than
        ``config.device_max_offline_days`` raises ``DeviceRevokedError`` (and revokes).

        >>> phone = engine.register_device("doc-ko")
        >>> [engine.refresh_device("doc-ko", phone.device_id, k).counter for k in (0, 1, 1)]
        [1, 2, 2]
        >>> engine.refresh_device("doc-ko", phone.device_id, 0)
        Traceback (most recent call last):
        ...
        ownrank.errors.DeviceRevokedError: device ... register it again
        >>> engine.device_active("doc-ko", phone.device_id)
        False
        """
        return self._devices.refresh(user_id, device_id, counter)

    def revoke_device(self, user_id: str, device_id: str) -> bool:
        """Revoke one device of the user (the others keep working); False if the user
        has no such device.

        >>> phone = engine.register_device("doc-lu")
        >>> engine.revoke_device("doc-lu", phone.device_id), engine.devices("doc-lu")
        (True, [])
        """
        return self._devices.revoke(user_id, device_id)

    def devices(self, user_id: str) -> list[Device]:
        """The user's devices, by device id.

        >>> phone = engine.register_device("doc-mi", "phone")
        >>> [d.label for d in engine.devices("doc-mi")]
        ['phone']
        """
        return self._devices.list(user_id)

    def device_active(self, user_id: str, device_id: str) -> bool:
        """Whether the device may act for the user (registered, not revoked, not offline
        too long): one record read, for checking a device's token on every request.

        >>> phone = engine.register_device("doc-ny").device_id
        >>> engine.device_active("doc-ny", phone), engine.device_active("doc-ox", phone)
        (True, False)
        """
        return self._devices.active(user_id, device_id)

    def similar(
        self, item_id: str, n: int = 10, filters: Mapping[str, Any] | None = None
    ) -> list[Hit]:
        """Items closest in meaning to a catalog item (the item itself excluded).

        >>> [hit.item_id for hit in engine.similar("a1", n=1)]
        ['a2']
        """
        return self.catalog.similar(item_id, n, filters)

    # -- operations ----------------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        return self._identity.model_fingerprint

    def reconcile(self) -> ReconcileReport:
        """Bring the data environment and the keystore into agreement (``reconcile.py``)."""
        return reconcile(self._users, self._clock())

    def backup(self, dest: Path | str) -> dict[str, Any]:
        """A compacted copy of the data environment (never the keystore) in ``dest``."""
        return backup.backup_data(self._env, Path(dest), store_id=self._identity.store_id)

    def backup_keystore(self, root: Path | str, retention_days: float = 7.0) -> dict[str, Any]:
        """A copy of the keystore under ``root``; copies past retention are deleted."""
        return backup.backup_keystore(
            self._keystore.env, Path(root), retention_days=retention_days, now=self._clock()
        )

    def rotate_signing_key(self) -> str:
        """Make a new receipt signing key current; returns its key id (old public keys
        stay, to verify older receipts)."""
        return self._signer.rotate()

    def index_status(self) -> IndexStatus:
        """The catalog index after catching up with the store (what ``/ready`` reports).

        >>> engine.index_status()
        IndexStatus(items=6, catalog_seq=1, kind='flat')
        """
        keeper = self.catalog.keeper
        keeper.sync()
        return IndexStatus(self.catalog.count(), keeper.index.seq, keeper.index.kind)

    def rotate_master_key(self) -> int:
        """Re-wrap every data key under the current master key (set the new key first,
        with the old one after it, in ``OWNRANK_MASTER_KEY``); returns how many."""
        return self._keystore.rotate()

    def warm_up(self) -> float:
        """Load what the first ranking call after opening would otherwise load (index,
        filter table, catalog matrices); done on open unless
        ``EngineConfig.warm_up_on_open`` is off. Returns the seconds it took.

        >>> engine.warm_up() >= 0.0
        True
        """
        started = time.perf_counter()
        self._users.warm_up()
        self.warm_up_seconds = time.perf_counter() - started
        return self.warm_up_seconds

    def save_index(self) -> bool:
        """Persist the catalog index now (it is also saved on ``close``)."""
        return self.catalog.keeper.save()

    def rebuild_index(self) -> None:
        self.catalog.keeper.rebuild()
        self.catalog.keeper.save(force=True)

    @property
    def diagnostics(self) -> Diagnostics:
        """Sizes, counts and timings of the store's internals (benchmarks, operators)."""
        return Diagnostics(self._env, self._users, self._shared, self.catalog)

    def info(self, *, check_items: bool = True) -> dict[str, Any]:
        """Counts, model, index and sizes; with ``check_items``, also the items stored
        by an older version that today's rules refuse (a scan of every item: for the
        operator's ``ownrank info``, not for a route polled by monitoring)."""
        keeper = self.catalog.keeper
        keeper.sync()
        index = keeper.index
        index_file = keeper.path
        lmdb_stat = self._env.stat()
        facts: dict[str, Any] = {
            "data_dir": str(self.data_dir.resolve()),
            "store_id": self._identity.store_id,
            "model_fingerprint": self._identity.model_fingerprint,
            "dimension": self._identity.dimension,
            "rating_scale": (self.config.rating_scale or RatingScale()).model_dump(),
            "items": self.catalog.count(),
            "catalog_seq": index.seq,
            "index": {
                "type": index.kind,
                "vectors": index.ntotal,
                "tombstones": len(index.dead),
                "file_bytes": index_file.stat().st_size if index_file.exists() else 0,
            },
            "neighbours": dataclasses.asdict(self.catalog.neighbours.status()),
            "shared_statistics": self.diagnostics.shared_facts(),
            "lmdb": {
                "file_bytes": self._env.file_size(),
                "used_bytes": lmdb_stat["used_bytes"],
                "entries": lmdb_stat["entries"],
            },
        }
        if check_items:
            # stored by an older version with properties nested deeper than today's
            # limit: served without those properties until rewritten or deleted
            with self._env.read() as txn:
                ids = list(self.catalog.store.nonconforming_items(txn))
            facts["nonconforming_items"] = {
                "rule": f"properties nested deeper than {MAX_PROPERTY_DEPTH} levels",
                "count": len(ids),
                "ids": ids[:NONCONFORMING_SHOWN],
            }
        return facts

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.catalog.neighbours.close()
            self.catalog.keeper.close()
        finally:
            self._env.close()
            self._keystore.close()
            self._lock.release()

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
