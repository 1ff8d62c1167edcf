"""The demo page and the API docs in a real browser: headless Chromium (Debian's
``chromium`` and ``chromium-driver``, driven through selenium) against ``ownrank serve
--demo`` started here on a free port of 127.0.0.1, with every other host unresolvable
(so nothing may come from a CDN).

A visitor likes a few items, "For you" changes and explains itself (the collaborative
part included), one event is forgotten, the visitor erases themselves, the receipt
verifies in the browser and a new visitor starts cold. A second device in the page
syncs its copy both ways, and an erasure on the main page, or a revocation, wipes it
at its next sync. /docs and /redoc list the operations. Screenshots go to
``tests/artifacts/`` (git-ignored), with the server log.

``bash scripts/setup.sh test`` installs the browser (apt). Without it these tests skip,
except under ``CI=true``, where a missing browser fails them.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_server import running_service

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
STARTUP_SECONDS = 240
WAIT_SECONDS = 30
VISITOR_ID = re.compile(r"^visitor-[0-9a-f]{16}$")
PERSONAL_REASONS = {"personal", "neighbours", "collaborative"}


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; under CI the browser tests must run (bash scripts/setup.sh test)")
    pytest.skip(f"{reason} (bash scripts/setup.sh test installs it; CI=true makes this a failure)")


def _browser() -> tuple[str, str]:
    binary = next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
        None,
    )
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        _unavailable("no headless Chromium: apt-get install chromium chromium-driver")
    assert binary is not None and driver is not None
    return binary, driver


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed (the test extra)")
    binary, chromedriver = _browser()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--window-size=1500,1100",
        # offline: no host but this machine resolves, so a CDN asset would fail to load
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(chromedriver), options=options)
    browser.set_page_load_timeout(WAIT_SECONDS)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, driver: Any) -> Iterator[str]:
    """``ownrank serve --demo`` (after the browser: no wait for a service when no browser)."""
    root = tmp_path_factory.mktemp("demo-browser")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OWNRANK_")}
    log_path = root / "server.log"
    try:
        with running_service(
            root / "data", log_path, args=["--demo"], env=env, startup_seconds=STARTUP_SECONDS
        ) as url:
            yield url
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        if log_path.exists():
            shutil.copyfile(log_path, ARTIFACTS / "demo-server.log")


# -- reading the page -------------------------------------------------------------------


def _by(css: str) -> tuple[str, str]:
    return ("css selector", css)


def _wait(driver: Any, condition: Callable[[Any], Any], what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_SECONDS).until(condition, message=what)


def _renders(driver: Any) -> int:
    return int(driver.find_element(*_by("body")).get_attribute("data-renders") or 0)


def _settled(driver: Any, after: int) -> None:
    """Wait until the page finished an action after ``after`` and has nothing running."""

    def done(d: Any) -> bool:
        body = d.find_element(*_by("body"))
        return bool(
            int(body.get_attribute("data-renders") or 0) > after
            and body.get_attribute("data-state") == "ready"
        )

    _wait(driver, done, f"the page to draw again after {after} renders")


def _click_and_settle(driver: Any, css: str) -> None:
    before = _renders(driver)
    driver.find_element(*_by(css)).click()
    _settled(driver, before)


def _open_page(driver: Any, url: str) -> str:
    driver.get(f"{url}/")
    _settled(driver, 0)
    return str(driver.find_element(*_by("#visitor-id")).text)


def _recs(driver: Any) -> list[dict[str, Any]]:
    return [
        {
            "id": li.get_attribute("data-item-id"),
            "reason": li.get_attribute("data-reason"),
            "explanation": li.find_element(*_by(".explanation")).text,
            "parts": {
                p.get_attribute("data-part"): p.text for p in li.find_elements(*_by(".parts .part"))
            },
        }
        for li in driver.find_elements(*_by("#for-you-list li.rec"))
    ]


def _events(driver: Any) -> list[str]:
    return [li.get_attribute("data-item-id") for li in driver.find_elements(*_by("li.event"))]


def _text(driver: Any, css: str) -> str:
    return str(driver.find_element(*_by(css)).text)


def _screenshot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path)), path
    return path


def _crowd_likes(url: str, items: list[str], visitors: int = 2) -> None:
    """Other visitors, through the same demo route, who liked ``items`` together: enough
    co-likes for the collaborative part (``collaborative_min_count`` is 2)."""
    for _ in range(visitors):
        visitor = httpx.post(f"{url}/demo/visitor").json()
        response = httpx.post(
            f"{url}/users/{visitor['user_id']}/interactions",
            json={"events": [{"kind": "like", "item_id": i} for i in items]},
            headers={"Authorization": f"Bearer {visitor['token']}"},
        )
        assert response.status_code == 200, response.text


# -- the tests --------------------------------------------------------------------------


def test_the_demo_page_personalizes_forgets_and_erases(server: str, driver: Any) -> None:
    visitor = _open_page(driver, server)
    assert VISITOR_ID.match(visitor), visitor
    cold = _recs(driver)
    assert cold and not {r["reason"] for r in cold} & PERSONAL_REASONS, cold
    assert "no history yet" in _text(driver, "#for-you-caption")
    _screenshot(driver, "demo-cold-start.png")

    _click_and_settle(driver, '#topics button[data-topic="astronomy"]')
    assert "astronomy" in _text(driver, "#catalog-caption")
    shown = [li.get_attribute("data-item-id") for li in driver.find_elements(*_by("li.item"))]
    liked = shown[:3]
    _crowd_likes(server, [liked[0], *shown[3:6]])

    lists = [[r["id"] for r in cold]]
    for item in liked:
        _click_and_settle(driver, f'#catalog-list li[data-item-id="{item}"] button.like')
        lists.append([r["id"] for r in _recs(driver)])
        pressed = f'#catalog-list li[data-item-id="{item}"] button.like'
        assert driver.find_element(*_by(pressed)).get_attribute("aria-pressed") == "true"
    assert all(a != b for a, b in pairwise(lists)), lists  # every click

    recs = _recs(driver)
    assert _events(driver) == liked[::-1]  # newest first
    assert not {r["id"] for r in recs} & set(liked)  # nothing already seen
    assert all(r["explanation"] and r["parts"] for r in recs), recs
    assert sum(r["reason"] in PERSONAL_REASONS for r in recs) >= len(recs) // 2, recs
    assert any("which you liked" in r["explanation"] for r in recs), recs
    assert any("collaborative" in r["parts"] for r in recs), recs  # the crowd's co-likes
    _screenshot(driver, "demo-for-you.png")

    _click_and_settle(driver, f'li.event[data-item-id="{liked[1]}"] button.forget')
    assert _events(driver) == [liked[2], liked[0]]
    assert "Forgot 1 event" in _text(driver, "#notice")
    unliked = f'#catalog-list li[data-item-id="{liked[1]}"] button.like'
    assert driver.find_element(*_by(unliked)).get_attribute("aria-pressed") == "false"

    driver.find_element(*_by("#erase")).click()
    _click_and_settle(driver, "#erase-yes")
    verdict = driver.find_element(*_by("#receipt-verdict"))
    assert verdict.get_attribute("class") == "valid", verdict.text
    assert "signature valid" in verdict.text and "WebCrypto" in verdict.text, verdict.text
    assert "fails the same check" in verdict.text  # a changed copy does not verify
    fresh = str(driver.find_element(*_by("#visitor-id")).text)
    assert VISITOR_ID.match(fresh) and fresh != visitor
    assert _events(driver) == []
    assert "no history yet" in _text(driver, "#for-you-caption")
    assert not {r["reason"] for r in _recs(driver)} & PERSONAL_REASONS
    _screenshot(driver, "demo-erased.png")


def _device_events(driver: Any) -> list[tuple[str, str]]:
    """The device pane's events, newest first: (item id, synced / queued / forgetting)."""
    return [
        (li.get_attribute("data-item-id"), li.get_attribute("data-state"))
        for li in driver.find_elements(*_by("li.device-event"))
    ]


def _fact(driver: Any, label: str) -> str:
    return _text(driver, f'#device-answer dd[data-fact="{label}"]')


def _full_page_screenshot(driver: Any, name: str) -> Path:
    size = driver.get_window_size()
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(size["width"], max(size["height"], height + 120))
    driver.execute_script("window.scrollTo(0, 0)")
    try:
        return _screenshot(driver, name)
    finally:
        driver.set_window_size(size["width"], size["height"])


def test_a_second_device_syncs_its_copy_and_an_erasure_wipes_it(server: str, driver: Any) -> None:
    driver.switch_to.new_window("tab")  # a fresh visitor
    try:
        _device_story(server, driver)
    finally:
        driver.close()
        driver.switch_to.window(driver.window_handles[0])


def _device_story(server: str, driver: Any) -> None:
    from selenium.webdriver.support.ui import Select

    _open_page(driver, server)
    shown = [li.get_attribute("data-item-id") for li in driver.find_elements(*_by("li.item"))]
    _click_and_settle(driver, f'#catalog-list li[data-item-id="{shown[0]}"] button.like')

    # the device registers with the visitor's token; its first sync brings the record
    _click_and_settle(driver, "#device-add")
    assert driver.find_element(*_by("#device-pane")).get_attribute("data-device") == "active"
    assert _device_events(driver) == [(shown[0], "synced")]
    assert "1 registered" in _text(driver, "#record-size")  # the main page's record

    # the main page likes once more: the device learns it at its next sync
    _click_and_settle(driver, f'#catalog-list li[data-item-id="{shown[1]}"] button.like')
    assert _device_events(driver) == [(shown[0], "synced")]

    # offline on the device: a like on another topic waits in its queue
    topics = Select(driver.find_element(*_by("#device-topic")))
    before = _renders(driver)
    topics.select_by_index(len(topics.options) - 1)
    _settled(driver, before)
    offline = driver.find_element(*_by("#device-items li.item")).get_attribute("data-item-id")
    assert offline not in shown
    _click_and_settle(driver, f'#device-items li[data-item-id="{offline}"] button.like')
    assert _device_events(driver) == [(offline, "queued"), (shown[0], "synced")]
    assert offline not in _events(driver)  # not on the server yet

    _click_and_settle(driver, "#device-sync")
    assert (_fact(driver, "accepted"), _fact(driver, "duplicates")) == ("1", "0")
    assert _fact(driver, "server's count") == "3"
    assert re.fullmatch(r"[0-9a-f]{16}", _fact(driver, "server's checksum"))
    assert "adopted the server's copy" in _fact(driver, "in sync")
    assert _fact(driver, "device now holds") == "3 event(s), the server's set"
    assert sorted(_device_events(driver)) == sorted(
        (item, "synced") for item in (shown[0], shown[1], offline)
    )
    assert _events(driver)[0] == offline  # the main page read its record again
    assert set(_events(driver)) == {shown[0], shown[1], offline}

    # nothing changed since: the device sends the server's checksum and is in sync
    _click_and_settle(driver, "#device-sync")
    assert _fact(driver, "in sync").startswith("yes"), _fact(driver, "in sync")
    _full_page_screenshot(driver, "demo-device.png")

    # erased on the main page: the device's next sync is refused, and it wipes its copy
    driver.find_element(*_by("#erase")).click()
    _click_and_settle(driver, "#erase-yes")
    assert "no longer this tab's visitor" in _text(driver, "#device-who")
    assert len(_device_events(driver)) == 3  # it does not know yet
    _click_and_settle(driver, "#device-sync")
    status = _text(driver, "#device-status")
    assert "409 user_erased" in status and "erased: this device wiped its copy" in status, status
    assert driver.find_element(*_by("#device-pane")).get_attribute("data-device") == "wiped"
    assert _device_events(driver) == []
    assert not driver.find_element(*_by("#device-body")).is_displayed()

    # a device of the new visitor, revoked: its next sync is refused, and it wipes too
    _click_and_settle(driver, "#device-add")
    assert _device_events(driver) == []  # the new visitor holds nothing
    _click_and_settle(driver, "#device-revoke")
    _click_and_settle(driver, "#device-sync")
    status = _text(driver, "#device-status")
    assert "401 device_revoked" in status and "revoked: this device wiped its copy" in status, (
        status
    )
    assert driver.find_element(*_by("#device-add")).is_displayed()


def test_each_browser_tab_is_a_visitor_of_its_own(server: str, driver: Any) -> None:
    first = _open_page(driver, server)
    assert _open_page(driver, server) == first  # a reload keeps the tab's visitor
    driver.switch_to.new_window("tab")
    try:
        second = _open_page(driver, server)
    finally:
        driver.close()
        driver.switch_to.window(driver.window_handles[0])
    assert VISITOR_ID.match(second) and second != first


def test_the_api_docs_render_offline(server: str, driver: Any) -> None:
    spec = httpx.get(f"{server}/openapi.json").json()
    operations = sum(len(methods) for methods in spec["paths"].values())
    assert operations > 20

    driver.get(f"{server}/docs")
    _wait(
        driver,
        lambda d: len(d.find_elements(*_by(".opblock"))) == operations,
        f"Swagger UI to list {operations} operations",
    )
    assert "POST/users/{user_id}/recommend" in "".join(
        b.text.replace("\n", "").replace("\u200b", "")
        for b in driver.find_elements(*_by(".opblock"))
    )
    loaded = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert loaded and all(name.startswith(server) for name in loaded), loaded
    _screenshot(driver, "docs.png")

    driver.get(f"{server}/redoc")
    _wait(
        driver,
        lambda d: len(d.find_elements(*_by('[data-section-id^="operation/"]'))) == operations,
        f"ReDoc to list {operations} operations",
    )
    _screenshot(driver, "redoc.png")
