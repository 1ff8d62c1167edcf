"""One BLAS thread for the engine's linear algebra.

The engine's products are small (a 384 x 384 solve, a catalog times a vector):
on one thread they are as fast as on several when the machine is quiet, and far
faster when other work shares the cores (BLAS threads that wait for a busy core
spin: a recommend on ml-1m-half took 12 ms instead of 4 beside another process,
bench/README.md 2026-12-06). One thread also gives the same bits in every
process. The BLAS libraries are looked up once; entering and leaving costs a few
microseconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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
def single_threaded() -> Iterator[None]:
    """BLAS on one thread inside the block (process-wide while it runs).

    >>> import numpy as np
    >>> with single_threaded():
    ...     float(np.ones((2, 2)) @ np.ones(2) @ np.ones(2))
    4.0
    """
    libraries = _blas_libraries()
    before = [lib.num_threads for lib in libraries]
    for lib, threads in zip(libraries, before, strict=True):
        if threads != 1:
            lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, threads in zip(libraries, before, strict=True):
            if threads != 1:
                lib.set_num_threads(threads)
