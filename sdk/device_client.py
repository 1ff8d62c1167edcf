"""The reference device client: a device's own copy of one user, ranked offline, synced
with the service when asked (docs/sync.md is the protocol; this is its reading).

    device = DeviceClient("phone", "http://127.0.0.1:8000", "ann", access, refresh)
    device.sync()                       # catalog, moments, then the user's state
    device.interact([{"kind": "like", "item_id": "jazz-1"}])   # offline: queued
    device.recommend(10)                # offline: the personal model over the copy
    device.sync()                       # pushes what was queued, adopts the server's

On disk, in ``path``: ``catalog/`` (``CatalogReplica``: catalog data only, nothing
derived from other users), ``moments.npz`` (the catalog's embedding moments, which
the model's fit needs), ``user.sealed`` (the server's last copy of the user, the
events made and forgotten since, sealed with AES-256-GCM under the **lease** key)
and ``lease.json`` (that key and until when it may be kept). Past the lease
without a sync the key and the copy are deleted when the client opens or ranks;
an answer that the user was erased, or the device revoked, wipes them at once.

The model is the engine's: the same event order (``record_caps``), caps and fit
(``personal_model.fit``) over the server's float32 vectors and moments, so after
a sync the device's model is the server's, bit for bit (search events aside: their
query vectors need the base model, which a device does not have). Offline ranking
is the personal part of the score; popularity and the collaborative part are the
server's to give (``recommend_online``).
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .engine.catalog_replica import CatalogReplica
from .engine.config import EngineConfig
from .engine.event_columns import EventColumns
from .engine.event_ids import parse_event_id
from .engine.event_merge import event_id
from .engine.events import Event
from .engine.personal_model import CatalogPrior, fit
from .engine.record_caps import event_order
from .engine.times import iso_seconds
from .engine.user_export import export_event, parse_export
from .engine.user_record import PersonalModel, StoredEvent
from .engine.user_sync import events_checksum
from .errors import InvalidInputError, OwnrankError
from .storage.catalog_store import CatalogMoments

SyncStatus = Literal["ok", "erased", "revoked", "stale_generation"]
_USER_FILE = "user.sealed"
_LEASE_FILE = "lease.json"
_MOMENTS_FILE = "moments.npz"


class DeviceWiped(OwnrankError):
    """The device's copy of the user is gone: erased on the server, the device revoked,
    or the lease ran out without a sync (``reason`` says which)."""

    code = "device_wiped"

    def __init__(self, reason: str) -> None:
        super().__init__(f"the device's copy was wiped: {reason}", reason=reason)
        self.reason = reason


@dataclass(frozen=True)
class Ranked:
    item_id: str
    score: float


class DeviceClient:
    """One device of one user (see the module docstring)."""

    def __init__(
        self,
        path: Path | str,
        server_url: str,
        user_id: str,
        access_token: str,
        refresh_token: str | None = None,
        *,
        http: httpx.Client | None = None,
        config: EngineConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.user_id = user_id
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.http = http or httpx.Client(base_url=server_url, timeout=30.0)
        self.config = config or EngineConfig()
        self.clock = clock
        self.catalog = CatalogReplica(self.path / "catalog")
        self._moments: tuple[int, CatalogMoments] | None = self._load_moments()
        self._prior: CatalogPrior | None = None
        self.state: dict[str, Any] = self._load_user()

    # -- what the device holds ----------------------------------------------------------

    @property
    def generation(self) -> int | None:
        record = self.state.get("record")
        return None if record is None else int(record.get("generation", 0))

    def events(self) -> list[StoredEvent]:
        """The device's event set: the server's last copy, plus the events made since,
        less those forgotten since, in the engine's order and within its count cap."""
        record = self.state.get("record")
        server = parse_export(record).events if record and record.get("exists") else []
        mine = [_stored(e) for e in self.state["pending"]]
        forgotten = {parse_event_id(i) for i in self.state["forgotten"]}
        generation = self.generation or 0
        merged: dict[bytes, StoredEvent] = {}
        for e in [*server, *mine]:
            key = event_id(self.user_id, generation, e)
            if key not in forgotten:
                merged.setdefault(key, e)
        ordered = sorted(merged.values(), key=event_order)
        return ordered[-self.config.max_events :]

    def checksum(self) -> tuple[int, int]:
        """(count, checksum) of the device's event set, as the server computes it."""
        return events_checksum(self.user_id, self.generation or 0, self.events())

    # -- offline ------------------------------------------------------------------------

    def interact(self, events: Sequence[Mapping[str, Any]]) -> list[str]:
        """Record events offline (each gets an id and the device's time if it has none);
        returns their ids. They reach the server at the next ``sync``."""
        self._check_lease()
        added = []
        for raw in events:
            event = dict(raw)
            event.setdefault("id", str(uuid.uuid4()))
            event.setdefault("timestamp", iso_seconds(int(self.clock())))
            parsed = Event.model_validate(event)  # a malformed event is refused now
            assert parsed.timestamp is not None
            event["timestamp"] = iso_seconds(int(parsed.timestamp.timestamp()))  # as sent
            added.append(event)
        self.state["pending"].extend(added)
        self._save_user()
        return [str(e["id"]) for e in added]

    def forget(self, event_ids: Iterable[str]) -> None:
        """Forget events by id, offline; the server forgets them at the next ``sync``."""
        self._check_lease()
        ids = [str(uuid.UUID(str(i))) for i in event_ids]
        self.state["forgotten"].extend(i for i in ids if i not in self.state["forgotten"])
        self._save_user()

    def model(self) -> PersonalModel | None:
        """The personal model of the device's event set (the engine's fit)."""
        vectors = dict(zip(self.catalog.ids, self.catalog.vectors, strict=True))
        model, _positives = fit(
            EventColumns.from_events(self.events()),
            vectors,
            {},
            self._catalog_prior(),
            self.config.learner,
        )
        return model

    def recommend(self, n: int = 10) -> list[Ranked]:
        """The best ``n`` catalog items by the personal model, never one the device has
        an event on; offline (a device without events gets none: the cold-start list
        is the server's)."""
        self._check_lease()
        model = self.model()
        if model is None:
            return []
        seen = {e.ref for e in self.events() if not e.is_search}
        scores = model.score(self.catalog.vectors)
        order = np.argsort(-scores, kind="stable")
        ids = self.catalog.ids
        return [Ranked(ids[k], float(scores[k])) for k in order if ids[k] not in seen][:n]

    def recommend_online(self, n: int = 10) -> list[dict[str, Any]]:
        """The server's recommendations (popularity and the collaborative part are
        statistics of other users: a device asks for them, never holds them)."""
        answer = self._call("POST", f"/users/{self.user_id}/recommend", {"n": n})
        results: list[dict[str, Any]] = answer.json()["results"]
        return results

    # -- sync -----------------------------------------------------------------------------

    def sync(self) -> SyncStatus:
        """Catalog, moments, then one user exchange: push what was made and forgotten
        offline, adopt the server's copy if the sets differ. Returns "ok", or why the
        copy was wiped ("erased", "revoked", "stale_generation")."""
        try:
            self.catalog.sync(self._catalog_page)
            self._sync_moments()
        except DeviceWiped as wiped:
            return wiped.reason  # type: ignore[return-value]
        count, checksum = self.checksum()
        body = {
            "generation": self.generation,
            "count": count,
            "checksum": f"{checksum:016x}",
            "push": self.state["pending"],
            "forget": self.state["forgotten"],
        }
        try:
            answer = self._call("POST", f"/users/{self.user_id}/sync", body).json()
        except DeviceWiped as wiped:
            return wiped.reason  # type: ignore[return-value]
        if answer["record"] is not None:
            self.state["record"] = answer["record"]
        elif answer["version"] == 0:
            self.state["record"] = None  # the user has nothing stored (yet)
        elif self.state.get("record") is None or not answer["in_sync"]:  # pragma: no cover
            raise OwnrankError("the server answered without its copy while the sets differ")
        else:  # in sync: the device's merged set is the server's
            self.state["record"] = self._merged_record(answer)
        self.state["pending"], self.state["forgotten"] = [], []
        if answer.get("lease"):
            self._store_lease(answer["lease"])
        self._save_user()
        return "ok"

    def erase(self) -> dict[str, Any]:
        """Ask the server to erase the user; wipe the device's copy; the receipt."""
        receipt: dict[str, Any] = self._call("DELETE", f"/users/{self.user_id}").json()
        self.wipe()
        return receipt

    def wipe(self) -> None:
        """Delete the device's copy of the user and the lease key (the catalog stays:
        it holds nothing of the user)."""
        for name in (_USER_FILE, _LEASE_FILE):
            (self.path / name).unlink(missing_ok=True)
        self.state = _empty_state()

    # -- HTTP -----------------------------------------------------------------------------

    def _call(
        self, method: str, url: str, body: Any = None, params: Mapping[str, Any] | None = None
    ) -> httpx.Response:
        """One request with the device's token: refreshed once when it expired; an
        answer that the user was erased or the device revoked wipes the copy."""
        for attempt in range(2):
            headers = {"Authorization": f"Bearer {self.access_token}"}
            answer = self.http.request(method, url, json=body, params=params, headers=headers)
            code = _code(answer)
            if answer.status_code == 401 and code == "token_expired" and attempt == 0:
                self._refresh()
                continue
            if answer.status_code == 409 and code in ("user_erased", "stale_generation"):
                self.wipe()
                raise DeviceWiped("erased" if code == "user_erased" else "stale_generation")
            if answer.status_code == 401 and code == "device_revoked":
                self.wipe()
                raise DeviceWiped("revoked")
            if answer.is_error:
                raise OwnrankError(f"{method} {url}: {answer.status_code} {answer.text}")
            return answer
        raise OwnrankError("the refreshed token was refused")  # pragma: no cover

    def _refresh(self) -> None:
        if self.refresh_token is None:
            raise OwnrankError("the access token expired and there is no refresh token")
        answer = self.http.post("/devices/refresh", json={"refresh_token": self.refresh_token})
        if answer.status_code == 401:
            self.wipe()
            raise DeviceWiped("revoked")
        answer.raise_for_status()
        tokens = answer.json()
        self.access_token, self.refresh_token = tokens["access_token"], tokens["refresh_token"]

    def _catalog_page(self, params: dict[str, Any]) -> Mapping[str, Any]:
        if "filters" in params:
            page: Mapping[str, Any] = self._call("POST", "/sync/catalog", params).json()
            return page
        result: Mapping[str, Any] = self._call("GET", "/sync/catalog", params=params).json()
        return result

    def _sync_moments(self) -> None:
        if self._moments is not None and self._moments[0] == self.catalog.catalog_seq:
            return
        raw = self._call("GET", "/sync/catalog/moments").json()
        dim = len(base64.b64decode(raw["total"])) // 8
        moments = CatalogMoments(
            int(raw["count"]),
            np.frombuffer(base64.b64decode(raw["total"]), "<f8").copy(),
            np.frombuffer(base64.b64decode(raw["gram"]), "<f8").reshape(dim, dim).copy(),
        )
        self._moments, self._prior = (int(raw["catalog_seq"]), moments), None
        np.savez(
            self.path / _MOMENTS_FILE,
            seq=self._moments[0],
            count=moments.count,
            total=moments.total,
            gram=moments.gram,
        )

    def _catalog_prior(self) -> CatalogPrior:
        if self._moments is None:
            raise InvalidInputError("sync once before ranking: the device has no catalog yet")
        if self._prior is None:
            self._prior = CatalogPrior(self._moments[1], self.config.learner)
        return self._prior

    def _load_moments(self) -> tuple[int, CatalogMoments] | None:
        file = self.path / _MOMENTS_FILE
        if not file.exists():
            return None
        data = np.load(file)
        return int(data["seq"]), CatalogMoments(int(data["count"]), data["total"], data["gram"])

    def _merged_record(self, answer: Mapping[str, Any]) -> dict[str, Any]:
        """The server's copy rebuilt from the device's set (the server said they are
        equal, so it sent none): the events, as an export lists them."""
        record = dict(self.state["record"])
        record["version"], record["generation"] = answer["version"], answer["generation"]
        generation = answer["generation"]
        record["events"] = [export_event(self.user_id, generation, e) for e in self.events()]
        return record

    # -- the sealed copy and the lease ----------------------------------------------------

    def _lease(self) -> tuple[bytes, float] | None:
        file = self.path / _LEASE_FILE
        if not file.exists():
            return None
        lease = json.loads(file.read_text())
        return base64.b64decode(lease["key"]), float(lease["expires_at"])

    def _check_lease(self) -> None:
        lease = self._lease()
        if lease is not None and lease[1] <= self.clock():
            self.wipe()
            raise DeviceWiped("lease_expired")

    def _store_lease(self, lease: Mapping[str, Any]) -> None:
        expires = _unix(lease["expires_at"])
        file = self.path / _LEASE_FILE
        tmp = file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": lease["key"], "expires_at": expires}))
        os.chmod(tmp, 0o600)
        tmp.replace(file)

    def _load_user(self) -> dict[str, Any]:
        file = self.path / _USER_FILE
        lease = self._lease()
        if lease is not None and lease[1] <= self.clock():
            self.wipe()  # past the lease: the copy must not be read again
            return _empty_state()
        if not file.exists() or lease is None:
            return _empty_state()
        sealed = file.read_bytes()
        plain = AESGCM(lease[0]).decrypt(sealed[:12], sealed[12:], self.user_id.encode())
        state: dict[str, Any] = json.loads(plain)
        return state

    def _save_user(self) -> None:
        lease = self._lease()
        file = self.path / _USER_FILE
        if lease is None:  # no lease yet (never synced): kept in memory only
            return
        nonce = os.urandom(12)
        plain = json.dumps(self.state).encode()
        sealed = nonce + AESGCM(lease[0]).encrypt(nonce, plain, self.user_id.encode())
        tmp = file.with_suffix(".tmp")
        tmp.write_bytes(sealed)
        tmp.replace(file)


def _empty_state() -> dict[str, Any]:
    return {"record": None, "pending": [], "forgotten": []}


def _code(answer: httpx.Response) -> str | None:
    try:
        body = answer.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None


def _unix(when: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()


def _stored(raw: Mapping[str, Any]) -> StoredEvent:
    """A pending event (as sent) as the record stores it."""
    event = Event.model_validate(raw)
    assert event.id is not None and event.timestamp is not None
    from .engine.events import KindCode

    return StoredEvent(
        KindCode[event.kind],
        event.item_id if event.item_id is not None else (event.query or "").strip(),
        event.value,
        event.weight,
        int(event.timestamp.timestamp()),
        parse_event_id(event.id),
    )
