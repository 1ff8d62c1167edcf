"""The demo catalog shipped with ownrank: 480 original short articles on 12 topics."""

from pathlib import Path

CATALOG_PATH = Path(__file__).with_name("catalog.jsonl")
