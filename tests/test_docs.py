"""Everything a user can call is documented (the idea of sqlite-utils' test_docs.py): each
HTTP route in the README's endpoint table (the demo page's in docs/demo.md), each CLI
command in docs/cli.md's command list (the README shows the most used)."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.routing import APIRoute

from ownrank.service import (
    routes_catalog,
    routes_devices,
    routes_ops,
    routes_sync,
    routes_sync_catalog,
    routes_users,
)
from ownrank.service.cli import app as cli_app
from ownrank.service.demo_page import STATIC_URL
from ownrank.service.demo_page import router as demo_router

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _api_routes() -> set[tuple[str, str]]:
    return {
        (method, route.path)
        for router in (
            routes_catalog.router,
            routes_users.router,
            routes_devices.router,
            routes_ops.router,
            routes_sync_catalog.router,
            routes_sync.router,
        )
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }


def _documented_routes() -> set[tuple[str, str]]:
    """(method, path) of every `METHOD /path` in the endpoint table's first column."""
    start = README.index("| endpoint | who | what |")
    table = README[start : README.index("\n\n", start)]
    found = set()
    for row in re.findall(r"^\| (`[A-Z]+ /[^|]*)\|", table, re.M):
        for method, path in re.findall(r"`([A-Z]+) (/[^`]*)`", row):
            found.add((method, path))
    return found


def test_every_route_is_in_the_endpoint_table() -> None:
    missing = _api_routes() - _documented_routes()
    assert not missing, sorted(missing)
    stale = _documented_routes() - _api_routes()
    assert not stale, sorted(stale)


def _listed_commands(text: str) -> set[str]:
    return set(re.findall(r"^ownrank ([a-z-]+)", text, re.M))


def test_every_command_is_in_the_command_list() -> None:
    commands = {
        c.name or (c.callback.__name__.replace("_", "-") if c.callback else "")
        for c in cli_app.registered_commands
    }
    docs = Path(__file__).resolve().parents[1] / "docs"
    listed = _listed_commands((docs / "cli.md").read_text())
    assert commands - listed == set(), sorted(commands - listed)
    assert listed - commands == set(), sorted(listed - commands)
    block = README[README.index("## Command line") :]
    shown = _listed_commands(block)
    assert shown and shown <= commands, sorted(shown - commands)
    assert "docs/cli.md" in block


def test_every_demo_route_is_in_the_demo_page_table() -> None:
    """The demo's routes (``service/demo_page.py``) are docs/demo.md's table exactly."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "demo.md").read_text()
    start = page.index("| endpoint | what |")
    table = page[start : page.index("\n\n", start)]
    documented = set(re.findall(r"^\| `([A-Z]+) (/[^`]*)`", table, re.M))
    routes = {
        (method, route.path)
        for route in demo_router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    } | {("GET", "/"), ("GET", STATIC_URL + "/...")}
    assert documented == routes


def test_the_readme_stays_short_and_its_links_resolve() -> None:
    root = Path(__file__).resolve().parents[1]
    assert len(README.splitlines()) <= 350
    for page in [README, *(p.read_text() for p in (root / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(((?:docs|bench)/[^)#]*)\)", page):
            assert (root / target).exists(), target


def test_the_demo_banner_shows_what_the_docs_show() -> None:
    """Each curl line the demo prints is in the service page's walk-through."""
    from ownrank.service.demo_setup import BANNER

    def commands(text: str) -> list[str]:
        joined = re.sub(r"\\\n\s*", " ", text)
        return [" ".join(line.split()) for line in joined.splitlines() if "curl " in line]

    banner = BANNER.format(
        items=1, data_dir="d", url="u", admin_key="k", token="t", user="demo-reader"
    )
    page = (Path(__file__).resolve().parents[1] / "docs" / "service.md").read_text()
    documented = set(commands(page))
    shown = commands(banner)
    assert shown and all(line in documented for line in shown), shown
