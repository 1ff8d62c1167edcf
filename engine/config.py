"""Engine configuration: every tunable in one validated, immutable object."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .events import RatingScale
from .personal_model import LearnerConfig

IndexKind = Literal["auto", "flat", "hnsw", "ivf"]
EncoderBackend = Literal["torch", "onnx-fp32", "onnx-int8", "onnx-int8-rowwise"]
SharedStatisticsMode = Literal["none", "popularity", "collaborative"]


class RankingConfig(BaseModel):
    """How recommendations and personalized search combine the user's head and priors.

    score = personal_weight * taste_z + neighbour_weight * neighbours_z
            + popularity_weight * popularity
            + collaborative_weight * collaborative_z  (shared_statistics="collaborative")
            + dislike_weight * dislikes
            + recency_weight * 2^(-age / recency_half_life_days)
    where taste_z is the user's head, standardized over the catalog; neighbours_z
    is how close the item is to the items the user rated (the newest
    ``neighbour_items``; sum over them of
    strength * max(0, cos)^neighbour_power, with vectors centred on the catalog
    mean; standardized over the candidates), which catches several distinct
    tastes a linear head averages away; and popularity is
    log(1 + count) / log(1 + contributing users) (for items nobody has rated
    yet, the count predicted from content), shrunk while few users contribute
    (users / (users + popularity_min_users)); collaborative_z is the
    people-who-liked-this-also-liked-that score (engine/scorer_collaborative.py),
    standardized over the candidates; dislikes (<= 0) is how close the item is to
    what the user disliked, less how close to what they liked
    (engine/scorer_dislikes.py).

    Candidates: when a filter (or the whole catalog) admits at most
    ``full_rank_limit`` items, all of them are scored; otherwise they are
    retrieved around the head and the popular direction (index searches), from the
    content-neighbour lists of the user's liked items, and among the most popular.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    personal_weight: float = Field(0.06, ge=0.0)
    popularity_weight: float = Field(1.0, ge=0.0)
    popularity_min_users: int = Field(50, ge=0)
    popularity_l2: float = Field(10.0, gt=0.0)
    recency_weight: float = Field(0.0, ge=0.0)
    recency_half_life_days: float = Field(30.0, gt=0.0)
    neighbour_weight: float = Field(0.03, ge=0.0)
    neighbour_power: float = Field(4.0, gt=0.0)
    neighbour_items: int = Field(
        256, ge=1, le=10_000, description="the newest rated items the neighbour score uses"
    )
    dislike_weight: float = Field(
        1.5, ge=0.0, description="weight of the dislike part (engine/scorer_dislikes.py)"
    )
    dislike_power: float = Field(1.0, gt=0.0)
    dislike_like_offset: float = Field(
        4.0, ge=0.0, description="how much closeness to liked items offsets the dislike part"
    )
    dislike_min_strength: float = Field(
        0.0,
        ge=0.0,
        description="negative feedback weaker than this (in absolute strength) is not a "
        "dislike for the dislike part (a 3 of 5 is -0.15, a 2 of 5 -0.6, a dislike -1)",
    )
    dislike_items: int = Field(
        32, ge=1, le=1_000, description="the user's newest disliked items the dislike part uses"
    )
    popularity_fade_items: float = Field(
        0.0,
        ge=0.0,
        description="with the collaborative layer on, popularity's weight is multiplied by "
        "m / (m + the user's rated items), m this value: newcomers lean on popularity, users "
        "with history on their own signals and the collaborative part (0 = no fading)",
    )
    collaborative_weight: float = Field(
        1.0,
        ge=0.0,
        description="weight of the collaborative part (shared_statistics="
        "'collaborative' only; engine/scorer_collaborative.py)",
    )
    collaborative_ramp_items: float = Field(
        3.0,
        ge=0.0,
        description="the collaborative part's weight is multiplied by n / (n + m), n the "
        "user's liked items and m this value: it grows with what the engine knows of the "
        "user (0 = full weight from the first like)",
    )
    collaborative_alpha: float = Field(0.5, ge=0.0, le=1.0)
    collaborative_shrink: float = Field(10.0, ge=0.0)
    collaborative_half_life_items: float = Field(
        2.0,
        ge=0.0,
        description="a liked item's weight halves with every this-many newer liked items "
        "(0 = all weigh the same)",
    )
    collaborative_min_count: int = Field(
        2, ge=1, description="pairs liked together by fewer users are left out of the score"
    )
    collaborative_query_items: int = Field(
        8, ge=1, le=1_000, description="the user's newest liked items the collaborative part uses"
    )
    candidates: int = Field(60, ge=10, le=5_000, description="per retrieval query")
    full_rank_limit: int = Field(
        5_000, ge=0, le=100_000, description="rank every admitted item when at most this many"
    )
    interest_queries: int | None = Field(
        None,
        ge=0,
        le=16,
        description="index searches around the user's interests when the catalog is too "
        "big to rank whole; None: none while the content-neighbour lists give candidates "
        "(they find what those searches found, without a search: bench/README.md "
        "2026-12-07, sixth session), else 3",
    )
    neighbour_candidates: int = Field(
        90,
        ge=0,
        le=5_000,
        description="candidates taken from the content-neighbour lists of the user's liked "
        "items, largest sum first, when the catalog is too big to rank whole (0 = none)",
    )
    search_personal_weight: float = Field(1.0, ge=0.0)
    search_candidates: int = Field(200, ge=10, le=5_000)


class EngineConfig(BaseModel):
    """Settings of an engine instance (not stored; the store records only the model
    and the rating scale).

    Index choice (``index_kind="auto"``): catalogs with fewer than
    ``hnsw_threshold`` live items use an exact inner-product index (brute force,
    exact, deletions applied in place); larger ones use HNSW, where deletions are
    tombstones filtered out at query time and the graph is rebuilt from LMDB once
    tombstones exceed ``tombstone_rebuild_ratio`` of its nodes; from
    ``ivf_threshold`` live items on, an IVF index (inverted lists around trained
    centroids, scanned exactly; deletions in place), retrained from LMDB whenever
    the catalog has doubled since its training (docs/store.md).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_dir: Path | None = Field(
        None, description="sentence-transformers model directory; None = bundled all-MiniLM-L6-v2"
    )
    encoder_backend: EncoderBackend = Field(
        "torch",
        description="how the frozen model runs: sentence-transformers on torch, or the same "
        "weights exported locally to ONNX (see engine/onnx_encoder.py and "
        "bench/encoder_bench.py); each backend has its own fingerprint, so a store "
        "keeps the backend it was created with",
    )
    encoder_threads: int = Field(1, ge=1, le=256, description="intra-op threads of the encoder")
    encode_batch_size: int = Field(64, ge=1, le=4096)

    index_kind: IndexKind = "auto"
    hnsw_threshold: int = Field(15_000, ge=1)
    hnsw_m: int = Field(32, ge=4, le=128)
    hnsw_ef_construction: int = Field(80, ge=8)
    hnsw_ef_search: int | None = Field(
        None,
        ge=8,
        description="HNSW's beam width of a search; None: by catalog size "
        "(engine/index_sizing.ef_search_for: 96 up to 50,000 items, then in proportion, "
        "at most 256)",
    )
    ivf_threshold: int = Field(
        100_000, ge=1, description="live items from which index_kind='auto' picks IVF"
    )
    ivf_nprobe: int | None = Field(
        None,
        ge=1,
        le=65_536,
        description="inverted lists an IVF search scans; None: by the number of lists, "
        "√(2·lists) (32 of 512 at 100k items, 64 of 2,048 at 1M; "
        "engine/index_sizing.ivf_nprobe_for). A filtered search scans the lists holding "
        "admitted rows, nearest first, until it has covered twice as many rows "
        "(storage/ivf_index.py)",
    )
    ivf_codes: Literal["float16", "float32"] = Field(
        "float16",
        description="how an IVF index's lists hold vectors: float16 codes halve the bytes "
        "a scan reads (the scan is memory-bound: a search at 1M items in ~0.56 of the time, "
        "at equal recall), with the exact vectors kept apart in the index file (a table by "
        "row, mapped; the file grows by half) for exact scores and reads; float32 keeps "
        "the vectors in the lists (an index of the other codes is rebuilt on open; "
        "storage/ivf_index.py, storage/row_table.py)",
    )
    index_mmap: bool = Field(
        True,
        description="read an IVF index's vectors from its file, memory-mapped, so the "
        "processes that open one store (a service's workers) share one copy; later "
        "additions are held in memory until a quarter of the rows are (then the file "
        "is rewritten and mapped again; storage/ivf_index.py)",
    )
    index_threads: int = Field(1, ge=1, le=256, description="FAISS OpenMP threads")
    blas_threads: int | None = Field(
        None,
        ge=1,
        le=256,
        description="numpy BLAS threads of a recommend or search (None: the process's "
        "setting); 1 is much faster when other work shares the cores (the service sets 1 "
        "per worker), a little slower on an idle machine (engine/blas.py)",
    )
    tombstone_rebuild_ratio: float = Field(0.2, gt=0.0, le=1.0)
    exact_filter_limit: int = Field(
        20_000,
        ge=0,
        description="filtered queries matching at most this many items are scored exactly "
        "(with HNSW; an IVF index's filtered scan is used at every size, exact up to twice "
        "the rows of an unfiltered scan)",
    )

    shared_statistics: SharedStatisticsMode = Field(
        "popularity",
        description="what users contribute to statistics shared across users (each user's "
        "consent applies): nothing; how many users liked each item; or that and "
        "co-occurrence counts of liked pairs (engine/co_counts.py). Left unset, an "
        "existing store keeps its mode; set, the store is brought in line on open",
    )
    collaborative_items: int = Field(
        64,
        ge=2,
        le=256,
        description="with shared_statistics='collaborative': a user contributes the pairs "
        "among their newest this-many liked items (bounds what a write and an erase change)",
    )
    default_consent: bool = Field(True, description="a new user's consent to shared statistics")
    max_events: int = Field(256, ge=1, le=10_000, description="events retained per user")
    max_devices: int = Field(16, ge=1, le=256, description="registered devices per user")
    device_max_offline_days: float = Field(
        90.0,
        gt=0,
        le=36_500,
        description="a device that has not refreshed its tokens for longer is revoked "
        "(engine/devices.py): its refresh token expires then, and it registers again",
    )
    device_lease_days: float = Field(
        7.0,
        gt=0,
        le=365,
        description="how long a device may keep the key its copy of the user is sealed "
        "with without syncing (engine/user_sync.py); each sync renews it",
    )
    max_record_bytes: int = Field(32 * 1024, ge=2048)
    max_earlier_items: int = Field(
        4096,
        ge=0,
        le=100_000,
        description="items of events dropped by the caps still excluded as seen (a seen "
        "filter, engine/seen_filter.py: about 3 bytes each, at most 3.7; 0.024% of unseen "
        "items hidden at 4,096)",
    )
    retired_event_ids: int = Field(
        256,
        ge=0,
        le=4096,
        description="ids of events that left the log (caps, forget) still recognised, "
        "so a retry of one stays a no-op (engine/event_ids.py: 12 bytes each); an id'd "
        "event dated at or before the newest one let go is refused (reset required)",
    )
    max_events_per_call: int = Field(1_000, ge=1)
    max_users_per_bulk: int = Field(1_000, ge=1, description="users per interact_many call")
    rating_scale: RatingScale | None = Field(
        None,
        description="the values a rating may take (e.g. RatingScale(low=0.5, high=5, "
        "step=0.5)); stored with the data when a store is created, and a store refuses "
        "to open with another scale; None = the store's scale (1-5 for a new store)",
    )
    learner: LearnerConfig = LearnerConfig()
    ranking: RankingConfig = RankingConfig()

    encrypt_user_records: bool = Field(
        True,
        description="seal records with per-user data keys (crypto-shredding); "
        "off only to measure what sealing costs",
    )
    tombstone_retention_days: float = Field(30.0, gt=0.0)
    erasure_journal_retention_days: float = Field(
        90.0, gt=0.0, description="must exceed the retention of keystore backups"
    )
    keystore_orphan_grace_seconds: float = Field(
        3_600.0, ge=0.0, description="a data key with no record this old is purged on open"
    )
    erasure_fence_retention_days: float | None = Field(
        None,
        gt=0.0,
        description="how long the erasure fence remembers an erasure (default: as long "
        "as the store exists); a backup older than the fence's horizon cannot be restored",
    )
    reconcile_on_open: bool = Field(
        True, description="purge orphan records and keys and re-apply erasures on open"
    )
    warm_up_on_open: bool = Field(
        True,
        description="load the index, the filter table and the ranking's catalog matrices "
        "on open, so the first recommend is not the one that pays for them",
    )
    lmdb_sync: bool = Field(
        True, description="fsync every commit; off only for tests and benchmarks of logic"
    )
    keys_dir: Path | None = Field(
        None, description="master key file and receipt signing keys; None = DATA_DIR/keys"
    )

    content_neighbours: int = Field(
        50,
        ge=0,
        le=1_000,
        description="length of each item's stored list of its nearest items by content "
        "(catalog data, engine/content_neighbours.py), which the neighbour score sums "
        "over; 0 = no lists, and the neighbour score compares every candidate with "
        "every rated item instead",
    )
    neighbour_lists_in_memory: int = Field(
        500_000,
        ge=0,
        description="hold the neighbour lists in each process's memory while they have "
        "at most this many entries (12 bytes each; ranking then reads a user's lists in "
        "one gather instead of a lookup per list); after a catalog change the next "
        "ranking call reads them again; 0 = always from LMDB",
    )
    neighbour_lists_held: int = Field(
        6_000_000,
        ge=0,
        description="above neighbour_lists_in_memory, keep in each process's memory the "
        "lists ranking calls read from LMDB, up to this many entries (12 bytes each: "
        "72 MB at most by default, only as many as read); a catalog change that "
        "rewrites a list starts them again; 0 = none kept",
    )
    neighbour_sync_budget: int = Field(
        4 * 10**9,
        ge=0,
        description="multiply-adds a catalog write may spend bringing the neighbour "
        "lists up to date before it returns; a costlier change is applied by a "
        "background thread",
    )
    changelog_keep: int = Field(
        10_000, ge=10, description="catalog change-log entries kept for index catch-up"
    )
    max_upsert_batch: int = Field(5_000, ge=1)
    lmdb_map_size: int = Field(64 * 2**30, ge=2**20)
    lmdb_max_readers: int = Field(512, ge=8)

    @model_validator(mode="after")
    def _ratings_read_on_the_scale(self) -> EngineConfig:
        """The learner reads ratings on ``rating_scale`` (1-5 while it is None)."""
        scale = self.rating_scale or RatingScale()
        strengths = self.learner.strengths
        if strengths.rating_scale != scale:
            learner = self.learner.model_copy(
                update={"strengths": strengths.model_copy(update={"rating_scale": scale})}
            )
            object.__setattr__(self, "learner", learner)  # frozen: set once, while validating
        return self
