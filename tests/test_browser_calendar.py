"""The calendar on the board page, in Chromium (issue 15): resources of two sites, dates,
closed slots, quotas, and a day that opens while the page is open.

Set up as test_browser.py is (Debian's Chromium driven headless by Playwright, skipped
where either is missing unless ``RERO_REQUIRE_BROWSER=1``), against servers configured
with resources. Dates are read from the page's strip (``data-date``), never computed
here, except where the server's configuration must name one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from tests.helpers import CHROMIUM, Server, bearer, start_server

REQUIRED = os.environ.get("RERO_REQUIRE_BROWSER") == "1"
A_USER = ("user0", "pw-0")  # start_server's fake users: SRN0000, SRN0001, ...
B_USER = ("user1", "pw-1")
BOOK = re.compile(r"^Book ")  # a free slot's Book button (beside its Hold)
ADMIN = {"username": "user3", "password": "pw-3"}
ARM = "Asia/Kolkata"
CAGE = "Europe/London"
#: Two resources on two sites. An inline array of tables: start_server puts the test
#: profile's top-level keys after this, where a ``[[resources]]`` header would claim them.
RESOURCES = """
resources = [
  {{id = "arm-1", name = "Robot arm 1", site = "RR", timezone = "{arm_zone}", opens = "03:00", closes = "15:00", slot_minutes = 60, booking_window_days = 7, window_opens_at = "{arm_opens}"{arm}}},
  {{id = "cage", name = "Drone cage", site = "EC", timezone = "Europe/London", opens = "08:00", closes = "12:00", slot_minutes = 60, booking_window_days = 7, window_opens_at = "00:00"{cage}}},
]
"""  # noqa: E501

pytestmark = pytest.mark.browser

if not REQUIRED and not Path(CHROMIUM).exists():
    pytest.skip("no Chromium here (CI installs it)", allow_module_level=True)
if not REQUIRED:
    pytest.importorskip("playwright")

from playwright.async_api import Browser, Page, expect  # noqa: E402


@contextmanager
def running(
    tmp_path: Path,
    profile: str = "",
    *,
    arm: str = "",
    cage: str = "",
    arm_zone: str = ARM,
    arm_opens: str = "00:00",
) -> Iterator[Server]:
    """A server with the two resources (``arm``/``cage``: more keys for each, TOML)."""
    resources = RESOURCES.format(arm=arm, cage=cage, arm_zone=arm_zone, arm_opens=arm_opens)
    srv = start_server(tmp_path, profile + resources)
    try:
        yield srv
    finally:
        srv.proc.terminate()
        try:
            srv.proc.wait(10)
        except subprocess.TimeoutExpired:
            srv.proc.kill()


async def open_board(
    browser: Browser, url: str, sent: list[dict[str, Any]] | None = None, **context: Any
) -> Page:
    """The page, live; every message it sends on its sockets goes to ``sent``, as JSON."""
    page = await (await browser.new_context(**context)).new_page()
    if sent is not None:
        page.on("websocket", lambda ws: ws.on("framesent", lambda f: sent.append(json.loads(f))))
    await page.goto(url + "/board")
    await expect(page.locator("#status")).to_have_attribute("data-state", "live")
    await expect(page.locator("#dates button").first).to_be_visible()
    return page


async def sign_in(page: Page, user: tuple[str, str]) -> None:
    await page.get_by_label("Username").fill(user[0])
    await page.get_by_label("Password").fill(user[1])
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#signed-in")).to_be_visible()


async def choose(page: Page, resource: str) -> None:
    tab = page.locator("#resources button", has_text=resource)
    await tab.click()
    await expect(tab).to_have_attribute("aria-current", "true")


async def choose_date(page: Page, index: int) -> str:
    """The strip's ``index``-th date (0: today), chosen; its ISO date."""
    chip = page.locator("#dates button").nth(index)
    day = await chip.get_attribute("data-date")
    assert day is not None
    await chip.click()
    await expect(chip).to_have_attribute("aria-current", "true")
    return day


def slot(page: Page, slot_id: int) -> Any:
    return page.locator(f'#slots li[data-slot="{slot_id}"]')


async def test_two_students_on_two_resources_and_two_dates(
    browser: Browser, tmp_path: Path
) -> None:
    with running(tmp_path) as srv:
        # A is in New York, B in the arm's own zone: only A is shown a second time.
        sent: list[dict[str, Any]] = []
        a = await open_board(
            browser,
            srv.url,
            sent,
            timezone_id="America/New_York",
            viewport={"width": 1100, "height": 900},
        )
        b = await open_board(
            browser, srv.url, timezone_id=ARM, viewport={"width": 390, "height": 844}
        )
        await expect(a.locator("#resources .site-name")).to_have_text(["RR", "EC"])
        await expect(a.locator("#resources button")).to_have_text(["Robot arm 1", "Drone cage"])
        await expect(a.locator("#resources button").first).to_have_attribute(
            "aria-current", "true"
        )  # the first resource is the default
        await sign_in(a, A_USER)
        await sign_in(b, B_USER)
        await expect(a.locator("#mine")).to_have_text("None yet.")

        # Both on the arm, tomorrow.
        day1 = await choose_date(a, 1)
        assert await choose_date(b, 1) == day1
        await expect(a.locator("#slots li")).to_have_count(12)
        await expect(a.locator("#zone")).to_contain_text(f"Times are in {ARM}")
        await expect(a.locator("#zone")).to_contain_text("yours (America/New_York)")
        await expect(slot(a, 9).locator(".time")).to_have_text("09:00\u201310:00")
        await expect(slot(a, 9).locator(".local")).to_contain_text("your time")
        await expect(slot(b, 9).locator(".local")).to_be_hidden()
        await expect(b.locator("#zone")).to_have_text(f"Times are in {ARM} (GMT+5:30).")

        # A books slot 9; B sees it taken within a second, and is refused it.
        await slot(a, 9).get_by_role("button", name="Book 09:00\u201310:00").click()
        await expect(slot(a, 9)).to_have_attribute("data-state", "mine")
        await expect(slot(b, 9)).to_have_attribute("data-state", "taken", timeout=1000)
        await expect(a.locator("#message")).to_contain_text("Booked Robot arm 1, ")
        await expect(slot(b, 9).get_by_role("button")).to_have_text("Join waitlist")

        # B books the cage the day after; A, switching there, sees it taken.
        await choose(b, "Drone cage")
        day2 = await choose_date(b, 2)
        await expect(b.locator("#slots li")).to_have_count(4)
        await expect(b.locator("#zone")).to_contain_text(f"Times are in {CAGE}")
        await slot(b, 10).get_by_role("button", name=BOOK).click()
        await expect(slot(b, 10)).to_have_attribute("data-state", "mine")
        await choose(a, "Drone cage")
        assert await choose_date(a, 2) == day2
        await expect(slot(a, 10)).to_have_attribute("data-state", "taken")
        # The page left the arm's board on its socket, and follows the cage's.
        assert {"type": "unsubscribe", "resource": "arm-1", "date": day1} in sent
        assert {"type": "subscribe", "resource": "cage", "date": day2} in sent

        # B also books on the arm, tomorrow: B's list spans both resources and dates.
        await choose(b, "Robot arm 1")
        await choose_date(b, 1)
        await slot(b, 11).get_by_role("button", name=BOOK).click()
        await expect(slot(b, 11)).to_have_attribute("data-state", "mine")
        await expect(b.locator("#mine li")).to_have_count(2)
        await expect(b.locator("#mine li").nth(0)).to_contain_text("Robot arm 1")
        await expect(b.locator("#mine li").nth(1)).to_contain_text("Drone cage")
        await expect(a.locator("#mine li")).to_have_count(1)
        await expect(a.locator("#mine li")).to_contain_text("Robot arm 1")

        # A cancels from the list, while looking at the cage; B sees slot 9 free.
        await a.locator("#mine li").get_by_role("button", name="Cancel").click()
        await expect(a.locator("#mine")).to_have_text("None yet.")
        await expect(a.locator("#message")).to_contain_text("Cancelled Robot arm 1, ")
        await expect(slot(b, 9)).to_have_attribute("data-state", "free", timeout=1000)

        # A reload shows the same board (the choice is in the address).
        await a.reload()
        await expect(a.locator("#resources button[aria-current]")).to_have_text("Drone cage")
        await expect(a.locator(f'#dates button[data-date="{day2}"]')).to_have_attribute(
            "aria-current", "true"
        )
        await expect(slot(a, 10)).to_have_attribute("data-state", "taken")


async def test_a_closed_slot_shows_its_reason(browser: Browser, tmp_path: Path) -> None:
    """A blackout added while the page is open closes the slot live, with its reason, and
    cancels the booking inside it; a holiday closes a whole day."""
    london_today = datetime.now(ZoneInfo(CAGE)).date()
    holiday = london_today + timedelta(days=3)
    cage = f', holidays = ["{holiday.isoformat()}"]'
    with running(tmp_path, 'admins = ["SRN0003"]\n', cage=cage) as srv:
        a = await open_board(browser, srv.url)
        watcher = await open_board(browser, srv.url)
        await sign_in(a, A_USER)
        for page in (a, watcher):
            await choose(page, "Drone cage")
        day = await choose_date(a, 1)
        assert await choose_date(watcher, 1) == day
        await slot(a, 10).get_by_role("button", name=BOOK).click()
        await expect(slot(a, 10)).to_have_attribute("data-state", "mine")
        await expect(a.locator("#mine li")).to_have_count(1)

        zone = ZoneInfo(CAGE)
        start = datetime.combine(date.fromisoformat(day), time(10), zone)
        blackout = {
            "resource": "cage",
            "start": start.isoformat(),
            "end": (start + timedelta(hours=1)).isoformat(),
            "reason": "Maintenance",
        }
        async with aiohttp.ClientSession(srv.url) as http:
            resp = await http.post("/auth/login", json=ADMIN)
            token = (await resp.json())["token"]
            resp = await http.post("/admin/blackouts", json=blackout, headers=bearer(token))
            assert resp.status == 201, await resp.text()

        for page in (a, watcher):
            await expect(slot(page, 10)).to_have_attribute("data-state", "closed", timeout=1000)
            await expect(slot(page, 10).locator(".state")).to_have_text("Closed: Maintenance")
            await expect(slot(page, 10).get_by_role("button")).to_be_hidden()
            await expect(slot(page, 9)).to_have_attribute("data-state", "free")
        await expect(a.locator("#mine")).to_have_text("None yet.")

        # The holiday: every slot of that day closed, with the reason.
        await a.locator(f'#dates button[data-date="{holiday.isoformat()}"]').click()
        await expect(a.locator("#slots li")).to_have_count(4)
        for slot_id in (8, 9, 10, 11):
            await expect(slot(a, slot_id)).to_have_attribute("data-state", "closed")
            await expect(slot(a, slot_id).locator(".state")).to_have_text("Closed: holiday")


async def test_a_quota_refusal_is_the_servers_sentence(browser: Browser, tmp_path: Path) -> None:
    with running(tmp_path, "max_bookings_per_day = 1\n") as srv:
        page = await open_board(browser, srv.url)
        await sign_in(page, A_USER)
        day1 = await choose_date(page, 1)
        await slot(page, 9).get_by_role("button", name=BOOK).click()
        await expect(slot(page, 9)).to_have_attribute("data-state", "mine")
        await slot(page, 10).get_by_role("button", name=BOOK).click()
        await expect(page.locator("#message")).to_have_text(
            "Booking limit reached: at most 1 per day"
        )
        await expect(slot(page, 10)).to_have_attribute("data-state", "free")
        # Another day is another day's quota.
        day2 = await choose_date(page, 2)
        await slot(page, 10).get_by_role("button", name=BOOK).click()
        await expect(slot(page, 10)).to_have_attribute("data-state", "mine")
        await expect(page.locator("#mine li")).to_have_count(2)
        assert day1 != day2


def opening_soon(lead: int) -> tuple[str, str]:
    """A zone whose wall clock is not near midnight, and the first whole minute there at
    least ``lead`` seconds from now (``window_opens_at`` is HH:MM): a moment that comes
    while the test watches, after the page has shown the day closed."""
    for zone in ("UTC", "Asia/Kolkata", "America/New_York", "Asia/Tokyo"):
        at = datetime.now(ZoneInfo(zone)) + timedelta(seconds=lead + 59)
        if 1 <= at.hour <= 22:
            return zone, at.strftime("%H:%M")
    raise AssertionError("every zone is near midnight")  # cannot be: they span 14 hours


async def test_a_day_opens_while_the_page_is_open(browser: Browser, tmp_path: Path) -> None:
    zone, opens_at = opening_soon(25)
    with running(tmp_path, arm_zone=zone, arm_opens=opens_at) as srv:
        page = await open_board(browser, srv.url)
        await sign_in(page, A_USER)
        chips = page.locator("#dates button")
        await expect(chips).to_have_count(8)  # today, seven more, and the next day
        closed = chips.last
        await expect(closed).to_have_attribute("data-open", "false")
        await expect(closed).to_contain_text(f"opens {opens_at} today")
        day = await choose_date(page, 7)
        await expect(slot(page, 9)).to_have_attribute("data-state", "closed")
        await expect(slot(page, 9).locator(".state")).to_have_text("Not yet open")
        await expect(page.locator("#opens")).to_contain_text(f"open at {opens_at} on")

        # The moment passes (within 85 s): bookable without a reload, and a new day at the
        # strip's end.
        await expect(slot(page, 9)).to_have_attribute("data-state", "free", timeout=100_000)
        await expect(page.locator(f'#dates button[data-date="{day}"]')).to_have_attribute(
            "data-open", "true"
        )
        await expect(page.locator("#opens")).to_be_hidden()
        await expect(chips).to_have_count(9)
        await expect(chips.last).to_have_attribute("data-open", "false")
        await slot(page, 9).get_by_role("button", name=BOOK).click()
        await expect(slot(page, 9)).to_have_attribute("data-state", "mine")
