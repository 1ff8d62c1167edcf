"""FastAPI dependencies for what the lifespan puts on ``app.state``: engine, settings, metrics.

They are ``async def`` although nothing in them waits: FastAPI runs a plain
``def`` dependency in the thread pool, a thread hop per dependency per request
(and a wait for a free token of the pool the engine calls share).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .. import Engine
from .errors import ApiError
from .metrics import Metrics
from .settings import ServiceSettings


async def get_engine(request: Request) -> Engine:
    engine: Engine | None = getattr(request.app.state, "engine", None)
    if engine is None:
        raise ApiError(503, "not_ready", "the engine is not open yet")
    return engine


async def get_settings(request: Request) -> ServiceSettings:
    settings: ServiceSettings = request.app.state.settings
    return settings


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
