"""Device sync round trips on loopback, for a user with 256 retained events.

Starts ``ownrank serve`` on 127.0.0.1 (one worker, a fresh data directory, the
bundled model), loads 300 items, registers a device and fills the user with 256
events through sync pushes, then times, alternating:

- ``in sync``: the device holds the server's set, pushes nothing: the answer is
  the count, checksum and lease (no events);
- ``push 1``: one new event pushed with an out-of-date checksum: the answer brings
  the server's whole copy (256 events and the model);
- ``client sync``: ``DeviceClient.sync()`` with one event made offline: a catalog
  delta request, then the exchange, and the sealed copy written.

    python bench/sync_bench.py            # 300 round trips each
    python bench/sync_bench.py --calls 50

Rows: p50 / p99 in ms and the answer's bytes per round trip kind. Loopback and one
worker: the figures are the service's own cost, no network.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import harness
import httpx

ADMIN_KEY = "sync-bench-admin-key-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def start(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``ownrank serve`` on a free loopback port, once it answers /ready."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {**os.environ, "OWNRANK_ADMIN_KEYS": ADMIN_KEY, "HF_HUB_OFFLINE": "1"}
    ownrank = Path(sys.executable).with_name("ownrank")
    proc = subprocess.Popen(
        [str(ownrank), "serve", "--data-dir", str(data), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.5)
    raise SystemExit("the service did not become ready")


def item(k: int) -> dict[str, Any]:
    return {"id": f"item-{k}", "title": f"story {k} about topic {k % 12}", "tags": [f"t{k % 12}"]}


def event(k: int, t: int) -> dict[str, Any]:
    kind = "like" if k % 3 else "dislike"
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    return {"kind": kind, "item_id": f"item-{k % 300}", "id": str(uuid.uuid4()), "timestamp": when}


def measure(run: harness.Run, calls: int) -> int:
    """The three round trips, ``calls`` times each, as rows of ``run``; the user's
    events at the end."""
    from ownrank import DeviceClient

    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start(Path(tmp) / "data")
        try:
            http = httpx.Client(base_url=url, timeout=30)
            items = [item(k) for k in range(300)]
            assert http.post("/items", json={"items": items}, headers=ADMIN).is_success
            token = http.post("/tokens", json={"user_id": "bench"}, headers=ADMIN).json()["token"]
            made = http.post(
                "/users/bench/devices", json={}, headers={"Authorization": f"Bearer {token}"}
            ).json()
            device = DeviceClient(
                Path(tmp) / "phone", url, "bench", made["access_token"], made["refresh_token"]
            )
            device.sync()
            t0 = int(time.time()) - 10_000
            device.interact([event(k, t0 + k) for k in range(256)])
            assert device.sync() == "ok" and len(device.events()) == 256
            auth = {"Authorization": f"Bearer {device.access_token}"}
            times: dict[str, list[float]] = {"in sync": [], "push 1": [], "client sync": []}
            sizes: dict[str, int] = {}
            for k in range(calls):
                count, checksum = device.checksum()
                body = {"generation": 0, "count": count, "checksum": f"{checksum:016x}"}
                started = time.perf_counter()
                answer = http.post("/users/bench/sync", json=body, headers=auth)
                times["in sync"].append(time.perf_counter() - started)
                assert answer.json()["in_sync"], answer.text
                sizes["in sync"] = len(answer.content)

                push = {"generation": 0, "push": [event(k, t0 + 300 + k)]}
                started = time.perf_counter()
                answer = http.post("/users/bench/sync", json=push, headers=auth)
                times["push 1"].append(time.perf_counter() - started)
                assert answer.json()["record"] is not None, answer.text
                sizes["push 1"] = len(answer.content)

                device.interact([event(k + 1, t0 + 5_000 + k)])
                started = time.perf_counter()
                assert device.sync() == "ok"
                times["client sync"].append(time.perf_counter() - started)
            for kind, seconds in times.items():
                run.latency("round trip", seconds, kind=kind)
                if kind in sizes:
                    run.add("answer", sizes[kind], "B", kind=kind)
            run.add("user's events", len(device.events()), "count")
            return len(device.events())
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--out", type=Path, default=harness.default_out("sync_bench", False))
    args = parser.parse_args(argv)
    run = harness.Run("sync_bench", vars(args), quick=False)
    events = measure(run, args.calls)
    run.table(
        f"Sync round trips on loopback (one worker, a user with {events} events)",
        by=["kind"],
        metrics=["round trip calls", "round trip p50", "round trip p99", "answer"],
    )
    run.note("`client sync` has no answer size: it is a catalog request and the exchange.")
    run.finish(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
