"""End to end in headless Chromium: the snippet on a page of another origin, and the console.

One worker for the module (starting one costs seconds); each test uses its own people, event
names and segments, so they do not depend on each other's order. Screenshots of the console's
pages are written to ``docs/`` as they are reached.
"""

from __future__ import annotations

import re
import time
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from app.console.feed import MAX_PER_VIEWER
from tests.browser.conftest import DOCS, VIEWPORT, Shop
from tests.support.harness import eventually

pytestmark = pytest.mark.integration

UTC_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC$")


async def api(shop: Shop, method: str, path: str, body: Any = None,
              track: bool = False) -> tuple[int, Any]:
    d = shop.deployment
    headers = d.track_auth if track else d.app_auth
    async with aiohttp.ClientSession() as session:
        async with session.request(method, d.url + path, json=body,
                                   headers=headers) as response:
            return response.status, await response.json(content_type=None)


async def console(browser: Browser, shop: Shop) -> tuple[BrowserContext, Page]:
    """A fresh browser profile, signed in through the console's sign-in form."""
    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    page.set_default_timeout(20_000)
    await page.goto(shop.url + "/console/")
    await expect(page).to_have_url(re.compile(r"/console/login\?next="))
    await page.get_by_label("App key").fill(shop.deployment.settings.app_key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(shop.url + "/console/")
    cookie = next(c for c in await context.cookies() if c["name"] == "eventide_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    return context, page


async def reload_until(page: Page, locator_text: str, count: int, *,
                       timeout_s: float = 30) -> None:
    """Reload until the activity table has ``count`` rows whose name is ``locator_text``."""
    async def check() -> None:
        await page.reload()
        rows = page.locator("tbody tr").filter(has=page.get_by_role(
            "rowheader", name=locator_text, exact=True))
        assert await rows.count() == count
    await eventually(check, timeout_s=timeout_s, interval_s=0.5)


async def test_snippet_tracks_anonymously_identifies_and_the_console_shows_it(
        chromium: Browser, shop: Shop) -> None:
    # A visitor on the shop (another origin, listed in EVENTIDE_CORS_ORIGINS).
    visitor = await chromium.new_context(viewport=VIEWPORT)
    tab = await visitor.new_page()
    tab.set_default_timeout(20_000)
    problems: list[str] = []
    tab.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning")
           else None)
    await tab.goto(shop.page_url)
    await tab.wait_for_function("window._cio && window._cio._eventide === true")
    result = await tab.evaluate("() => _cio.track('added_to_cart', {sku: 'A-1', price: 23.45})")
    assert result == {"ok": True, "status": 200, "errors": []}
    anonymous_id = await tab.evaluate("() => _cio.anonymousId()")
    cookies = {c["name"]: c for c in await visitor.cookies()}
    assert cookies["_eventide_aid"]["value"] == anonymous_id
    assert cookies["_eventide_aid"]["domain"] == "localhost"  # first-party: the shop's own
    # Invalid calls are refused before sending.
    assert (await tab.evaluate("() => _cio.track('', {})"))["ok"] is False

    async def three_anonymous() -> list[dict]:
        status, body = await api(shop, "GET", f"/api/v1/anonymous/{anonymous_id}/activities")
        assert status == 200 and len(body["activities"]) == 3, body
        return body["activities"]
    found = await eventually(three_anonymous)
    assert {(a["name"], a["type"]) for a in found} == {
        (shop.page_url, "page"), ("viewed_pricing", "event"), ("added_to_cart", "event")}

    # The console shows it under the anonymous id, not processed yet.
    context, page = await console(chromium, shop)
    await page.get_by_label("Anonymous id", exact=True).fill(anonymous_id)
    await page.get_by_role("button", name="Show its activity").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text(anonymous_id)
    await expect(page.locator("tbody tr")).to_have_count(3)
    await expect(page.locator("tbody tr").first).to_contain_text("not yet (anonymous)")

    # Identify: the snippet sends the anonymous id, later events are the person's.
    result = await tab.evaluate(
        "() => _cio.identify({id: 'shopper-1', email: 'shopper1@example.com', first_name: 'Sam'})")
    assert result["ok"], result
    result = await tab.evaluate("() => _cio.track('checked_out', {total: 23.45})")
    assert result["ok"], result
    assert [p for p in problems if "track needs an event name" not in p] == [], problems

    async def four_identified() -> None:
        status, body = await api(shop, "GET", "/api/v1/customers/shopper-1/activities")
        assert status == 200 and len(body["activities"]) == 4, body
    await eventually(four_identified)

    await page.get_by_label("Find person").fill("shopper-1")
    await page.get_by_role("button", name="Open", exact=True).click()
    await expect(page).to_have_url(shop.url + "/console/people/shopper-1")
    table = page.get_by_role("table", name=re.compile("Identified activity"))
    headers = await table.locator("thead th").all_inner_texts()
    assert [h.lower() for h in headers[:4]] == ["name", "type", "timestamp", "processed at"]
    rows = table.locator("tbody tr")
    await expect(rows).to_have_count(4)
    names = await rows.locator("th").all_inner_texts()
    assert sorted(names) == sorted([shop.page_url, "viewed_pricing", "added_to_cart",
                                    "checked_out"])
    for row in await rows.all():
        cells = await row.locator("td").all_inner_texts()
        assert UTC_TIME.match(cells[1]) and UTC_TIME.match(cells[2]), cells  # both times shown
    profile = page.get_by_role("region", name="Profile")
    await expect(profile).to_contain_text("shopper1@example.com")
    await expect(profile).to_contain_text(anonymous_id)
    await expect(page.get_by_role("link", name="Export profile data")).to_have_attribute(
        "href", "/console/people/shopper-1/export?format=jsonl")
    # Filters: by name and by type.
    filters = page.get_by_role("search", name="Filter activity")
    await filters.get_by_label("Name", exact=True).fill("checked_out")
    await filters.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(1)
    await page.get_by_role("link", name="Clear").click()
    await filters.get_by_label("Type", exact=True).select_option("page")
    await filters.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first.locator("th")).to_have_text(shop.page_url)
    await page.get_by_role("link", name="Clear").click()
    await page.screenshot(path=str(DOCS / "console-person.png"), full_page=True)

    # The Anonymous tab: the anonymous id's activity moved to Identified once linked.
    await page.get_by_role("link", name="Anonymous", exact=True).click()
    await expect(page.get_by_role("link", name="Anonymous", exact=True)).to_have_attribute(
        "aria-current", "page")
    await expect(page.get_by_text("No activity that is still anonymous.")).to_be_visible()
    # ... and an anonymous id that is still anonymous shows there when looked up.
    status, _ = await api(shop, "POST", "/api/v1/events", {"name": "late_visit",
                                                           "anonymous_id": "anon-lookup"},
                          track=True)
    assert status == 200

    anonymous_rows = page.get_by_role("table", name=re.compile("Anonymous activity")).locator(
        "tbody tr")

    async def lookup_shows_it() -> None:
        await filters.get_by_label("Anonymous id", exact=True).fill("anon-lookup")
        await filters.get_by_role("button", name="Filter").click()
        await expect(anonymous_rows).to_have_count(1, timeout=1000)
    await eventually(lookup_shows_it)
    await expect(anonymous_rows.first).to_contain_text("late_visit")
    await expect(anonymous_rows.first).to_contain_text("not yet (anonymous)")
    await visitor.close()
    await context.close()


async def test_send_event_and_resend_round_trip(chromium: Browser, shop: Shop) -> None:
    context, page = await console(chromium, shop)
    # From the data index: client-side JSON check first (nothing is sent) ...
    send = page.get_by_role("region", name="Send an event")
    await send.get_by_label("Person (customer id)").fill("console-1")
    await send.get_by_label("Event name").fill("trial_started")
    await send.get_by_label("Data (a JSON object)").fill('{"plan": "pro",}')
    await send.get_by_role("button", name="Send event").click()
    await expect(page.locator("#send-data-error")).to_contain_text("Not valid JSON")
    await expect(send.get_by_label("Data (a JSON object)")).to_have_attribute(
        "aria-invalid", "true")
    await expect(page).to_have_url(shop.url + "/console/")
    await send.get_by_label("Data (a JSON object)").fill('["not", "an", "object"]')
    await send.get_by_role("button", name="Send event").click()
    await expect(page.locator("#send-data-error")).to_contain_text("Must be a JSON object")
    # ... then a valid event, through the pipeline.
    await send.get_by_label("Data (a JSON object)").fill('{"plan": "pro", "seats": 3}')
    await send.get_by_role("button", name="Send event").click()
    await expect(page).to_have_url(re.compile(r"/console/\?sent=[0-9A-Z]{26}$"))
    await expect(page.get_by_role("status")).to_contain_text("accepted")

    await page.goto(shop.url + "/console/people/console-1")
    await reload_until(page, "trial_started", 1)
    table = page.get_by_role("table", name=re.compile("Identified activity"))
    first = table.locator("tbody tr").first
    original_id = await first.locator("code.id").inner_text()
    await first.get_by_role("button", name=re.compile("Resend")).click()
    await expect(page.get_by_role("status")).to_contain_text("accepted")
    await reload_until(page, "trial_started", 2)
    rows = table.locator("tbody tr")
    ids = await rows.locator("code.id").all_inner_texts()
    assert original_id in ids and len(set(ids)) == 2
    status, body = await api(shop, "GET", "/api/v1/customers/console-1/activities")
    assert [a["data"] for a in body["activities"]] == [{"plan": "pro", "seats": 3}] * 2
    assert len({a["id"] for a in body["activities"]}) == 2

    # From the person page, the form knows the person.
    own = page.get_by_role("region", name="Send an event to this person")
    await expect(own.get_by_label("Person (customer id)")).to_have_value("console-1")
    await own.get_by_label("Event name").fill("upgraded")
    await own.get_by_label("Type").select_option("screen")
    await own.get_by_role("button", name="Send event").click()
    await expect(page.get_by_role("status")).to_contain_text("accepted")
    await reload_until(page, "upgraded", 1)
    # Other people, some back-dated (so the sparklines have a shape): 7 trial_started in all.
    now = int(time.time())
    for person, days_ago in (("console-2", 2), ("console-2", 5), ("console-2", 5),
                             ("console-3", 0), ("console-3", 9)):
        status, _ = await api(shop, "POST", f"/api/v1/customers/{person}/events", {
            "name": "trial_started", "data": {"plan": "team"},
            "timestamp": now - days_ago * 86_400}, track=True)
        assert status == 200

    # The data index: names, counts, sparklines, search; a name's activity across people.
    await page.get_by_role("navigation", name="Console sections").get_by_role(
        "link", name="Data index").click()

    async def seven_trials() -> None:
        await page.reload()
        row = page.locator("tbody tr").filter(has=page.get_by_role("link", name="trial_started",
                                                                    exact=True))
        await expect(row.locator("td").first).to_have_text("7", timeout=500)
        # The sparkline (a cached, bounded scan of recent history) has caught up too.
        await expect(row.locator("svg.spark")).to_have_attribute(
            "aria-label", re.compile(r": 7 in the last 30 days, at most 3 a day"), timeout=500)
    await eventually(seven_trials, interval_s=0.5)
    await page.screenshot(path=str(DOCS / "console-data-index.png"), full_page=True)
    await page.get_by_label("Search event names").fill("trial*+upgr|*test*")
    await page.get_by_role("button", name="Search").click()
    names = await page.locator("tbody th").all_inner_texts()
    assert sorted(names) == ["trial_started", "upgraded"]
    await page.get_by_role("link", name="trial_started", exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("trial_started")
    across = page.get_by_role("table", name=re.compile("across people"))
    await expect(across.locator("tbody tr")).to_have_count(7)
    people = set(await across.locator("tbody th").all_inner_texts())
    assert people == {"console-1", "console-2", "console-3"}
    await page.screenshot(path=str(DOCS / "console-event.png"), full_page=True)
    # Resend works from here too, and the send form is pre-filled with the name.
    await across.locator("tbody tr").filter(has_text="console-3").first.get_by_role(
        "button", name=re.compile("Resend")).click()
    await expect(page.get_by_role("status")).to_contain_text("accepted")

    async def resent_for_console_3() -> None:
        status, body = await api(shop, "GET", "/api/v1/customers/console-3/activities")
        assert [a["name"] for a in body["activities"]] == ["trial_started"] * 3, body
    await eventually(resent_for_console_3)
    await context.close()


async def test_segment_edited_in_the_console_shows_live_changes(
        chromium: Browser, shop: Shop) -> None:
    context, editor = await console(chromium, shop)
    nav = editor.get_by_role("navigation", name="Console sections")
    await nav.get_by_role("link", name="Segments").click()
    await editor.get_by_label("Segment id", exact=True).fill("widget-fans")
    await editor.get_by_role("button", name="Open the editor").click()
    await expect(editor).to_have_url(shop.url + "/console/segments/widget-fans")
    definition = editor.get_by_label("Definition (JSON)")
    save = editor.get_by_role("button", name="Save definition")
    # Client-side: not JSON at all.
    await definition.fill('{"name": "Widget fans", ')
    await save.click()
    await expect(editor.locator("#definition-error")).to_contain_text("Not valid JSON")
    # Server-side: JSON, but not a valid definition; the error names the wrong part.
    await definition.fill('{"name": "Widget fans", "match": {"event": "liked_widget", '
                          '"within": "soon"}}')
    await save.click()
    await expect(editor.get_by_role("alert")).to_contain_text("match.within")
    await expect(definition).to_have_attribute("aria-invalid", "true")
    await expect(definition).to_have_value(re.compile('"soon"'))  # what was typed is kept
    await definition.fill('{"name": "Widget fans", "match": {"event": "liked_widget", '
                          '"within": "30d"}}')
    await save.click()
    await expect(editor.get_by_role("status")).to_contain_text("Saved")

    # A second tab follows the segment's live feed.
    watcher = await context.new_page()
    watcher.set_default_timeout(20_000)
    await watcher.goto(shop.url + "/console/segments/widget-fans")
    await expect(watcher.locator("[data-feed-status]")).to_have_attribute("data-state", "live")
    feed = watcher.get_by_role("list", name="Segment changes, newest first")
    for person, times in (("fan-1", 1), ("fan-2", 2)):
        for _ in range(times):
            status, _ = await api(shop, "POST", f"/api/v1/customers/{person}/events",
                                  {"name": "liked_widget"}, track=True)
            assert status == 200
    await expect(feed.locator("li[data-change=entered]")).to_have_count(2)
    await expect(feed).to_contain_text("fan-1")
    await expect(feed).to_contain_text("fan-2")
    await expect(watcher.locator("[data-members-for='widget-fans']")).to_have_text("2")

    # Editing the definition in the console re-evaluates everyone: fan-1 leaves, live.
    await definition.fill('{"name": "Widget fans", "match": {"event": "liked_widget", '
                          '"within": "30d", "count": {"gte": 2}}}')
    await save.click()
    await expect(editor.get_by_role("status")).to_contain_text("Saved")
    exited = feed.locator("li[data-change=exited]")
    # (a partition with no input since waits EVENTIDE_DEFINITION_GRACE_S, 2 s, before the edit)
    await expect(exited).to_have_count(1, timeout=10_000)
    await expect(exited).to_contain_text("fan-1")
    await expect(watcher.locator("[data-members-for='widget-fans']")).to_have_text("1")
    await expect(watcher.locator("[data-members-list] li")).to_have_text(["fan-2"])
    await watcher.screenshot(path=str(DOCS / "console-segment.png"), full_page=True)

    # The list shows live member counts; membership lists fan-2 only.
    await nav.get_by_role("link", name="Segments").click()
    row = editor.locator("tbody tr").filter(has=editor.get_by_role("link", name="widget-fans"))
    await expect(row.locator("[data-members-for]")).to_have_text("1")
    await expect(editor.locator("[data-feed-status]")).to_have_attribute("data-state", "live")
    await editor.screenshot(path=str(DOCS / "console-segments.png"), full_page=True)
    status, body = await api(shop, "GET", "/api/v1/segments/widget-fans/membership")
    assert body == {"people": ["fan-2"], "next": None}
    await watcher.close()  # the feed's consumer is closed when the client goes
    await context.close()


async def test_a_refused_live_feed_tries_again_and_goes_live(
        chromium: Browser, shop: Shop) -> None:
    context, first = await console(chromium, shop)
    pages = [first]
    await first.goto(shop.url + "/console/segments")
    for _ in range(MAX_PER_VIEWER - 1):
        pages.append(await context.new_page())
        await pages[-1].goto(shop.url + "/console/segments")
    for page in pages:
        await expect(page.locator("[data-feed-status]")).to_have_attribute("data-state", "live")
    # One tab too many: refused, and it says so instead of pretending to reconnect...
    extra = await context.new_page()
    await extra.goto(shop.url + "/console/segments")
    status = extra.locator("[data-feed-status]")
    await expect(status).to_contain_text("Live feed unavailable; trying again in 5 s")
    # ...then goes live by itself once another tab is closed.
    await pages.pop().close()
    await expect(status).to_have_attribute("data-state", "live", timeout=15_000)
    await context.close()
