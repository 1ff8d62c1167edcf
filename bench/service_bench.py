"""Load benchmark of the HTTP service: ``ownrank serve`` with 2 workers under wrk.

What runs:

1. A store of N synthetic items and U users with histories (``--items`` /
   ``--users``, default 100k / 10k; ``--quick`` 20k / 2k), built in-process with
   the engine benchmark's data: the catalog of ``bench/catalog_bench.py`` (clustered
   384-d vectors from ``SyntheticEncoder``; the real base model embeds ~77 items/s
   here) and users from ``engine_bench.make_history`` (10-150 events each). The
   built store is cached under ``bench/results/service-store/`` keyed by its
   parameters, so reruns skip this (``--rebuild`` forces it).
2. Each run serves a fresh copy of the cached store (interactions write to it)
   with the service's own ``ownrank.service.server.serve`` (uvicorn, 2 workers,
   the service's JSON logs at ``info``, Prometheus multiprocess metrics), bound to
   127.0.0.1 on a free port, the app built by :func:`app` below: the real
   ``create_app`` with the same ``SyntheticEncoder``, whose fingerprint the store
   carries. The server is stopped at the end, also on failure or Ctrl-C.
3. wrk (``apt-get install wrk``; ``scripts/bench_service.sh`` installs it) drives
   one scenario at a time for a fixed time with a fixed number of connections
   (closed loop: each connection sends its next request when the previous answer
   arrived), rotating through every user, each request with that user's own token:

   - ``recommend``: ``POST /users/{id}/recommend`` ``{"n": 10}``;
   - ``interactions``: ``POST /users/{id}/interactions`` with a few events in the
     style of ``make_history`` (durable LMDB write, model refit);
   - ``search``: ``POST /users/{id}/search`` with ``make_query`` texts, personalized;
   - ``floor`` (last, on a server of its own): the ``recommend`` requests against
     :func:`floor_app`, where ``recommend`` answers a result computed at start: what
     the service itself (HTTP, auth, validation, metrics, logs, JSON) allows per
     second on the machine, the ceiling a faster engine could approach.

   Before a scenario's runs, requests go one at a time on new connections until
   every worker answered a few (the first call of a route in a worker pays its lazy
   set-up: reported as ``first_calls``, kept out of the measured runs); then a
   short unmeasured wrk warm-up precedes each measured run. Per run: requests/s,
   p50/p90/p99/max latency as wrk measured it, HTTP status counts, socket errors,
   the server's own latency for the route (from ``/metrics``), the CPU the server
   workers, wrk and other processes used, and the load average before/after.

The machine has 2 cores shared by both workers and wrk (and whatever else runs):
the report says how much CPU each took. Closed-loop latencies omit the waiting a
fixed-rate client would see past saturation (coordinated omission); at saturation
throughput is the honest figure, and p99 is the latency at that concurrency.

Usage::

    scripts/bench_service.sh --quick          # 20k items, 2k users, 20 s per run
    scripts/bench_service.sh                  # 100k items, 10k users, 30 s per run
    .venv/bin/python bench/service_bench.py --connections 4,16 --scenarios recommend

Results are printed and written to ``bench/results/service_bench.json``
(``service_bench_quick.json`` with --quick); the server log of the last run is kept
in ``bench/results/service_bench_server.log``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:  # imported by uvicorn workers via --app-dir/sys.path
    sys.path.insert(0, str(BENCH_DIR))

import machine_info  # noqa: E402
from catalog_bench import (  # noqa: E402
    SyntheticEncoder,
    item_batches,
    machine,
    make_query,
    say,
)
from engine_bench import Population, git_state, make_history, user_id  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from ownrank import Engine, EngineConfig  # noqa: E402
from ownrank.service.app import create_app  # noqa: E402
from ownrank.service.settings import ServiceSettings  # noqa: E402

Json = dict[str, Any]

RESULTS_DIR = BENCH_DIR / "results"
STORE_CACHE = RESULTS_DIR / "service-store"
STORE_VERSION = 1  # bump when the way the store is built changes
SERVER_LOG = RESULTS_DIR / "service_bench_server.log"
FLOOR_SERVER_LOG = RESULTS_DIR / "service_bench_floor_server.log"
APP_IMPORT = "service_bench:app"
FLOOR_APP_IMPORT = "service_bench:floor_app"
HOST = "127.0.0.1"
SCENARIOS = ("recommend", "interactions", "search", "floor")
ROUTES = {
    "recommend": "/users/{user_id}/recommend",
    "floor": "/users/{user_id}/recommend",
    "interactions": "/users/{user_id}/interactions",
    "search": "/users/{user_id}/search",
}
TARGET = {"recommend_per_s": 1_000.0, "recommend_p99_ms": 50.0}
ADMIN_KEY = "bench-admin-key-0123456789abcdef"  # loopback-only throwaway store


# -- the served app ---------------------------------------------------------------------------


def synthetic_encoder(_settings: ServiceSettings) -> SyntheticEncoder:
    return SyntheticEncoder()


def app() -> FastAPI:
    """The service app with the benchmark's synthetic encoder (for ``uvicorn --factory``):
    settings from ``OWNRANK_*``, exactly like ``create_app_from_env``."""
    return create_app(ServiceSettings.from_env(), encoder_factory=synthetic_encoder)


class CannedRecommendations:
    """The real engine, except that ``recommend`` answers one result computed at start
    (user 0's 10 items, with their explanations): a recommend call through the service
    then costs what the service itself adds (HTTP, auth, validation, thread hand-off,
    metrics, logs, the JSON of 10 items): the ceiling the engine's speed can approach."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._answer = engine.recommend(user_id(0), 10)

    def recommend(self, *_args: Any, **_kwargs: Any) -> list[Any]:
        return self._answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


def floor_app() -> FastAPI:
    """:func:`app` with :class:`CannedRecommendations` in place of the engine."""
    settings = ServiceSettings.from_env()
    engine = Engine(settings.data_dir, EngineConfig(), encoder=SyntheticEncoder())
    return create_app(settings, engine=cast(Engine, CannedRecommendations(engine)))


def serve_main(argv: Sequence[str]) -> int:
    """``service_bench.py serve DATA_DIR PORT WORKERS [floor]``: ``ownrank serve`` with
    :func:`app` (with ``floor``: :func:`floor_app`).

    Uses the service's own ``prepare`` and ``serve`` (same uvicorn options, logs and
    multiprocess metrics), with the app factory pointed at this module."""
    from ownrank.service import server

    data_dir, port, workers = Path(argv[0]), int(argv[1]), int(argv[2])
    settings = ServiceSettings.from_env().model_copy(update={"data_dir": data_dir})
    server.prepare(settings)
    # uvicorn's workers are spawned processes: they find this module on sys.path
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(BENCH_DIR), os.environ.get("PYTHONPATH", "")) if p
    )
    server.APP_FACTORY = FLOOR_APP_IMPORT if argv[3:4] == ["floor"] else APP_IMPORT
    server.serve(settings, host=HOST, port=port, workers=workers, log_level="info")
    return 0


# -- the store ----------------------------------------------------------------------------------


def store_dir(args: argparse.Namespace) -> Path:
    key = f"items{args.items}-users{args.users}-seed{args.seed}-v{STORE_VERSION}"
    return STORE_CACHE / key


def build_store(root: Path, args: argparse.Namespace) -> Json:
    """Catalog and users into ``root/data``; item topics into ``root/topics.npy``."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    topics = np.zeros(args.items, dtype=np.int64)
    started = time.perf_counter()
    with Engine(root / "data", EngineConfig(), encoder=SyntheticEncoder()) as engine:
        k = 0
        for items in item_batches(args.items, 1000, args.seed + 100, "s"):
            for item in items:
                topics[k] = int(str(item["properties"]["topic"])[1:])
                k += 1
            engine.catalog.upsert(items)
            if k % 20_000 == 0:
                say(f"  {k} items ({time.perf_counter() - started:.0f} s)")
        engine.catalog.keeper.sync()
        catalog_s = time.perf_counter() - started
        say(f"catalog: {args.items} items in {catalog_s:.0f} s")
        pop = Population(topics, "s")
        rng = np.random.default_rng(args.seed + 1)
        now = time.time()
        events = 0
        users_start = time.perf_counter()
        for i in range(args.users):
            history = make_history(rng, pop, int(rng.integers(10, 151)), now)
            engine.interact(user_id(i), history)
            events += len(history)
            if (i + 1) % 1000 == 0:
                say(f"  {i + 1} users, {events} events ({time.perf_counter() - users_start:.0f} s)")
        users_s = time.perf_counter() - users_start
    np.save(root / "topics.npy", topics)
    built = {
        "items": args.items,
        "users": args.users,
        "events": events,
        "seed": args.seed,
        "version": STORE_VERSION,
        "catalog_seconds": round(catalog_s, 1),
        "users_seconds": round(users_s, 1),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git": git_state(),
    }
    (root / "built.json").write_text(json.dumps(built, indent=2) + "\n")
    return built


def cached_store(args: argparse.Namespace) -> tuple[Path, Json, bool]:
    """The built store for these parameters (building it if needed): dir, facts, reused."""
    root = store_dir(args)
    marker = root / "built.json"
    if marker.exists() and not args.rebuild:
        try:  # the engine may have changed since: the store must still open
            with Engine(root / "data", EngineConfig(), encoder=SyntheticEncoder()) as engine:
                count = engine.catalog.count()
            if count == args.items:
                return root, json.loads(marker.read_text()), True
            say(f"cached store at {root} has {count} items: rebuilding")
        except Exception as exc:
            say(f"cached store at {root} does not open ({type(exc).__name__}: {exc}): rebuilding")
    say(f"building the store: {args.items} items, {args.users} users into {root}")
    return root, build_store(root, args), False


# -- the server ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def request(
    port: int, method: str, path: str, token: str | None = None, body: Any = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        payload = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=payload, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


class Server:
    """``service_bench.py serve`` in its own process group; ``stop`` ends the group."""

    def __init__(self, data_dir: Path, workers: int, log_path: Path, floor: bool = False) -> None:
        self.port = free_port()
        self.workers = workers
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if not k.startswith("OWNRANK_")}
        env.update({"OWNRANK_ADMIN_KEYS": ADMIN_KEY, "OWNRANK_ENCODER_THREADS": "1"})
        self._log = log_path.open("wb")
        cmd = [sys.executable, str(Path(__file__).resolve()), "serve", str(data_dir)]
        self.proc = subprocess.Popen(
            [*cmd, str(self.port), str(workers), *(["floor"] if floor else [])],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Ctrl-C reaches us, and we stop the whole group
            preexec_fn=_die_with_parent,
        )

    def wait_ready(self, timeout: float) -> Json:
        """Until /ready answered 200 from every worker (by ``X-Ownrank-Worker``)."""
        deadline = time.monotonic() + timeout
        ready_pids: set[str] = set()
        body: Json = {}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the server exited ({self.proc.returncode}); see {self.log_path}"
                )
            try:
                status, headers, raw = request(self.port, "GET", "/ready")
            except OSError:
                time.sleep(0.5)
                continue
            if status == 200:
                ready_pids.add(headers.get("x-ownrank-worker", "?"))
                body = json.loads(raw)
                if len(ready_pids) >= self.workers:
                    return {**body, "workers_ready": sorted(ready_pids)}
            else:
                time.sleep(0.2)
        raise TimeoutError(f"the server was not ready in {timeout:.0f} s; see {self.log_path}")

    def pids(self) -> list[int]:
        """The server process and its descendants (the uvicorn workers)."""
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
        out, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(children.get(pid, []))
        return out

    def cpu_seconds(self) -> float:
        return sum(_proc_cpu_seconds(pid) for pid in self.pids())

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        self._log.close()
        return self.proc.returncode


def _die_with_parent() -> None:
    """In the server process before exec: SIGTERM it if this benchmark dies (Linux)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _proc_cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _busy_cpu_seconds() -> float:
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _self_and_waited_children_cpu() -> tuple[float, float]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def busy_processes(min_cpu: float = 20.0) -> list[str]:
    """Processes using at least ``min_cpu`` % of a core over their lifetime (ps)."""
    try:
        out = subprocess.run(
            ["ps", "-eo", "pid,pcpu,etime,args", "--sort=-pcpu", "--no-headers"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    busy = []
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and float(parts[1]) >= min_cpu and int(parts[0]) != os.getpid():
            busy.append(f"{parts[0]} {parts[1]}% {parts[2]} {parts[3][:100]}")
    return busy


# -- load generation (wrk) ----------------------------------------------------------------------

# Cycles through a file of prepared requests (one a line: METHOD TAB PATH TAB TOKEN TAB
# BODY), each thread from its own offset; counts HTTP statuses; prints one JSON line.
WRK_LUA = r"""
local file = os.getenv("OWNRANK_WRK_REQUESTS")
local threads = {}
local next_id = 0
function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local reqs = {}
local pos = 1
statuses = {}
function init(args)
  for line in io.lines(file) do
    local method, path, token, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    reqs[#reqs + 1] = wrk.format(method, path, {
      ["Authorization"] = "Bearer " .. token,
      ["Content-Type"] = "application/json",
    }, body)
  end
  pos = (thread_id * 7919) % #reqs + 1
end

function request()
  local r = reqs[pos]
  pos = pos + 1
  if pos > #reqs then pos = 1 end
  return r
end

workers = {}
function response(status, headers, body)
  local k = tostring(status)
  statuses[k] = (statuses[k] or 0) + 1
  local w = headers["x-ownrank-worker"] or headers["X-Ownrank-Worker"] or "?"
  workers[w] = (workers[w] or 0) + 1
end

local function json_counts(t)
  local parts = {}
  for k, v in pairs(t) do parts[#parts + 1] = string.format('"%s": %d', k, v) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

function done(summary, latency, requests)
  local merged, by_worker = {}, {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do merged[k] = (merged[k] or 0) + v end
    for k, v in pairs(t:get("workers")) do by_worker[k] = (by_worker[k] or 0) + v end
  end
  local e = summary.errors
  io.write(string.format(
    'OWNRANK_WRK {"duration_us": %d, "requests": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "mean": %.1f, "stdev": %.1f, "max": %d, ' ..
    '"p50": %d, "p75": %d, "p90": %d, "p99": %d, "p99_9": %d}, "statuses": %s, ' ..
    '"workers": %s}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), json_counts(merged),
    json_counts(by_worker)))
end
"""


def mint_tokens(data_dir: Path, users: Sequence[str]) -> dict[str, str]:
    """User tokens signed with the server's secret, as ``ownrank token USER`` mints them."""
    from ownrank.service.auth import load_signer

    signer = load_signer(ServiceSettings(data_dir=data_dir))
    return {u: signer.mint(u, 6 * 3600)[0] for u in users}


def write_requests(
    path: Path, scenario: str, args: argparse.Namespace, tokens: dict[str, str], pop: Population
) -> int:
    """The request lines of one scenario: every user in a random order, then again."""
    rng = np.random.default_rng(args.seed + 50 + SCENARIOS.index(scenario))
    users = [user_id(int(i)) for i in rng.permutation(args.users)]
    lines = []
    now = time.time()
    for k in range(args.request_lines):
        uid = users[k % len(users)]
        if scenario in ("recommend", "floor"):
            body: Json = {"n": 10}
        elif scenario == "interactions":
            events = make_history(rng, pop, args.events_per_call, now)
            for e in events:
                e.pop("timestamp", None)  # "now" on the server
            body = {"events": events}
        else:
            body = {"query": make_query(rng), "n": 10}
        route = ROUTES[scenario].replace("{user_id}", uid)
        lines.append(f"POST\t{route}\t{tokens[uid]}\t{json.dumps(body, separators=(',', ':'))}")
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


def run_wrk(
    port: int, lua: Path, requests_file: Path, connections: int, seconds: float, threads: int
) -> Json:
    env = {**os.environ, "OWNRANK_WRK_REQUESTS": str(requests_file)}
    cmd = [
        "wrk",
        f"-t{max(1, min(threads, connections))}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(lua),
        f"http://{HOST}:{port}",
    ]
    done = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    match = re.search(r"^OWNRANK_WRK (.*)$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    out: Json = json.loads(match.group(1))
    out["command"] = " ".join([*cmd[:-3], "<script>", cmd[-1]])
    return out


def server_metrics(port: int) -> dict[tuple[str, str], float]:
    """``/metrics`` samples as {(name, sorted labels): value} (all workers)."""
    status, _h, raw = request(port, "GET", "/metrics", token=ADMIN_KEY)
    if status != 200:
        return {}
    out: dict[tuple[str, str], float] = {}
    for line in raw.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{.*\})?\s+(\S+)$", line)
        if m:
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def route_server_stats(
    before: dict[tuple[str, str], float], after: dict[tuple[str, str], float], route: str
) -> Json:
    """Server-side count, mean, statuses and bucketed p50/p99 of one route, between samples."""

    def delta(key: tuple[str, str]) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    statuses: dict[str, int] = {}
    buckets: list[tuple[float, float]] = []
    total = count = 0.0
    for key in after:
        name, labels = key
        if f'route="{route}"' not in labels:
            continue
        if name == "ownrank_http_requests_total":
            st = re.search(r'status="(\d+)"', labels)
            if st and delta(key):
                statuses[st.group(1)] = statuses.get(st.group(1), 0) + int(delta(key))
        elif name == "ownrank_http_request_duration_seconds_sum":
            total += delta(key)
        elif name == "ownrank_http_request_duration_seconds_count":
            count += delta(key)
        elif name == "ownrank_http_request_duration_seconds_bucket":
            le = re.search(r'le="([^"]+)"', labels)
            if le:
                buckets.append((float(le.group(1)), delta(key)))
    buckets.sort()

    def bucket_bound(q: float) -> float | None:
        for le, c in buckets:
            if count and c >= q * count:
                return le * 1e3
        return None

    return {
        "count": int(count),
        "mean_ms": round(total / count * 1e3, 2) if count else None,
        "p50_bucket_le_ms": bucket_bound(0.5),
        "p99_bucket_le_ms": bucket_bound(0.99),
        "statuses": statuses,
    }


def warm_workers(port: int, requests_file: Path, workers: int, timeout: float = 120.0) -> Json:
    """One request at a time, each on a new connection, until every worker answered a few:
    the first calls of a route in a worker pay its lazy set-up (kept out of the measured
    runs, and reported here), and concurrent first calls would all pay it at once."""
    lines = requests_file.read_text().splitlines()
    answers: dict[str, list[float]] = {}
    statuses: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    k = 0
    while time.monotonic() < deadline and k < len(lines):
        if len(answers) >= workers and all(len(v) >= 3 for v in answers.values()):
            break
        method, path, token, body = lines[k].split("\t", 3)
        k += 1
        started = time.perf_counter()
        status, headers, _raw = request(port, method, path, token, json.loads(body))
        ms = (time.perf_counter() - started) * 1e3
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        answers.setdefault(headers.get("x-ownrank-worker", "?"), []).append(ms)
    return {
        "requests": k,
        "statuses": statuses,
        "workers_seen": len(answers),
        "first_call_ms_by_worker": {w: round(v[0], 1) for w, v in answers.items()},
        "later_calls_median_ms": round(
            float(np.median([x for v in answers.values() for x in v[1:]] or [float("nan")])), 1
        ),
    }


def run_scenarios(
    server: Server,
    scenario: str,
    args: argparse.Namespace,
    work: Path,
    tokens: dict[str, str],
    pop: Population,
    lua: Path,
    result: Json,
) -> list[Json]:
    """One scenario at every connection level, after its first calls per worker."""
    requests_file = work / f"{scenario}.tsv"
    write_requests(requests_file, scenario, args, tokens, pop)
    warm = warm_workers(server.port, requests_file, args.workers)
    result.setdefault("first_calls", {})[scenario] = warm
    say(
        f"\n{scenario}: first call per worker (lazy set-up, one at a time) "
        f"{warm['first_call_ms_by_worker']} ms, later calls median "
        f"{warm['later_calls_median_ms']} ms ({warm['requests']} requests, "
        f"statuses {warm['statuses']})"
    )
    runs = []
    for connections in args.connection_levels:
        say(
            f"\n== {scenario}: {connections} connections, {args.warmup:.0f} s warm-up + "
            f"{args.duration:.0f} s (load average {loadavg()})"
        )
        r = run_scenario(server, scenario, connections, args, lua, requests_file)
        runs.append(r)
        say(
            f"{r['requests_per_s']:.0f} req/s, p50 {r['p50_ms']:.1f} ms, p90 "
            f"{r['p90_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.0f} ms; "
            f"statuses {r['statuses']}, socket errors {r['socket_errors']}; server "
            f"{r['server']}; cores {r['cpu_cores']}; load {r['loadavg_after']}"
        )
    return runs


def run_scenario(
    server: Server,
    scenario: str,
    connections: int,
    args: argparse.Namespace,
    lua: Path,
    requests_file: Path,
) -> Json:
    if args.warmup > 0:
        run_wrk(server.port, lua, requests_file, connections, args.warmup, args.wrk_threads)
    metrics_before = server_metrics(server.port)
    load_before = loadavg()
    busy0, server0 = _busy_cpu_seconds(), server.cpu_seconds()
    self0, kids0 = _self_and_waited_children_cpu()
    wall0 = time.perf_counter()
    wrk = run_wrk(server.port, lua, requests_file, connections, args.duration, args.wrk_threads)
    wall = time.perf_counter() - wall0
    busy1, server1 = _busy_cpu_seconds(), server.cpu_seconds()
    self1, kids1 = _self_and_waited_children_cpu()
    load_after = loadavg()
    metrics_after = server_metrics(server.port)
    seconds = wrk["duration_us"] / 1e6
    lat = wrk["latency_us"]
    statuses = {k: int(v) for k, v in sorted(wrk["statuses"].items())}
    ok = sum(v for k, v in statuses.items() if k.startswith("2"))
    socket_errors = {k: v for k, v in wrk["errors"].items() if k != "status" and v}
    server_cores = (server1 - server0) / wall
    wrk_cores = (kids1 - kids0) / wall
    other = (busy1 - busy0) / wall - server_cores - wrk_cores - (self1 - self0) / wall
    return {
        "scenario": scenario,
        "route": ROUTES[scenario],
        "connections": connections,
        "seconds": round(seconds, 2),
        "requests": wrk["requests"],
        "requests_per_s": round(wrk["requests"] / seconds, 1),
        "ok_per_s": round(ok / seconds, 1),
        "p50_ms": round(lat["p50"] / 1e3, 2),
        "p75_ms": round(lat["p75"] / 1e3, 2),
        "p90_ms": round(lat["p90"] / 1e3, 2),
        "p99_ms": round(lat["p99"] / 1e3, 2),
        "p99_9_ms": round(lat["p99_9"] / 1e3, 2),
        "max_ms": round(lat["max"] / 1e3, 2),
        "mean_ms": round(lat["mean"] / 1e3, 2),
        "statuses": statuses,
        "answers_by_worker_pid": dict(sorted(wrk["workers"].items())),
        "non_2xx": sum(v for k, v in statuses.items() if not k.startswith("2")),
        "socket_errors": socket_errors,
        "errors": sum(v for k, v in statuses.items() if not k.startswith("2"))
        + sum(socket_errors.values()),
        "server": route_server_stats(metrics_before, metrics_after, ROUTES[scenario]),
        "cpu_cores": {
            "server_workers": round(server_cores, 2),
            "wrk": round(wrk_cores, 2),
            "other_processes": round(max(other, 0.0), 2),
        },
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "wrk_command": wrk["command"],
    }


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="20k items, 2k users, 20 s per run")
    p.add_argument("--items", type=int, help="catalog size (default 100000; quick 20000)")
    p.add_argument("--users", type=int, help="users with histories (default 10000; quick 2000)")
    p.add_argument("--duration", type=float, help="measured seconds per run (default 30; quick 20)")
    p.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds first (5)")
    p.add_argument(
        "--connections",
        default="2,16",
        help="concurrent connections; comma-separated: one run per value and scenario (2,16)",
    )
    p.add_argument(
        "--wrk-threads", type=int, default=1, help="wrk threads (1: leave the server CPU)"
    )
    p.add_argument("--workers", type=int, default=2, help="uvicorn workers (2)")
    p.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"subset of {','.join(SCENARIOS)}"
    )
    p.add_argument("--events-per-call", type=int, default=5, help="events per interactions call")
    p.add_argument("--request-lines", type=int, help="prepared requests per scenario (cycled)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the cached store")
    p.add_argument("--ready-timeout", type=float, default=600.0, help="seconds to wait for ready")
    p.add_argument("--seed", type=int, default=4321)
    p.add_argument("--out", type=Path, help="JSON results file")
    args = p.parse_args(argv)
    quick = args.quick
    for name, (q, full) in {
        "items": (20_000, 100_000),
        "users": (2_000, 10_000),
        "duration": (20.0, 30.0),
        "request_lines": (20_000, 40_000),
    }.items():
        if getattr(args, name) is None:
            setattr(args, name, q if quick else full)
    args.connection_levels = [int(c) for c in str(args.connections).split(",") if c.strip()]
    args.scenario_list = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(args.scenario_list) - set(SCENARIOS))
    if unknown:
        p.error(f"unknown scenarios {unknown}; known: {SCENARIOS}")
    if args.out is None:
        args.out = RESULTS_DIR / ("service_bench_quick.json" if quick else "service_bench.json")
    return args


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def print_table(result: Json) -> None:
    say("\n== summary")
    m = result["machine"]
    say(
        f"machine: {m['cpu_count']} CPUs ({m['cpu_model']}), shared by {result['args']['workers']}"
        f" server workers and wrk; load average at start {m['loadavg_at_start']}, at end "
        f"{result['loadavg_at_end']}"
    )
    st = result["store"]
    say(
        f"store: {st['items']} items, {st['users']} users, {st['events']} events "
        f"({'cached' if result['store_reused'] else 'built this run'}); index "
        f"{result.get('ready', {}).get('index')}; engine at git {result['git']['head']} "
        f"(modified: {result['git']['modified_files']})"
    )
    head = (
        "scenario",
        "conns",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "errors",
        "srv mean ms",
        "cores srv/wrk/other",
        "answers/worker",
    )
    rows: list[tuple[str, ...]] = [head]
    for r in result["runs"]:
        c = r["cpu_cores"]
        rows.append(
            (
                r["scenario"],
                str(r["connections"]),
                f"{r['requests_per_s']:.0f}",
                f"{r['p50_ms']:.1f}",
                f"{r['p90_ms']:.1f}",
                f"{r['p99_ms']:.1f}",
                f"{r['max_ms']:.0f}",
                f"{r['errors']}" + (f" {r['statuses']}" if r["non_2xx"] else ""),
                f"{r['server']['mean_ms']}",
                f"{c['server_workers']:.2f}/{c['wrk']:.2f}/{c['other_processes']:.2f}",
                "/".join(str(v) for v in r["answers_by_worker_pid"].values()),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for row in rows:
        say("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for r in result["runs"]:
        answers = list(r["answers_by_worker_pid"].values())
        if result["args"]["workers"] > 1 and answers and max(answers) > 0.9 * sum(answers):
            say(
                f"note: {r['scenario']} with {r['connections']} connections: "
                f"{max(answers)} of {sum(answers)} answers came from one worker (each worker "
                "has its own SO_REUSEPORT socket and the kernel places a connection by its "
                "address hash: with few keep-alive connections several can land on one "
                "worker), so the server used about one core"
            )
    t = result["target"]
    for check in t["checks"]:
        say(
            f"target (2 cores): >= {TARGET['recommend_per_s']:.0f} recommend req/s at p99 <= "
            f"{TARGET['recommend_p99_ms']:.0f} ms, {check['connections']} connections: "
            f"{check['requests_per_s']:.0f} req/s ({check['recommendations_per_s']:.0f} "
            f"recommended items/s) at p99 {check['p99_ms']:.1f} ms -> {verdict(check['met'])}"
        )
    if not t["checks"]:
        say("target: no recommend run")
    for r in result["runs"]:
        if r["scenario"] == "floor":
            say(
                f"floor, {r['connections']} connections: {r['requests_per_s']:.0f} recommend "
                f"req/s at p99 {r['p99_ms']:.1f} ms with the engine's answer precomputed (what "
                "the service alone allows on this machine)"
            )


def target_checks(runs: list[Json]) -> Json:
    checks = []
    for r in runs:
        if r["scenario"] != "recommend":
            continue
        met = (
            r["ok_per_s"] >= TARGET["recommend_per_s"]
            and r["p99_ms"] <= TARGET["recommend_p99_ms"]
            and r["errors"] == 0
        )
        checks.append(
            {
                "connections": r["connections"],
                "requests_per_s": r["ok_per_s"],
                "recommendations_per_s": r["ok_per_s"] * 10,
                "p99_ms": r["p99_ms"],
                "met": met,
            }
        )
    return {**TARGET, "met": any(c["met"] for c in checks), "checks": checks}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        return serve_main(argv[1:])
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        say("wrk is not installed: run scripts/bench_service.sh (apt-get install wrk)")
        return 2
    started = time.time()
    result: Json = {
        "machine": machine(),
        "args": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k not in ("connection_levels", "scenario_list")
        },
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git": git_state(),
        "busy_processes_at_start": busy_processes(),
    }
    say(
        f"service bench: {args.items} items, {args.users} users, {args.workers} workers, "
        f"scenarios {args.scenario_list} x connections {args.connection_levels}, "
        f"{args.duration:.0f} s each (load average {result['machine']['loadavg_at_start']})"
    )
    if result["busy_processes_at_start"]:
        say(f"other busy processes: {result['busy_processes_at_start']}")
    root, built, reused = cached_store(args)
    result["store"] = built
    result["store_reused"] = reused
    pop = Population(np.load(root / "topics.npy"), "s")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="service-run-", dir=STORE_CACHE))
    server: Server | None = None
    runs: list[Json] = []
    try:
        copy_s = time.perf_counter()
        shutil.copytree(root / "data", work / "data")
        # the copy's dirty pages would otherwise be written back during the first
        # scenarios, and every durable commit (fsync) of the server would wait on them
        os.sync()
        say(f"working copy of the store in {time.perf_counter() - copy_s:.1f} s: {work}")
        server = Server(work / "data", args.workers, SERVER_LOG)
        ready_s = time.perf_counter()
        result["ready"] = server.wait_ready(args.ready_timeout)
        result["ready_seconds"] = round(time.perf_counter() - ready_s, 1)
        say(
            f"server on http://{HOST}:{server.port}, {args.workers} workers ready in "
            f"{result['ready_seconds']} s: {result['ready']}"
        )
        # one token through the API (admin route), the rest signed like `ownrank token`
        status, _h, raw = request(
            server.port, "POST", "/tokens", ADMIN_KEY, {"user_id": user_id(0)}
        )
        if status != 200:
            raise RuntimeError(f"POST /tokens answered {status}: {raw[:200]!r}")
        tokens = mint_tokens(work / "data", [user_id(i) for i in range(args.users)])
        tokens[user_id(0)] = json.loads(raw)["token"]
        lua = work / "rotate.lua"
        lua.write_text(WRK_LUA)
        for scenario in args.scenario_list:
            if scenario == "floor":  # last, on its own server
                continue
            runs += run_scenarios(server, scenario, args, work, tokens, pop, lua, result)
        if "floor" in args.scenario_list:
            result["server_exit"] = server.stop()
            server = Server(work / "data", args.workers, FLOOR_SERVER_LOG, floor=True)
            server.wait_ready(args.ready_timeout)
            say(f"\nfloor: recommend answers a precomputed result ({HOST}:{server.port})")
            runs += run_scenarios(server, "floor", args, work, tokens, pop, lua, result)
    finally:
        if server is not None:
            exit_code = server.stop()
            result["server_exit"] = result.get("server_exit") or exit_code
        shutil.rmtree(work, ignore_errors=True)
    logs = [log for log in (SERVER_LOG, FLOOR_SERVER_LOG) if log.exists()]
    if "floor" not in args.scenario_list:
        logs = [log for log in logs if log != FLOOR_SERVER_LOG]  # an older run's
    errors = [
        ln
        for log in logs
        for ln in log.read_text(errors="replace").splitlines()
        if '"level": "error"' in ln
    ]
    result["server_log"] = {
        "file": ", ".join(str(log) for log in logs),
        "error_lines": len(errors),
        "first_errors": errors[:5],
    }
    result["runs"] = runs
    result["target"] = target_checks(runs)
    result["loadavg_at_end"] = loadavg()
    result["busy_processes_at_end"] = busy_processes()
    result["total_seconds"] = round(time.time() - started, 1)
    print_table(result)
    if result["server_log"]["error_lines"]:
        say(
            f"server log: {result['server_log']['error_lines']} error lines, e.g. "
            f"{result['server_log']['first_errors'][:2]}"
        )
    machine_info.write_results(
        result, args.out, f"; busy processes at end: {result['busy_processes_at_end']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
