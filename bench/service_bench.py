"""Load benchmark of the HTTP service: ``ownrank serve`` with 2 workers under wrk.

1. A store of N synthetic items and U users (``--items`` / ``--users``): the catalog of
   ``bench/catalog_bench.py`` (``SyntheticEncoder``: the real model would take minutes
   to embed it), users from ``engine_bench.make_history`` (10-150 events each); cached
   under ``bench/results/service-store/`` by its parameters (``--rebuild``).
2. Each run serves a fresh copy of it with the service's own ``server.serve`` (uvicorn,
   JSON logs, Prometheus multiprocess metrics) on 127.0.0.1, the app from :func:`app`;
   stopped at the end, also on failure or Ctrl-C. Log: ``bench/results/service_bench_server.log``.
3. wrk drives one scenario at a time for a fixed time with a fixed number of connections
   (closed loop), rotating through every user, each with their own token: ``recommend``,
   ``interactions`` (durable LMDB write, model refit), ``search`` and last, on a server
   of its own, ``floor``: recommend against :func:`floor_app`, which answers a result
   computed at start: what the service itself (HTTP, auth, validation, metrics, logs,
   JSON) allows, the ceiling a faster engine nears.

Before a scenario, requests go one at a time until every worker answered a few (the
``warm-up call`` rows: a route's first call in a worker pays its lazy set-up); an
unmeasured wrk run precedes each measured one. Per run: requests/s, wrk's latency
percentiles, statuses, socket errors, the server's own latency (``/metrics``), and the
CPU of the server workers, wrk and other processes. Closed-loop latencies omit the
waiting a fixed-rate client would see past saturation: there throughput is the figure.

    scripts/bench_service.sh --quick          # 20k items, 2k users, 20 s per run
    .venv/bin/python bench/service_bench.py --connections 4,16 --scenarios recommend
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:  # imported by uvicorn workers via --app-dir/sys.path
    sys.path.insert(0, str(BENCH_DIR))

import harness  # noqa: E402
import machine_info  # noqa: E402
from catalog_bench import (  # noqa: E402
    PACKAGES,
    SyntheticEncoder,
    item_batches,
    lists_current,
    make_query,
)
from engine_bench import Population, make_history, user_id  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from machine_info import busy_cpu_seconds, own_cpu_seconds, tree_cpu_seconds  # noqa: E402

from ownrank import Engine, EngineConfig  # noqa: E402
from ownrank.service.app import create_app, engine_config_of  # noqa: E402
from ownrank.service.settings import ServiceSettings  # noqa: E402

Json = dict[str, Any]

STORE_CACHE = harness.RESULTS / "service-store"
# bump when the way the store is built changes (2: records keep the head's answer)
STORE_VERSION = 2
SERVER_LOG = harness.RESULTS / "service_bench_server.log"
FLOOR_SERVER_LOG = harness.RESULTS / "service_bench_floor_server.log"
HOST = "127.0.0.1"
LISTS_ENV = "SERVICE_BENCH_CONTENT_NEIGHBOURS"  # --content-neighbours, for the workers
SCENARIOS = ("recommend", "interactions", "search", "floor")
# floor: the recommend requests against floor_app
ROUTES = {s: "/users/{user_id}/" + ("recommend" if s == "floor" else s) for s in SCENARIOS}
P99_BUDGET_MS = 50.0  # issue 5: >= 1,000 recommend calls/s at p99 <= 50 ms, 2 cores
TARGET_ROW = f"recommend calls/s at p99 <= {P99_BUDGET_MS:g} ms"
LATENCIES = ("p50", "p75", "p90", "p99", "p99_9", "max", "mean")  # of wrk's figures
ADMIN_KEY = "bench-admin-key-0123456789abcdef"  # loopback-only throwaway store


# -- the served app ---------------------------------------------------------------------------


def synthetic_encoder(_settings: ServiceSettings) -> SyntheticEncoder:
    return SyntheticEncoder()


def app() -> FastAPI:
    """The service app with the benchmark's synthetic encoder (for ``uvicorn --factory``):
    settings from ``OWNRANK_*``, exactly like ``create_app_from_env``; the store's
    ``--content-neighbours`` when given (``LISTS_ENV``)."""
    settings = ServiceSettings.from_env()
    config = served_config(settings)
    return create_app(settings, encoder_factory=synthetic_encoder, engine_config=config)


def served_config(settings: ServiceSettings) -> EngineConfig:
    """The workers' engine settings: the service's, with the store's
    ``--content-neighbours`` when given (``LISTS_ENV``)."""
    config = engine_config_of(settings)
    if os.environ.get(LISTS_ENV):
        config = config.model_copy(update={"content_neighbours": int(os.environ[LISTS_ENV])})
    return config


class CannedRecommendations:
    """The real engine, except that ``recommend`` answers user 0's 10 items computed at
    start: a recommend call then costs only what the service adds (HTTP, auth, validation,
    thread hand-off, metrics, logs, JSON)."""

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
    engine = Engine(settings.data_dir, served_config(settings), encoder=SyntheticEncoder())
    return create_app(settings, engine=cast(Engine, CannedRecommendations(engine)))


def serve_main(argv: Sequence[str]) -> int:
    """``service_bench.py serve DATA_DIR PORT WORKERS [floor]``: the service's own
    ``prepare`` and ``serve`` (uvicorn options, logs, multiprocess metrics) with the app
    factory :func:`app` (with ``floor``: :func:`floor_app`)."""
    from ownrank.service import server

    data_dir, port, workers = Path(argv[0]), int(argv[1]), int(argv[2])
    settings = ServiceSettings.from_env().model_copy(update={"data_dir": data_dir})
    server.prepare(settings)
    # uvicorn's workers are spawned processes: they find this module on sys.path
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(BENCH_DIR), os.environ.get("PYTHONPATH", "")) if p
    )
    server.APP_FACTORY = "service_bench:" + ("floor_app" if argv[3:4] == ["floor"] else "app")
    server.serve(settings, host=HOST, port=port, workers=workers, log_level="info")
    return 0


# -- the store ----------------------------------------------------------------------------------


def store_config(args: argparse.Namespace) -> EngineConfig:
    """The engine settings the store is built and checked with (``--content-neighbours``)."""
    lists = args.content_neighbours
    return EngineConfig() if lists is None else EngineConfig(content_neighbours=lists)


def build_store(root: Path, args: argparse.Namespace) -> Json:
    """Catalog and users into ``root/data``; item topics into ``root/topics.npy``."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    topic_list: list[int] = []
    started = time.perf_counter()
    with Engine(root / "data", store_config(args), encoder=SyntheticEncoder()) as engine:
        for items in item_batches(args.items, 1000, args.seed + 100, "s"):
            topic_list += [int(str(item["properties"]["topic"])[1:]) for item in items]
            engine.catalog.upsert(items)
        engine.catalog.keeper.sync()
        catalog_s = time.perf_counter() - started
        print(f"catalog: {args.items} items in {catalog_s:.0f} s", flush=True)
        lists_s = lists_current(engine)  # else every run that opens the store builds them
        print(f"content-neighbour lists: {lists_s:.0f} s", flush=True)
        topics = np.array(topic_list, dtype=np.int64)
        pop = Population(topics, "s")
        rng = np.random.default_rng(args.seed + 1)
        now = time.time()
        events = 0
        users_start = time.perf_counter()
        for i in range(args.users):
            history = make_history(rng, pop, int(rng.integers(10, 151)), now)
            engine.interact(user_id(i), history)
            events += len(history)
        users_s = time.perf_counter() - users_start
    np.save(root / "topics.npy", topics)
    built = {"items": args.items, "users": args.users, "events": events, "seed": args.seed,
             "version": STORE_VERSION, "catalog_seconds": round(catalog_s, 1),
             "users_seconds": round(users_s, 1), "lists_seconds": round(lists_s, 1),
             "git": harness.git_state(),
             "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}  # fmt: skip
    (root / "built.json").write_text(json.dumps(built, indent=2) + "\n")
    return built


def cached_store(args: argparse.Namespace) -> tuple[Path, Json, bool]:
    """The built store for these parameters (building it if needed): dir, facts, reused."""
    root = STORE_CACHE / f"items{args.items}-users{args.users}-seed{args.seed}-v{STORE_VERSION}"
    if args.content_neighbours is not None:
        root = root.with_name(f"{root.name}-lists{args.content_neighbours}")
    marker = root / "built.json"
    if marker.exists() and not args.rebuild:
        try:  # the engine may have changed since: the store must still open
            with Engine(root / "data", store_config(args), encoder=SyntheticEncoder()) as engine:
                count = engine.catalog.count()
                lists = engine.catalog.neighbours.status()
                if count == args.items and lists.k > 0 and not lists.current:
                    # a store built before its builder waited for the lists
                    print(f"completing the content-neighbour lists of {root}", flush=True)
                    print(f"content-neighbour lists: {lists_current(engine):.0f} s", flush=True)
            if count == args.items:
                return root, json.loads(marker.read_text()), True
            print(f"cached store at {root} has {count} items: rebuilding")
        except Exception as exc:
            print(f"cached store at {root} does not open ({type(exc).__name__}: {exc}): rebuilding")
    print(f"building the store: {args.items} items, {args.users} users into {root}", flush=True)
    return root, build_store(root, args), False


# -- the server ---------------------------------------------------------------------------------


def server_env(args: argparse.Namespace) -> dict[str, str]:
    """The server's settings from the options: the store's ``--content-neighbours``
    (``LISTS_ENV``) and ``--no-index-mmap`` (``OWNRANK_INDEX_MMAP``)."""
    env = {"OWNRANK_INDEX_MMAP": "true" if args.index_mmap else "false"}
    if args.content_neighbours is not None:
        env[LISTS_ENV] = str(args.content_neighbours)
    return env


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

    def __init__(
        self,
        data_dir: Path,
        workers: int,
        log_path: Path,
        floor: bool = False,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        """``settings``: environment variables for the server, beside the bench's own
        (every other ``OWNRANK_*`` variable of this process is left out)."""
        self.port = free_port()
        self.workers = workers
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if not k.startswith("OWNRANK_")}
        env.update({"OWNRANK_ADMIN_KEYS": ADMIN_KEY, "OWNRANK_ENCODER_THREADS": "1"})
        env.update(settings or {})
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
                if len(ready_pids) >= self.workers:
                    return {**json.loads(raw), "workers_ready": sorted(ready_pids)}
            else:
                time.sleep(0.2)
        raise TimeoutError(f"the server was not ready in {timeout:.0f} s; see {self.log_path}")

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


def busy_processes(min_cpu: float = 20.0) -> list[str]:
    """Processes using at least ``min_cpu`` % of a core over their lifetime (ps)."""
    cmd = ["ps", "-eo", "pid,pcpu,etime,args", "--sort=-pcpu", "--no-headers"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    lines = [line.split(None, 3) for line in out.splitlines()]
    return [f"{p[0]} {p[1]}% {p[2]} {p[3][:100]}" for p in lines
            if len(p) == 4 and float(p[1]) >= min_cpu and int(p[0]) != os.getpid()]  # fmt: skip


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
) -> None:
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
            # without a timestamp: "now" on the server
            body = {"events": [{k: v for k, v in e.items() if k != "timestamp"} for e in events]}
        else:
            body = {"query": make_query(rng), "n": 10}
        route = ROUTES[scenario].replace("{user_id}", uid)
        lines.append(f"POST\t{route}\t{tokens[uid]}\t{json.dumps(body, separators=(',', ':'))}")
    path.write_text("\n".join(lines) + "\n")


def run_wrk(
    port: int, lua: Path, requests_file: Path, connections: int, seconds: float, threads: int
) -> Json:
    env = {**os.environ, "OWNRANK_WRK_REQUESTS": str(requests_file)}
    cmd = ["wrk", f"-t{max(1, min(threads, connections))}", f"-c{connections}",
           f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(lua),
           f"http://{HOST}:{port}"]  # fmt: skip
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
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{.*\})?\s+(\S+)$", line)
        if m and not line.startswith("#"):
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def add_server_stats(
    run: harness.Run, before: dict[tuple[str, str], float], port: int, labels: Json
) -> None:
    """The server's own count, mean, statuses and bucketed p50/p99 of the run's route,
    between two samples of ``/metrics``."""
    after = server_metrics(port)
    statuses: dict[str, int] = {}
    buckets: list[tuple[float, float]] = []
    total = count = 0.0
    for (name, keys), value in after.items():
        delta = value - before.get((name, keys), 0.0)
        if f'route="{labels["route"]}"' not in keys:
            continue
        if name == "ownrank_http_requests_total":
            st = re.search(r'status="(\d+)"', keys)
            if st and delta:
                statuses[st.group(1)] = statuses.get(st.group(1), 0) + int(delta)
        elif name == "ownrank_http_request_duration_seconds_sum":
            total += delta
        elif name == "ownrank_http_request_duration_seconds_count":
            count += delta
        elif name == "ownrank_http_request_duration_seconds_bucket":
            le = re.search(r'le="([^"]+)"', keys)
            if le:
                buckets.append((float(le.group(1)), delta))

    def bucket_bound(q: float) -> float | None:
        return next((le * 1e3 for le, c in sorted(buckets) if count and c >= q * count), None)

    run.add("server calls", int(count), "count", **labels)
    run.add("server mean", total / count * 1e3 if count else None, "ms", **labels)
    run.add("server p50 <=", bucket_bound(0.5), "ms", **labels)
    run.add("server p99 <=", bucket_bound(0.99), "ms", **labels)
    for code, n in sorted(statuses.items()):
        run.add("server answers", n, "count", **labels, status=code)


def warm_workers(
    run: harness.Run, port: int, requests_file: Path, scenario: str, workers: int
) -> None:
    """One request at a time, each on a new connection, until every worker answered a few:
    the first calls of a route in a worker pay its lazy set-up (kept out of the measured
    runs, and reported here), and concurrent first calls would all pay it at once."""
    lines = requests_file.read_text().splitlines()
    answers: dict[str, list[float]] = {}
    statuses: dict[str, int] = {}
    deadline = time.monotonic() + 120.0
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
    run.add("warm-up requests", k, "count", scenario=scenario)
    run.add("workers seen", len(answers), "count", scenario=scenario)
    for code, n in sorted(statuses.items()):
        run.add("warm-up answers", n, "count", scenario=scenario, status=code)
    for i, times in enumerate(answers.values(), 1):
        run.add("warm-up call", times[0], "ms", scenario=scenario, call=f"first, worker {i}")
    later = [x for v in answers.values() for x in v[1:]]
    later_ms = statistics.median(later) if later else None
    run.add("warm-up call", later_ms, "ms", scenario=scenario, call="later, median")
    run.details.setdefault("warm-up workers", {})[scenario] = list(answers)


def run_scenarios(
    run: harness.Run,
    server: Server,
    scenario: str,
    args: argparse.Namespace,
    work: Path,
    tokens: dict[str, str],
    pop: Population,
) -> None:
    """One scenario at every connection level, after its first calls per worker; each
    measured wrk run after an unmeasured warm-up one."""
    requests_file, lua = work / f"{scenario}.tsv", work / "rotate.lua"
    write_requests(requests_file, scenario, args, tokens, pop)
    warm_workers(run, server.port, requests_file, scenario, args.workers)
    for connections in args.connection_levels:
        print(f"{scenario}, {connections} connections ...", end=" ", flush=True)
        if args.warmup > 0:
            run_wrk(server.port, lua, requests_file, connections, args.warmup, args.wrk_threads)
        metrics_before = server_metrics(server.port)
        load_before = [round(x, 2) for x in os.getloadavg()]
        busy0, server0 = busy_cpu_seconds(), tree_cpu_seconds(server.proc.pid)
        self0, kids0 = own_cpu_seconds(), own_cpu_seconds(children=True)
        wall0 = time.perf_counter()
        wrk = run_wrk(server.port, lua, requests_file, connections, args.duration, args.wrk_threads)
        wall = time.perf_counter() - wall0
        busy1, server1 = busy_cpu_seconds(), tree_cpu_seconds(server.proc.pid)
        self1, kids1 = own_cpu_seconds(), own_cpu_seconds(children=True)
        labels = {"scenario": scenario, "route": ROUTES[scenario], "connections": connections}
        labels["workers"] = args.workers
        add_server_stats(run, metrics_before, server.port, labels)
        seconds = wrk["duration_us"] / 1e6
        statuses = {k: int(v) for k, v in sorted(wrk["statuses"].items())}
        ok = sum(v for k, v in statuses.items() if k.startswith("2"))
        non_2xx = sum(statuses.values()) - ok
        socket_errors = {k: v for k, v in wrk["errors"].items() if k != "status" and v}
        server_cores = (server1 - server0) / wall
        wrk_cores = (kids1 - kids0) / wall
        other = (busy1 - busy0) / wall - server_cores - wrk_cores - (self1 - self0) / wall
        answers = list(wrk["workers"].values())
        figures = [
            ("throughput", wrk["requests"] / seconds, "req/s"),
            ("2xx", ok / seconds, "req/s"),
            *((key.replace("_", "."), wrk["latency_us"][key] / 1e3, "ms") for key in LATENCIES),
            ("requests", wrk["requests"], "count"),
            ("duration", seconds, "s"),
            ("errors", non_2xx + sum(socket_errors.values()), "count"),
            ("non-2xx", non_2xx, "count"),
            ("socket errors", sum(socket_errors.values()), "count"),
            ("server cores", server_cores, "cores"),
            ("wrk cores", wrk_cores, "cores"),
            ("other cores", max(other, 0.0), "cores"),
            ("busiest worker", 100 * max(answers) / sum(answers) if answers else None, "%"),
        ]
        for metric, value, unit in figures:
            run.add(metric, value, unit, **labels)
        for code, n in statuses.items():
            run.add("answers", n, "count", **labels, status=code)
        run.details.setdefault("runs", {})[f"{scenario}, {connections} connections"] = {
            "socket_errors": socket_errors,
            "answers_by_worker_pid": dict(sorted(wrk["workers"].items())),
            "loadavg_before": load_before,
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "wrk_command": wrk["command"],
        }
        print(f"{figures[0][1]:.0f} req/s, p99 {wrk['latency_us']['p99'] / 1e3:.1f} ms")


def worker_memory(run: harness.Run, pids: Sequence[str], server: str) -> None:
    """Each worker's resident memory after the scenarios, from ``/proc``: anonymous
    (its own heap: an index held in memory), file-backed (pages of LMDB and of a mapped
    index file, which every process mapping the file shares) and PSS (each shared page
    split between the processes that map it: the workers' PSS add up to what they
    hold together)."""
    fields = {"RssAnon": "anonymous", "RssFile": "file-backed", "Pss": "PSS"}
    for number, pid in enumerate(pids):
        found: dict[str, float] = {}
        for name in ("status", "smaps_rollup"):
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
                    key, _, value = line.partition(":")
                    if key in fields and value.strip().endswith("kB"):
                        found[fields[key]] = int(value.split()[0]) / 1024
        for metric, mib in found.items():
            run.add(f"worker memory, {metric}", mib, "MiB", server=server, worker=number)


def recommend_at_budget(rows: Sequence[harness.Row]) -> tuple[float, int | None] | None:
    """Issue 5's rule: the most 2xx recommend answers/s of a run with p99 <= 50 ms and no
    errors, and its connections; (0, None) when no run qualifies, None without runs."""
    runs: dict[Any, dict[str, Any]] = {}
    for r in rows:
        if r.labels.get("scenario") == "recommend" and r.metric in ("2xx", "p99", "errors"):
            runs.setdefault(r.labels.get("connections"), {})[r.metric] = r.value
    if not runs:
        return None
    ok = [(float(f["2xx"]), c) for c, f in runs.items()
          if f["p99"] <= P99_BUDGET_MS and f["errors"] == 0]  # fmt: skip
    return max(ok, key=lambda x: x[0], default=(0.0, None))


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="20k items, 2k users, 20 s per run")
    p.add_argument("--items", type=int, help="catalog size (default 100000; quick 20000)")
    p.add_argument("--users", type=int, help="users with histories (default 10000; quick 2000)")
    p.add_argument("--duration", type=float, help="measured seconds per run (default 30; quick 20)")
    p.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds first (5)")
    p.add_argument("--connections", default="2,16", help="one run per value and scenario (2,16)")
    p.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (1: leave the CPU)")
    p.add_argument("--workers", type=int, default=2, help="uvicorn workers (2)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="a subset, comma-separated")
    p.add_argument("--events-per-call", type=int, default=5, help="events per interactions call")
    p.add_argument("--request-lines", type=int, help="prepared requests per scenario (cycled)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the cached store")
    p.add_argument(
        "--content-neighbours",
        type=int,
        help="EngineConfig.content_neighbours of the store and of the server's engine (a "
        "store of its own; 0: no lists, which take hours at 1M items)",
    )
    p.add_argument(
        "--no-index-mmap",
        dest="index_mmap",
        action="store_false",
        help="each worker holds its own copy of an IVF index (OWNRANK_INDEX_MMAP=false), "
        "to compare memory per worker",
    )
    p.add_argument("--ready-timeout", type=float, default=600.0, help="seconds to wait for ready")
    p.add_argument("--seed", type=int, default=4321)
    p.add_argument("--out", type=Path, help="JSON results file")
    args = p.parse_args(argv)
    quick = args.quick
    args.items = args.items or (20_000 if quick else 100_000)
    args.users = args.users or (2_000 if quick else 10_000)
    args.duration = args.duration or (20.0 if quick else 30.0)
    args.request_lines = args.request_lines or (20_000 if quick else 40_000)
    args.connection_levels = [int(c) for c in str(args.connections).split(",") if c.strip()]
    args.scenario_list = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(args.scenario_list) - set(SCENARIOS))
    if unknown:
        p.error(f"unknown scenarios {unknown}; known: {SCENARIOS}")
    args.out = args.out or harness.default_out("service_bench", quick)
    return args


def declare(run: harness.Run) -> None:
    """Tables, the issue-5 target and the caveats."""
    by = ["scenario", "connections", "workers"]
    latency = ["throughput", "p50", "p90", "p99", "max", "errors", "server mean"]
    run.table("Requests through wrk (closed loop)", by, metrics=latency)
    cpu = ["server cores", "wrk cores", "other cores", "busiest worker"]
    run.table("CPU used during each run; answers from the busiest worker", by, metrics=cpu)
    title = "Warm-up: calls one at a time on new connections (lazy set-up per worker)"
    run.table(title, ["scenario"], "call", {"metric": "warm-up call"})
    store = ["events", "catalog build", "users build", "store copy", "ready", "server log errors"]
    run.table("Store and server", ["store"], metrics=store)
    memory = [f"worker memory, {m}" for m in ("anonymous", "file-backed", "PSS")]
    title = "Memory of each worker after its scenarios (MiB; file-backed pages are shared)"
    run.table(title, ["server", "worker"], metrics=memory)
    lone = [r.labels for r in run.rows if r.metric == "busiest worker" and (r.value or 0) > 90]
    if lone and run.params["workers"] > 1:
        runs = "; ".join(f"{x['scenario']}, {x['connections']} connections" for x in lone)
        run.note(f"{runs}: over 90% of the answers came from one worker (each has "
                 "its own SO_REUSEPORT socket and the kernel places a connection by its address "
                 "hash: few keep-alive connections can land on one worker), so the server used "
                 "about one core.")  # fmt: skip
    run.target(f"{TARGET_ROW} (2 workers)", TARGET_ROW, ">=", 1_000.0, source="issue 5")
    run.note("A recommend call returns 10 items: the target counts calls; items/s is 10x.")
    run.note("floor: the recommend requests against a server whose engine answers a result "
             "computed at start (what the service alone allows on this machine).")  # fmt: skip
    run.note("Closed loop: latencies omit the waiting a fixed-rate client would see past "
             "saturation; the server workers, wrk and others share the cores.")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        return serve_main(argv[1:])
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: run scripts/bench_service.sh (apt-get install wrk)")
        return 2
    run = harness.Run("service_bench", vars(args), quick=args.quick)
    run.machine = machine_info.machine(PACKAGES)
    run.details["busy processes at start"] = busy_processes()
    root, built, reused = cached_store(args)
    store = "cached" if reused else "built"
    run.details["store"] = {**built, "reused": reused}
    run.add("events", built["events"], "count", store=store)
    run.add("catalog build", built["catalog_seconds"], "s", store=store)
    run.add("users build", built["users_seconds"], "s", store=store)
    pop = Population(np.load(root / "topics.npy"), "s")
    work = Path(tempfile.mkdtemp(prefix="service-run-", dir=STORE_CACHE))
    server: Server | None = None
    try:
        copy_s = time.perf_counter()
        shutil.copytree(root / "data", work / "data")
        # the copy's dirty pages would otherwise be written back during the first
        # scenarios, and every durable commit (fsync) of the server would wait on them
        os.sync()
        run.add("store copy", time.perf_counter() - copy_s, "s", store=store)
        server = Server(work / "data", args.workers, SERVER_LOG, settings=server_env(args))
        ready_s = time.perf_counter()
        run.details["ready"] = server.wait_ready(args.ready_timeout)
        run.add("ready", time.perf_counter() - ready_s, "s", store=store)
        # one token through the API (admin route), the rest signed like `ownrank token`
        status, _h, raw = request(
            server.port, "POST", "/tokens", ADMIN_KEY, {"user_id": user_id(0)}
        )
        if status != 200:
            raise RuntimeError(f"POST /tokens answered {status}: {raw[:200]!r}")
        tokens = mint_tokens(work / "data", [user_id(i) for i in range(args.users)])
        tokens[user_id(0)] = json.loads(raw)["token"]
        (work / "rotate.lua").write_text(WRK_LUA)
        for scenario in args.scenario_list:
            if scenario != "floor":  # last, on its own server
                run_scenarios(run, server, scenario, args, work, tokens, pop)
        worker_memory(run, run.details["ready"]["workers_ready"], "service")
        if "floor" in args.scenario_list:
            run.details["server exit"] = server.stop()
            server = Server(
                work / "data", args.workers, FLOOR_SERVER_LOG, floor=True, settings=server_env(args)
            )
            floor_pids = server.wait_ready(args.ready_timeout)["workers_ready"]
            run_scenarios(run, server, "floor", args, work, tokens, pop)
            worker_memory(run, floor_pids, "floor")
    finally:
        if server is not None:
            exit_code = server.stop()
            run.details["server exit"] = run.details.get("server exit") or exit_code
        shutil.rmtree(work, ignore_errors=True)
    logs = [SERVER_LOG, *([FLOOR_SERVER_LOG] if "floor" in args.scenario_list else [])]
    text = "\n".join(log.read_text(errors="replace") for log in logs if log.exists())
    errors = [line for line in text.splitlines() if '"level": "error"' in line]
    run.add("server log errors", len(errors), "count", store=store)
    run.details["server log"] = {"files": [str(p) for p in logs], "first errors": errors[:5]}
    run.details["busy processes at end"] = busy_processes()
    best = recommend_at_budget(run.rows)
    if best is not None:
        run.add(TARGET_ROW, best[0], "calls/s", scenario="recommend", connections=best[1])
        if best[1] is None:
            run.note(f"No recommend run had p99 <= {P99_BUDGET_MS:g} ms without errors.")
    declare(run)
    run.finish(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
