"""What ``ownrank serve --demo`` does before it starts the service.

It loads the bundled demo catalog (480 articles; unchanged texts are not
re-embedded on later runs), gives one demo reader a short history so their
recommendations are personal from the first request, and mints that reader a
token. Everything else is the ordinary service.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..demo import CATALOG_PATH
from ..engine.config import EngineConfig
from ..engine.engine import Engine
from .ingest import ingest_file
from .settings import ServiceSettings

DEMO_USER = "demo-reader"
DEMO_TOKEN_TTL = 7 * 86_400
_DEMO_LIKES = ("astronomy", "chess")

BANNER = """
ownrank demo service: {items} items in {data_dir}
  URL:        {url}   (API docs: {url}/docs)
  admin key:  {admin_key}
  user token: {token}   (user {user}, 7 days)

Try it from another terminal:

  export OWNRANK_URL={url}
  export ADMIN_KEY={admin_key}
  export TOKEN={token}
  curl -s "$OWNRANK_URL/ready"
  curl -s -X POST "$OWNRANK_URL/search" -H "Authorization: Bearer $ADMIN_KEY" \\
       -H 'Content-Type: application/json' -d '{{"query": "stars and galaxies", "n": 3}}'
  curl -s -X POST "$OWNRANK_URL/users/{user}/recommend" -H "Authorization: Bearer $TOKEN" \\
       -H 'Content-Type: application/json' -d '{{"n": 5, "diversity": 0.2}}'

More to try (feedback, erasure, the back office): docs/service.md.
Press Ctrl+C to stop.
"""


@dataclass(frozen=True)
class DemoCatalog:
    items: int
    added: int


def load_demo(settings: ServiceSettings) -> DemoCatalog:
    """Ingest the demo catalog and seed the demo reader (once) in ``settings.data_dir``."""
    config = EngineConfig(
        model_dir=settings.model_dir,
        encoder_threads=settings.encoder_threads,
        blas_threads=settings.blas_threads,
        rating_scale=settings.engine_rating_scale,
        **settings.engine_shared,
    )
    with Engine(settings.data_dir, config) as engine:
        summary = ingest_file(engine.catalog, CATALOG_PATH, "jsonl")
        if not engine.export(DEMO_USER)["exists"]:
            events = []
            for topic in _DEMO_LIKES:
                for hit in engine.search(topic, 3, filters={"topic": topic}):
                    events.append({"kind": "like", "item_id": hit.item_id})
            engine.interact(DEMO_USER, events)
        engine.save_index()
        return DemoCatalog(engine.catalog.count(), summary.added)


def banner(url: str, data_dir: Path, demo: DemoCatalog, admin_key: str, token: str) -> str:
    """What the demo prints before the server starts: where it is and how to call it."""
    return BANNER.format(
        items=demo.items,
        data_dir=data_dir,
        url=url,
        admin_key=admin_key,
        token=token,
        user=DEMO_USER,
    )
