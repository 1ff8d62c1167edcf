"""The FastAPI application factory of the ownrank service.

``create_app`` wires settings, auth, metrics, middleware and routes; the engine
itself is opened in the app's lifespan, i.e. inside each worker process after
uvicorn started it, so no LMDB handle ever crosses ``fork()``. Tests inject a
fast encoder (``encoder_factory``) or an already open engine (``engine``).

``create_app_from_env`` is what ``ownrank serve`` hands to uvicorn
(``factory=True``): each worker reads its settings from ``OWNRANK_*``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from .. import BaseEncoder, Encoder, Engine, EngineConfig, __version__
from .auth import Authenticator, admin_keys, load_signer
from .demo_page import demo_enabled, install_demo
from .errors import install_error_handlers
from .metrics import Metrics
from .middleware import BodyLimitMiddleware, ObserveMiddleware
from .query_cache import CachingEncoder
from .ratelimit import RateLimiter
from .rating_scale import describe_rating_scale
from .routes_catalog import router as catalog_router
from .routes_devices import router as devices_router
from .routes_ops import router as ops_router
from .routes_sync import router as sync_router
from .routes_sync_catalog import router as sync_catalog_router
from .routes_users import router as users_router
from .settings import ServiceSettings
from .static_mounts import name_mounts

log = logging.getLogger("ownrank.service")

EncoderFactory = Callable[[ServiceSettings], Encoder]

DESCRIPTION = """\
Recommendations and search that can truly forget.

Authenticate with `Authorization: Bearer <credential>`: an **admin key** for the
catalog and operator routes (and any user), or a **user token** (minted with
`POST /tokens` or `ownrank token USER`) for that user's own routes under
`/users/{user_id}/...`, or a **device access token** (`POST /users/{user_id}/devices`,
renewed at `POST /devices/refresh`) for the same routes while the device stays
registered. Every error is JSON: `{"code", "message", "details",
"request_id"}`.
"""


def default_encoder(settings: ServiceSettings) -> Encoder:
    """The frozen base model (loaded lazily; ``warm_up`` loads it before ready)."""
    return BaseEncoder(settings.model_dir, threads=settings.encoder_threads)


def engine_config_of(settings: ServiceSettings) -> EngineConfig:
    """The engine settings a worker opens its store with, from the service's."""
    return EngineConfig(
        model_dir=settings.model_dir,
        encoder_threads=settings.encoder_threads,
        blas_threads=settings.blas_threads,
        index_mmap=settings.index_mmap,
        rating_scale=settings.engine_rating_scale,
        **settings.engine_shared,
    )


def create_app(
    settings: ServiceSettings | None = None,
    *,
    encoder_factory: EncoderFactory | None = None,
    engine_config: EngineConfig | None = None,
    engine: Engine | None = None,
    demo: bool = False,
) -> FastAPI:
    """The service app. With ``engine``, that engine is used and left open on shutdown;
    with ``demo``, the demo page and its routes are mounted (``demo_page.py``)."""
    settings = settings or ServiceSettings.from_env()
    metrics = Metrics()
    make_encoder = encoder_factory or default_encoder

    def open_engine() -> Engine:
        config = engine_config or engine_config_of(settings)
        encoder = CachingEncoder(
            make_encoder(settings),
            settings.query_cache_size,
            on_lookup=lambda hit: metrics.query_cache.labels(result="hit" if hit else "miss").inc(),
        )
        opened = Engine(settings.data_dir, config, encoder=encoder)
        if settings.warm_up:
            encoder.encode(["warm up", "the model"])  # two texts: not cached
        return opened

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = engine is None
        # sync endpoints run in anyio's thread pool; its size caps concurrent engine calls
        to_thread.current_default_thread_limiter().total_tokens = settings.engine_threads
        app.state.engine = engine if engine is not None else await run_in_threadpool(open_engine)
        log.info("engine open", extra={"items": app.state.engine.catalog.count()})
        try:
            yield
        finally:
            opened: Engine = app.state.engine
            app.state.engine = None
            if own:
                await run_in_threadpool(opened.close)

    # /docs and /redoc load Swagger UI and ReDoc from the package, not from a CDN
    app = FastAPIOffline(
        title="ownrank",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.engine = engine  # None until the lifespan opened one
    app.state.signer = load_signer(settings)
    app.state.auth = Authenticator(
        app.state.signer,
        admin_keys(settings),
        RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
    )
    install_error_handlers(app)
    describe_rating_scale(app, lambda: app.state.engine and app.state.engine.config.rating_scale)
    app.include_router(catalog_router)
    app.include_router(users_router)
    app.include_router(devices_router)
    app.include_router(ops_router)
    app.include_router(sync_catalog_router)
    app.include_router(sync_router)
    if demo:
        install_demo(app)
    name_mounts(app)  # the docs' and the demo's files, counted under their mount path
    # outermost first: ids, logs and metrics see everything, the body limit included
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(ObserveMiddleware, metrics=metrics)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory``: settings from ``OWNRANK_*`` variables."""
    return create_app(ServiceSettings.from_env(), demo=demo_enabled())
