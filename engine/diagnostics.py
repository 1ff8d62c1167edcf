"""Read-only measurements of a store's internals: record sizes, what a read costs,
database sizes, the steps of a recommend.

Benchmarks and operators need these figures, and they must not reach into private
attributes for them (a rename would break them silently). Nothing here writes, and
nothing returns a user's data: sizes, counts and timings only.

    >>> _ = engine.interact("diag-ann", [{"kind": "like", "item_id": "a1"}])
    >>> engine.diagnostics.retained_events("diag-ann"), engine.diagnostics.record_size("nobody")
    (1, None)
    >>> sorted(engine.diagnostics.record_parts("diag-ann"))[:3]
    ['events', 'ledger', 'model']
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import msgpack

from ..storage.lmdb_env import DATABASES
from .filters import Expr
from .record_cipher import is_sealed, unseal
from .user_record import UserRecord

if TYPE_CHECKING:
    from ..storage.lmdb_env import LmdbEnvironment
    from .catalog import Catalog
    from .shared_stats import SharedStatistics
    from .users import Users

# The timed steps of a recommend: name -> (attribute path from the users object, method)
RECOMMEND_STEPS = {
    "neighbours": ("ranking.scorers:neighbours", "neighbours"),
    "pool": ("ranking.candidates", "pool_of"),
    "popularity": ("ranking.popularity", "score"),
    "record": ("records", "read"),
    "user vectors": ("ranking.candidates", "user_vectors"),
    "retrieve": ("ranking.candidates", "retrieve"),
}


class Diagnostics:
    """Measurements of one open engine (``Engine.diagnostics``)."""

    def __init__(
        self, env: LmdbEnvironment, users: Users, shared: SharedStatistics, catalog: Catalog
    ) -> None:
        self._env, self._users, self._shared, self._catalog = env, users, shared, catalog

    # -- user records -------------------------------------------------------------------

    def record_sizes(self) -> list[int]:
        """Stored (sealed) bytes of every user record, in key order."""
        with self._env.read() as txn:
            return [len(raw) for _key, raw in self._users.records.scan(txn)]

    def record_size(self, user_id: str) -> int | None:
        """Stored bytes of one user's record (None: no record)."""
        with self._env.read() as txn:
            raw = self._users.records.raw(txn, self._users.key(user_id))
        return None if raw is None else len(raw)

    def record_parts(self, user_id: str) -> dict[str, int] | None:
        """Bytes of the record's parts as msgpack (events, model, ledger) beside the
        stored total, and how many events and ledger items it holds."""
        key = self._users.key(user_id)
        with self._env.read() as txn:
            raw = self._users.records.raw(txn, key)
        record = self._users.records.decode(key, raw)[0]
        if raw is None or record is None:
            return None
        body = msgpack.unpackb(record.to_bytes(), raw=False)
        parts = {k: len(msgpack.packb(body.get(k), use_bin_type=True)) for k in ("e", "m", "l")}
        return {
            "total": len(raw),
            "events": parts["e"],
            "model": parts["m"],
            "ledger": parts["l"],
            "n_events": len(record.log),
            "n_ledger_items": len(body["l"].get("pop", [])),
        }

    def retained_events(self, user_id: str) -> int | None:
        """Events the user's record holds now (None: no record)."""
        record = self._users.record(user_id)
        return None if record is None else len(record.log)

    def read_costs(self, user_ids: Iterable[str]) -> dict[str, list[float]]:
        """Seconds of each step of a record read after the LMDB get, per user read:
        unwrapping the data key, unsealing, decoding (what sealing adds is the first
        two; an unsealed record times only the decode)."""
        records = self._users.records
        steps: dict[str, list[float]] = {"unwrap_key": [], "unseal": [], "decode": []}
        with self._env.read() as txn:
            for user_id in user_ids:
                key = records.key(user_id)
                plain = records.raw(txn, key)
                if plain is None:
                    continue
                if is_sealed(plain):
                    t0 = time.perf_counter()
                    data_key = records.keystore.get(key)
                    t1 = time.perf_counter()
                    plain = unseal(data_key, key, plain)
                    steps["unwrap_key"].append(t1 - t0)
                    steps["unseal"].append(time.perf_counter() - t1)
                t2 = time.perf_counter()
                UserRecord.from_bytes(plain)
                steps["decode"].append(time.perf_counter() - t2)
        return {name: values for name, values in steps.items() if values}

    def contributing_users(self) -> int:
        """Users whose events count in the shared statistics now."""
        with self._env.read() as txn:
            return self._shared.users(txn)

    def shared_facts(self) -> dict[str, Any]:
        """The shared-statistics mode, and the collaborative statistic's size."""
        facts: dict[str, Any] = {"mode": self._users.config.shared_statistics}
        if self._shared.collaborative:
            with self._env.read() as txn:
                facts["collaborative"] = self._shared.co.size(txn)
        return facts

    # -- the store and the catalog ------------------------------------------------------

    def database_sizes(self) -> dict[str, dict[str, float]]:
        """Entries, pages and bytes of each LMDB database."""
        out: dict[str, dict[str, float]] = {}
        with self._env.read() as txn:
            for name in DATABASES:
                stat = txn.stat(self._env.db(name))
                pages = stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
                size = pages * stat["psize"]
                out[name] = {
                    "entries": stat["entries"],
                    "pages": pages,
                    "bytes": size,
                    "bytes_per_entry": round(size / max(stat["entries"], 1), 1),
                }
        return out

    def filter_matches(self, expr: Expr) -> int:
        """How many catalog items a parsed filter admits (``catalog.parse_filters``)."""
        return int(self._catalog.keeper.property_table().matching_rows(expr).size)

    def recommend_steps(self) -> dict[str, tuple[Any, str]]:
        """Where each timed step of a recommend lives, as (object, method name), so a
        profiler can wrap it."""
        out: dict[str, tuple[Any, str]] = {}
        for name, (path, method) in RECOMMEND_STEPS.items():
            obj: Any = self._users
            for part in path.split("."):
                attr, _, scorer = part.partition(":")
                obj = getattr(obj, attr)
                if scorer:
                    obj = next(s for s in obj if s.name == scorer)
            out[name] = (obj, method)
        return out
