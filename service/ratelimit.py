"""Optional per-credential rate limiting: a token bucket per token or admin key.

Buckets are per worker process (a client spread over N workers gets up to N
times the rate) and keyed by a hash of the credential, never the credential
itself. The number of buckets is bounded: the least recently used go first.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

MAX_BUCKETS = 100_000


class RateLimiter:
    """``rate`` requests per second with bursts of ``burst``; ``rate`` 0 allows all."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0.0

    def acquire(self, key: str) -> float:
        """0.0 if the request may go ahead, else the seconds to wait before retrying."""
        if not self.enabled:
            return 0.0
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)
            return wait
