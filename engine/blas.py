"""How many BLAS threads the engine's linear algebra runs on.

A personal model's fit (a 384 x 384 solve, small products) always runs on one
thread: as fast as several, and the same bits in every process. Ranking reads the
catalog matrix once or more per call: on an idle machine two threads pull it from
memory faster (ml-1m-half recommend p50 1.8 against 2.1 ms), but with every core
busy BLAS threads that wait for a core spin (p50 23 against 7 ms,
``bench/blas_threads_bench.py``): so ranking follows ``EngineConfig.blas_threads``. The BLAS
libraries are looked up once; entering and leaving costs a few microseconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import cache
from typing import Any

import numpy  # noqa: F401  (loads the BLAS library the lookup below must find)
from threadpoolctl import ThreadpoolController


@cache
def _blas_libraries() -> list[Any]:
    """The BLAS libraries on their own threads (numpy's). One on OpenMP threads is
    FAISS's: its count is per calling thread and FAISS's setting (``index_threads``),
    which resetting it here would overwrite."""
    found = ThreadpoolController().select(user_api="blas").lib_controllers
    return [lib for lib in found if getattr(lib, "threading_layer", "") != "openmp"]


@contextmanager
def blas_threads(count: int | None) -> Iterator[None]:
    """numpy's BLAS on ``count`` threads inside the block (process-wide while it runs;
    None: unchanged).

    >>> import numpy as np
    >>> with blas_threads(1):
    ...     float(np.ones((2, 2)) @ np.ones(2) @ np.ones(2))
    4.0
    """
    libraries = [] if count is None else _blas_libraries()
    before = [lib.num_threads for lib in libraries]
    for lib, threads in zip(libraries, before, strict=True):
        if threads != count:
            lib.set_num_threads(count)
    try:
        yield
    finally:
        for lib, threads in zip(libraries, before, strict=True):
            if threads != count:
                lib.set_num_threads(threads)


def single_threaded() -> AbstractContextManager[None]:
    """BLAS on one thread inside the block (fits, and the catalog's own products)."""
    return blas_threads(1)
