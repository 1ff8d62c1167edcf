"""Settings of the HTTP service, read once per worker from the environment.

``ownrank serve`` turns its options into these environment variables before
uvicorn starts the workers, so every worker (a fresh process) builds the same
settings without any state passing through ``fork()``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..engine.config import SharedStatisticsMode
from ..engine.events import RatingScale

ENV_PREFIX = "OWNRANK_"


class ServiceSettings(BaseModel):
    """Every knob of the service; defaults suit a single small deployment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path = Path("ownrank-data")
    model_dir: Path | None = None
    encoder_threads: int = Field(1, ge=1, le=256)
    blas_threads: int = Field(
        1,
        ge=1,
        le=256,
        description="numpy BLAS threads of each engine call (EngineConfig.blas_threads): "
        "one, since the workers share the cores",
    )
    index_mmap: bool = Field(
        True,
        description="workers map an IVF index file and share its vectors "
        "(EngineConfig.index_mmap); false: each worker holds its own copy",
    )
    admin_keys: tuple[str, ...] = Field(
        (), description="admin API keys (OWNRANK_ADMIN_KEYS, comma separated)"
    )
    admin_keys_file: Path | None = Field(
        None, description="file with one admin key per line (default: DATA_DIR/service/admin_keys)"
    )
    token_ttl_seconds: int = Field(86_400, ge=60, description="default user-token lifetime")
    token_max_ttl_seconds: int = Field(90 * 86_400, ge=60)
    device_access_ttl_seconds: int = Field(
        3_600,
        ge=60,
        le=90 * 86_400,
        description="lifetime of a device's access token (its refresh token lasts the "
        "engine's device_max_offline_days); a revoked device's token stops at once anyway",
    )
    max_body_bytes: int = Field(8 * 2**20, ge=1024, description="request body limit")
    max_batch_items: int = Field(1_000, ge=1, description="items per upsert or delete call")
    max_batch_events: int = Field(1_000, ge=1, description="events per interactions call")
    rate_limit_per_second: float = Field(
        0.0, ge=0.0, description="requests per second per token or key; 0 = no limit"
    )
    rate_limit_burst: int = Field(50, ge=1)
    query_cache_size: int = Field(4_096, ge=0, description="LRU of query embeddings")
    warm_up: bool = Field(True, description="load the model before reporting ready")
    engine_threads: int = Field(
        1,
        ge=1,
        le=64,
        description="threads per worker running engine calls: the work is CPU-bound under "
        "the GIL, so more threads per worker lower throughput; scale with workers instead",
    )
    rating_scale: str | None = Field(
        None,
        description="the values a rating may take, LOW-HIGH or LOW-HIGH/STEP (e.g. 0.5-5/0.5; "
        "OWNRANK_RATING_SCALE): recorded in a new store; a store refuses to open with "
        "another scale; default: the store's (1-5 for a new store)",
    )

    shared_statistics: SharedStatisticsMode | None = Field(
        None,
        description="none, popularity or collaborative (OWNRANK_SHARED_STATISTICS): what "
        "users contribute to shared statistics; default: the store's (popularity for a new "
        "store); a change rebuilds the shared statistics from the users' events on open",
    )

    @field_validator("rating_scale")
    @classmethod
    def _scale_reads(cls, v: str | None) -> str | None:
        return None if v is None else str(RatingScale.parse(v))

    @property
    def engine_rating_scale(self) -> RatingScale | None:
        """``rating_scale`` as ``EngineConfig.rating_scale`` takes it."""
        return None if self.rating_scale is None else RatingScale.parse(self.rating_scale)

    @property
    def engine_shared(self) -> dict[str, str]:
        """``shared_statistics`` as an ``EngineConfig`` keyword (none: the store's)."""
        return (
            {} if self.shared_statistics is None else {"shared_statistics": self.shared_statistics}
        )

    @property
    def service_dir(self) -> Path:
        """Where the service keeps its own files (signing secret, admin keys)."""
        return self.data_dir / "service"

    @property
    def effective_admin_keys_file(self) -> Path:
        return self.admin_keys_file or self.service_dir / "admin_keys"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServiceSettings:
        """Settings from ``OWNRANK_*`` variables (unset ones keep their defaults)."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for name in cls.model_fields:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is None or raw == "":
                continue
            if name == "admin_keys":
                values[name] = tuple(k.strip() for k in raw.split(",") if k.strip())
            else:
                values[name] = raw
        return cls.model_validate(values)

    def to_env(self) -> dict[str, str]:
        """The inverse of ``from_env``, for handing settings to worker processes."""
        out: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            key = ENV_PREFIX + name.upper()
            if name == "admin_keys":
                out[key] = ",".join(value)
            elif isinstance(value, bool):
                out[key] = "true" if value else "false"
            else:
                out[key] = str(value)
        return out
