"""One BLAS thread for the small linear algebra of personal models.

A 384 x 384 solve is fastest on one thread when other work shares the cores,
and one thread gives the same bits in every process. Library discovery is
cached (a fresh ``threadpool_limits`` re-reads /proc on every call).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from threadpoolctl import ThreadpoolController


@cache
def _controller() -> ThreadpoolController:
    return ThreadpoolController()


@contextmanager
def single_threaded() -> Iterator[None]:
    with _controller().limit(limits=1, user_api="blas"):
        yield
