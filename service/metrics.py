"""Prometheus metrics: request counts and latencies per route template, and engine facts.

Labels are route *templates* (``/users/{user_id}/recommend``), methods and
status codes, never a user id, item id, token or query. Each app has its own
registry (so tests can build many apps). With several uvicorn workers,
``ownrank serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start
and ``/metrics`` then aggregates every worker's values from that directory.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED_ROUTE = "<unmatched>"


class Metrics:
    """The service's metric families, registered in a registry of their own."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self.requests = Counter(
            "ownrank_http_requests_total",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ownrank_http_request_duration_seconds",
            "HTTP request latency by route template and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.recommend_latency = Histogram(
            "ownrank_recommend_duration_seconds",
            "Time the engine spent computing recommendations, by kind.",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.erasures = Counter(
            "ownrank_erasures_total",
            "Users erased (the erasure receipts issued).",
            registry=self.registry,
        )
        self.query_cache = Counter(
            "ownrank_query_embedding_cache_total",
            "Query embeddings served from the LRU cache (hit) or computed (miss).",
            ["result"],
            registry=self.registry,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, method=method, status=str(status)).inc()
        self.latency.labels(route=route, method=method).observe(seconds)

    def exposition(self) -> bytes:
        """The text exposition format, of all workers in multiprocess mode."""
        if self.multiprocess:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
