"""How an index's breadth follows the catalog's size: HNSW's search beam, IVF's
number of lists and its training sample. Pure functions of the live item count (and
the configuration), so a benchmark builds exactly what ``IndexKeeper`` builds.
"""

from __future__ import annotations

import math

import numpy as np

EF_SEARCH = 96  # HNSW's beam width up to EF_GROWS_FROM live items
EF_GROWS_FROM = 50_000
EF_SEARCH_MAX = 256


def ef_search_for(live: int, configured: int | None = None) -> int:
    """HNSW's beam width for a catalog of ``live`` items: the configured one, else 96
    up to 50,000 items, then in proportion to the size, at most 256. Measured
    (``bench/index_bench.py --ef-sweep``, bench/README.md 2026-12-06): at 100k items
    96 finds 93.7% of a query's true top 10 and 192 97.6% (0.5 against 0.8 ms); at 1M
    a graph built with efConstruction 80 finds at most ~87% whatever the width
    (71% at 96, 84% at 384 for 3.8 ms, 87% at 1,536 for 10 ms), so the width stops
    growing where its cost does not buy recall.

    >>> [ef_search_for(n) for n in (10_000, 100_000, 150_000, 1_000_000)]
    [96, 192, 256, 256]
    >>> ef_search_for(1_000_000, configured=64)
    64
    """
    if configured is not None:
        return configured
    grown = EF_SEARCH * live // EF_GROWS_FROM
    return max(EF_SEARCH, min(EF_SEARCH_MAX, grown))


IVF_TRAIN_PER_LIST = 40  # k-means sample: FAISS warns below 39 points a centroid
IVF_MIN_LISTS = 16
IVF_MAX_LISTS = 16_384


def ivf_lists_for(live: int) -> int:
    """How many inverted lists an IVF index over ``live`` items gets: the power of two
    nearest to 2·√live. Measured (``bench/index_bench.py --nprobe-sweep``, bench/README.md
    2026-12-06): at 1M items 2,048 lists scanned 64 at a time find 96.3% of a
    query's true top 10 in ~3 ms.

    >>> [ivf_lists_for(n) for n in (1_000, 100_000, 1_000_000, 10_000_000)]
    [64, 512, 2048, 8192]
    """
    wanted = 2.0 * max(live, 1) ** 0.5
    nearest = 2 ** round(float(np.log2(wanted)))
    return int(min(IVF_MAX_LISTS, max(IVF_MIN_LISTS, nearest)))


def ivf_nprobe_for(lists: int, configured: int | None = None) -> int:
    """How many of ``lists`` inverted lists an IVF search scans: the configured number,
    else √(2·lists), rounded (32 of 512 lists, 45 of 1,024, 64 of 2,048). Measured
    (``bench/index_bench.py --nprobe-sweep``, bench/README.md 2026-12-06): recall@10
    0.989 at 100k items (512 lists), 0.978 at 250k (1,024), 0.963 at 1M (2,048),
    where a fixed 64 scanned an eighth of the catalog at 100k for 1.000.

    >>> [ivf_nprobe_for(n) for n in (16, 512, 1024, 2048, 16_384)]
    [6, 32, 45, 64, 181]
    >>> ivf_nprobe_for(2048, configured=96)
    96
    """
    if configured is not None:
        return configured
    return max(1, round(math.sqrt(2.0 * lists)))


def ivf_training_stride(live: int, lists: int) -> int:
    """IVF trains on every s-th of ``live`` vectors: about ``IVF_TRAIN_PER_LIST`` per
    list (all of a small catalog).

    >>> ivf_training_stride(1_000_000, 2048), ivf_training_stride(5_000, 128)
    (12, 1)
    """
    return max(1, live // (lists * IVF_TRAIN_PER_LIST))
