"""End to end in headless Chromium: the workspace Activity log page (tabs, both times, filters,
the person search box, Resend on a row) and the segment editor's live preview."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, expect

from tests.browser.conftest import DOCS, Shop
from tests.browser.test_console_browser import UTC_TIME, api, console
from tests.support.harness import eventually

pytestmark = pytest.mark.integration


async def test_activity_log_filters_search_and_resend(chromium: Browser, shop: Shop) -> None:
    for person in ("log-1", "log-2"):
        status, _ = await api(shop, "PUT", f"/api/v1/customers/{person}",
                              {"email": f"{person}@example.com"}, track=True)
        assert status == 200
        for name, type_ in (("log_clicked", "event"), ("/pricing", "page")):
            status, _ = await api(shop, "POST", f"/api/v1/customers/{person}/events",
                                  {"name": name, "type": type_, "data": {"who": person}},
                                  track=True)
            assert status == 200
    status, _ = await api(shop, "POST", "/api/v1/events",
                          {"name": "log_browsed", "anonymous_id": "anon-log"}, track=True)
    assert status == 200

    context, page = await console(chromium, shop)
    await page.get_by_role("navigation", name="Console sections").get_by_role(
        "link", name="Activity log").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Activity log")
    table = page.get_by_role("table", name=re.compile("Identified activity"))
    headers = await table.locator("thead th").all_inner_texts()
    assert [h.lower() for h in headers[:5]] == ["person", "name", "type", "timestamp",
                                                "processed at"]
    filters = page.get_by_role("search", name="Filter the activity log")
    await filters.get_by_label("Event name").fill("log_clicked")
    await filters.get_by_role("button", name="Filter").click()
    # The filter is a GET form: wait for its page before reloading it (a reload while that
    # navigation is in flight fails with "Not attached to an active page").
    await page.wait_for_url(re.compile("log_clicked"))
    rows = table.locator("tbody tr")

    async def both_clicks() -> None:
        await page.reload()
        await expect(rows).to_have_count(2, timeout=500)
    await eventually(both_clicks, interval_s=0.5)
    for row in await rows.all():
        cells = await row.locator("td").all_inner_texts()
        assert UTC_TIME.match(cells[2]) and UTC_TIME.match(cells[3]), cells

    # The person filter suggests people as you type (id or email prefix, from every worker).
    person = filters.get_by_label("Person", exact=True)
    await person.press_sequentially("log-")
    await expect(page.locator("#log-person-found")).to_have_text("2 matching people")
    options = page.locator("#log-person-options option")
    await expect(options).to_have_count(2)
    assert await options.evaluate_all("os => os.map(o => o.value)") == ["log-1", "log-2"]
    assert await options.first.get_attribute("label") == "log-1@example.com"
    await person.fill("log-1")
    await filters.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first.locator("th")).to_have_text("log-1")
    await page.screenshot(path=str(DOCS / "console-activity-log.png"), full_page=True)

    # Resend a row: a new event for the same person, shown here once processed.
    original = await rows.first.locator("code.id").inner_text()
    await rows.first.get_by_role("button", name=re.compile("^Resend")).click()
    await expect(page.get_by_role("status")).to_contain_text("accepted")
    await expect(page).to_have_url(re.compile(r"/console/activity\?.*person=log-1"))

    async def resent() -> None:
        await page.reload()
        await expect(rows).to_have_count(2, timeout=500)
    await eventually(resent, interval_s=0.5)
    ids = await rows.locator("code.id").all_inner_texts()
    assert ids[1] == original and ids[0] != original  # the new one is the newest processed

    # Resend to another person, picked with the search box (by email prefix here).
    await rows.first.get_by_role("link", name=re.compile("to a person you pick")).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Resend “log_clicked”")
    pick = page.get_by_label("For person")
    await expect(pick).to_have_value("log-1")
    await pick.fill("")
    await pick.press_sequentially("log-2@")
    await expect(page.locator("#resend-to-found")).to_have_text("1 matching person")
    await expect(page.locator("#resend-to-options option")).to_have_attribute("value", "log-2")
    await pick.fill("log-2")
    await page.get_by_role("button", name="Resend", exact=True).click()
    await expect(page.get_by_role("status")).to_contain_text("accepted")

    async def resent_to_log_2() -> None:
        status, body = await api(shop, "GET", "/api/v1/customers/log-2/activities?name="
                                              "log_clicked")
        assert status == 200 and len(body["activities"]) == 2, body
        assert [a["data"] for a in body["activities"]] == [{"who": "log-1"}, {"who": "log-2"}]
    await eventually(resent_to_log_2)

    # Type filter, and the Anonymous tab.
    await page.get_by_role("link", name="Clear").click()
    await filters.get_by_label("Type").select_option("page")
    await filters.get_by_role("button", name="Filter").click()
    names = set(await rows.locator("td:nth-child(2)").all_inner_texts())
    assert names == {"/pricing"}
    await page.get_by_role("link", name="Anonymous", exact=True).click()
    anonymous = page.get_by_role("table", name=re.compile("Anonymous activity")).locator(
        "tbody tr").filter(has_text="anon-log")
    await expect(anonymous).to_have_count(1)
    await expect(anonymous).to_contain_text("not yet (anonymous)")
    await expect(anonymous).to_contain_text("log_browsed")
    await context.close()


async def test_segment_editor_previews_the_size_as_you_type(chromium: Browser,
                                                            shop: Shop) -> None:
    for n in range(3):
        status, _ = await api(shop, "POST", f"/api/v1/customers/preview-{n}/events",
                              {"name": "preview_bought" if n < 2 else "preview_viewed"},
                              track=True)
        assert status == 200
    context, page = await console(chromium, shop)
    await page.goto(shop.url + "/console/segments/new?id=preview-seg")
    preview = page.locator("[data-segment-preview]")
    definition = page.get_by_label("Definition (JSON)")
    text = '{"name": "Buyers", "match": {"all": [{"event": "preview_bought", "within": "7d"}]}}'

    async def two_buyers() -> None:
        await definition.fill(text + " ")
        await expect(preview).to_have_attribute("data-count", "2", timeout=2_000)
    await eventually(two_buyers, interval_s=0.5)
    await expect(preview).to_contain_text("Would match 2 people now")
    sample = preview.locator("[data-preview-sample] li")
    assert await sample.all_inner_texts() == ["preview-0", "preview-1"]
    await definition.fill('{"match": {"all": [{"event": "preview_bought", "within": "7x"}]}}')
    await expect(preview).to_contain_text("Not a valid definition")
    await expect(preview).to_contain_text("within")
    await definition.fill('{"match": ')
    await expect(preview).to_contain_text("Preview waits for a valid JSON object.")
    # Nothing was saved or published.
    status, _ = await api(shop, "GET", "/api/v1/segments/preview-seg")
    assert status == 404
    await context.close()
