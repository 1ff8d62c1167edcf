"""Engine configuration: every tunable in one validated, immutable object."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

IndexKind = Literal["auto", "flat", "hnsw"]


class EngineConfig(BaseModel):
    """Settings of an engine instance (not stored; the store records only the model).

    Index choice (``index_kind="auto"``): catalogs with fewer than
    ``hnsw_threshold`` live items use an exact inner-product index (brute force,
    exact, deletions applied in place); larger ones use HNSW, where deletions are
    tombstones filtered out at query time and the graph is rebuilt from LMDB once
    tombstones exceed ``tombstone_rebuild_ratio`` of its nodes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_dir: Path | None = Field(
        None, description="sentence-transformers model directory; None = bundled all-MiniLM-L6-v2"
    )
    encoder_threads: int = Field(1, ge=1, le=256, description="torch intra-op threads")
    encode_batch_size: int = Field(64, ge=1, le=4096)

    index_kind: IndexKind = "auto"
    hnsw_threshold: int = Field(50_000, ge=1)
    hnsw_m: int = Field(32, ge=4, le=128)
    hnsw_ef_construction: int = Field(80, ge=8)
    hnsw_ef_search: int = Field(96, ge=8)
    index_threads: int = Field(1, ge=1, le=256, description="FAISS OpenMP threads")
    tombstone_rebuild_ratio: float = Field(0.2, gt=0.0, le=1.0)
    exact_filter_limit: int = Field(
        20_000, ge=0, description="filtered queries matching at most this many items are exact"
    )

    changelog_keep: int = Field(
        10_000, ge=10, description="catalog change-log entries kept for index catch-up"
    )
    max_upsert_batch: int = Field(5_000, ge=1)
    lmdb_map_size: int = Field(64 * 2**30, ge=2**20)
    lmdb_max_readers: int = Field(512, ge=8)
