"""The hour on the board page, in Chromium: holds and their countdowns, the waitlist with
its live positions, a hold offered to the first in line, "Open the lab" and "I'm done".

The real app (``create_app``) runs in this process on a clock that flows with real time
and that a test moves forward by hand; every page's clock (Playwright's) is installed at
the same instant and moved with it, so the page's countdowns run to the server's
instants, as they do for a student whose clock is right. Screenshots go to
``RERO_SCREENSHOTS`` (default: the test's temporary folder). Skipped where Chromium or
Playwright is missing, unless ``RERO_REQUIRE_BROWSER=1``, as test_browser.py is.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from rero.app import create_app
from rero.grants import generate_key
from rero.setting_checks import LabConfig, ResourceConfig
from rero.settings import Settings
from tests.helpers import CHROMIUM, free_port, serve, users

REQUIRED = os.environ.get("RERO_REQUIRE_BROWSER") == "1"
#: Tuesday 2026-11-24, 08:30 in Kolkata: slot 8 (08:00-09:00) is under way, 9 starts at 09:00.
START = datetime(2026, 11, 24, 3, 0, tzinfo=timezone.utc)
ZONE = "Asia/Kolkata"
USERS = [(u.username, u.password) for u in users(3)]

pytestmark = pytest.mark.browser

if not REQUIRED and not Path(CHROMIUM).exists():
    pytest.skip("no Chromium here (CI installs it)", allow_module_level=True)
if not REQUIRED:
    pytest.importorskip("playwright")

from playwright.async_api import Browser, Page, expect  # noqa: E402


class FlowingClock:
    """A wall clock and a timer that run with real time from ``start``, plus whatever a
    test adds: both the server and the pages' clocks flow, so countdowns tick."""

    def __init__(self, start: datetime) -> None:
        self._start, self._t0, self._offset = start, time.monotonic(), 0.0

    def __call__(self) -> datetime:
        return self._start + timedelta(seconds=time.monotonic() - self._t0 + self._offset)

    def timer(self) -> float:
        return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds


@dataclass
class Lab:
    """The server, its clock, and the pages open on it."""

    browser: Browser
    url: str
    clock: FlowingClock
    pages: list[Page] = field(default_factory=list)

    async def student(self, who: int) -> Page:
        """A page on today's board, signed in as fake user ``who``, its clock the server's."""
        context = await self.browser.new_context(
            timezone_id=ZONE, viewport={"width": 1100, "height": 900}
        )
        await context.clock.install(time=self.clock())
        page = await context.new_page()
        await page.goto(self.url + "/board")
        await expect(page.locator("#status")).to_have_attribute("data-state", "live")
        await expect(page.locator("#dates button").first).to_have_attribute("aria-current", "true")
        username, password = USERS[who]
        await page.get_by_label("Username").fill(username)
        await page.get_by_label("Password").fill(password)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.locator("#who")).to_have_text(f"User {who}")
        self.pages.append(page)
        return page

    async def advance(self, seconds: float) -> None:
        """Time passes, on the server and in every page."""
        self.clock.advance(seconds)
        for page in self.pages:
            await page.clock.fast_forward(int(seconds * 1000))


@asynccontextmanager
async def running(
    browser: Browser,
    settings: Settings,
    routes: Callable[[web.Application, Lab], None] | None = None,
    lab_keys: Path | None = None,
) -> AsyncIterator[Lab]:
    """The app on a flowing clock; with ``lab_keys`` (a folder for the signing key), its
    resource has a lab whose launch page is served by the same server at ``/lab-page``."""
    clock = FlowingClock(START)
    configured = replace(settings, fake_users=users(3), session_minutes=240.0)
    port = free_port()
    if lab_keys is not None:
        generate_key(str(lab_keys / "grant.pem"))
        lab_table = LabConfig(f"http://127.0.0.1:{port}/lab-page", early_minutes=2)
        resource = ResourceConfig("lab", name="ReRo lab", lab=lab_table)
        configured = replace(
            configured, resources=(resource,), public_url=f"http://127.0.0.1:{port}",
            grant_signing_keys=(str(lab_keys / "grant.pem"),),
        )  # fmt: skip
    app = create_app(configured, clock=clock, timer=clock.timer)
    lab = Lab(browser, "", clock)
    if routes is not None:
        routes(app, lab)
    async with serve(app, port) as port:
        lab.url = f"http://127.0.0.1:{port}"
        try:
            yield lab
        finally:
            for page in lab.pages:
                await page.context.close()


def slot(page: Page, slot_id: int) -> Any:
    return page.locator(f'#slots li[data-slot="{slot_id}"]')


def button(page: Page, slot_id: int, name: str) -> Any:
    """A slot's button by its visible text."""
    return slot(page, slot_id).locator("button", has_text=re.compile(f"^{re.escape(name)}$"))


def state(page: Page, slot_id: int) -> Any:
    return slot(page, slot_id).locator(".state")


def mine(page: Page, what: str) -> Any:
    """The row of My bookings about slot ``what`` (its lab time span)."""
    return page.locator("#mine li", has_text=what)


async def first_in_line(a: Page, b: Page, keep: str, kept: str) -> None:
    """A keeps slot 10 (``keep``: Book or Hold); B, seeing it ``kept``, joins its line."""
    await button(a, 10, keep).click()
    await expect(slot(b, 10)).to_have_attribute("data-state", kept, timeout=1000)
    await button(b, 10, "Join waitlist").click()
    await expect(state(b, 10)).to_have_text("On the waitlist: #1")
    await expect(slot(b, 10)).to_have_attribute("data-state", "waiting")


async def test_a_hold_shows_held_to_others_with_its_countdown_then_is_confirmed(
    browser: Browser, settings: Settings, shots: Path
) -> None:
    async with running(browser, settings) as lab:
        a, b = await lab.student(0), await lab.student(1)
        await button(a, 10, "Hold").click()
        await expect(slot(a, 10)).to_have_attribute("data-state", "holding")
        await expect(state(a, 10)).to_have_text(re.compile(r"^Held for you: (2:00|1:5\d)$"))
        await expect(a.locator("#message")).to_have_text(
            re.compile(r"^Held ReRo lab, .+, 10:00\u201311:00 for you until 08:32: confirm it")
        )
        await expect(mine(a, "10:00\u201311:00")).to_contain_text("Held for you: ")
        # B sees it held, with the time left, and may only wait for it.
        await expect(slot(b, 10)).to_have_attribute("data-state", "held", timeout=1000)
        await expect(state(b, 10)).to_have_text(re.compile(r"^Held: (2:00|1:5\d)$"))
        await expect(slot(b, 10).get_by_role("button")).to_have_text("Join waitlist")
        await a.screenshot(path=shots / "board-hold.png")
        await b.screenshot(path=shots / "board-held.png")
        # The countdowns tick to the server's instant: 40 s later, 1:20 or just under.
        await lab.advance(40)
        await expect(state(a, 10)).to_have_text(re.compile(r"^Held for you: 1:(20|1\d)$"))
        await expect(state(b, 10)).to_have_text(re.compile(r"^Held: 1:(20|1\d)$"))
        # One hold at a time: the server's sentence.
        await button(a, 11, "Hold").click()
        await expect(a.locator("#message")).to_have_text(
            "You already hold a slot: confirm or release it first"
        )

        await button(a, 10, "Confirm").click()
        await expect(slot(a, 10)).to_have_attribute("data-state", "mine")
        await expect(a.locator("#message")).to_have_text(
            re.compile(r"^Booked ReRo lab, .+, 10:00\u201311:00\.$")
        )
        await expect(mine(a, "10:00\u201311:00")).not_to_contain_text("Held")
        await expect(slot(b, 10)).to_have_attribute("data-state", "taken", timeout=1000)
        await expect(state(b, 10)).to_have_text("Booked")


async def test_a_hold_runs_out_or_is_released_and_the_slot_is_free(
    browser: Browser, settings: Settings
) -> None:
    async with running(browser, settings) as lab:
        a, b = await lab.student(0), await lab.student(1)
        await button(a, 11, "Hold").click()
        await expect(slot(b, 11)).to_have_attribute("data-state", "held", timeout=1000)
        # The two minutes pass: the page reads the board again, the server has swept it.
        await lab.advance(121)
        for page in (a, b):
            await expect(slot(page, 11)).to_have_attribute("data-state", "free", timeout=5000)
            await expect(state(page, 11)).to_have_text("Free")
        await expect(a.locator("#mine")).to_have_text("None yet.")

        await button(a, 12, "Hold").click()
        await expect(slot(b, 12)).to_have_attribute("data-state", "held", timeout=1000)
        await button(a, 12, "Release hold").click()
        await expect(a.locator("#message")).to_have_text(
            re.compile(r"^Released the hold on ReRo lab, .+, 12:00\u201313:00\.$")
        )
        for page in (a, b):
            await expect(slot(page, 12)).to_have_attribute("data-state", "free", timeout=1000)


async def test_the_waitlist_position_shows_and_moves_live(
    browser: Browser, settings: Settings, shots: Path
) -> None:
    async with running(browser, settings) as lab:
        a, b, c = await lab.student(0), await lab.student(1), await lab.student(2)
        await first_in_line(a, b, "Book", "taken")
        await expect(mine(b, "10:00\u201311:00")).to_contain_text("On the waitlist: #1")
        await expect(slot(c, 10)).to_have_attribute("data-state", "taken")
        await button(c, 10, "Join waitlist").click()
        await expect(state(c, 10)).to_have_text("On the waitlist: #2")
        await c.screenshot(path=shots / "board-waitlist.png")

        # B, ahead of C, leaves: C's place moves up without a reload.
        await button(b, 10, "Leave").click()
        await expect(slot(b, 10)).to_have_attribute("data-state", "taken")
        await expect(b.locator("#mine")).to_have_text("None yet.")
        await expect(state(c, 10)).to_have_text("On the waitlist: #1", timeout=2000)
        await expect(mine(c, "10:00\u201311:00")).to_contain_text("On the waitlist: #1")


async def test_a_hold_offered_to_the_first_in_line_shows_with_its_countdown(
    browser: Browser, settings: Settings, shots: Path
) -> None:
    """A's hold is let go while B waits for the slot: B is offered it, a notice says so
    with its countdown, and B confirms it from there."""
    async with running(browser, settings) as lab:
        a, b = await lab.student(0), await lab.student(1)
        await first_in_line(a, b, "Hold", "held")
        await expect(b.locator("#offers")).to_be_hidden()

        await button(a, 10, "Release hold").click()
        offers = b.locator("#offers")
        await expect(offers).to_be_visible(timeout=2000)
        await expect(offers).to_contain_text("A place opened up for you")
        await expect(offers.locator("li")).to_contain_text(
            re.compile(r"ReRo lab, .+, 10:00\u201311:00Held for you: (5:00|4:5\d)")
        )
        await expect(b.locator("#message")).to_contain_text(
            re.compile(r"^A place opened up: ReRo lab, .+, 10:00\u201311:00 is held for you until")
        )
        await expect(slot(b, 10)).to_have_attribute("data-state", "holding")
        await expect(slot(a, 10)).to_have_attribute("data-state", "held", timeout=1000)
        await lab.advance(60)
        await expect(offers.locator("li .note")).to_have_text(
            re.compile(r"^Held for you: (4:00|3:5\d)$")
        )
        await b.screenshot(path=shots / "board-offer.png")

        await offers.get_by_role("button", name="Confirm").click()
        await expect(offers).to_be_hidden()
        await expect(slot(b, 10)).to_have_attribute("data-state", "mine")
        await expect(slot(a, 10)).to_have_attribute("data-state", "taken", timeout=1000)


async def test_a_hold_is_offered_after_a_cancel(browser: Browser, settings: Settings) -> None:
    async with running(browser, settings) as lab:
        a, b = await lab.student(0), await lab.student(1)
        await first_in_line(a, b, "Book", "taken")
        await button(a, 10, "Cancel").click()
        await expect(b.locator("#offers li")).to_contain_text(
            re.compile(r"10:00\u201311:00Held for you: (5:00|4:5\d)"), timeout=2000
        )
        await expect(slot(b, 10)).to_have_attribute("data-state", "holding")


def lab_page(app: web.Application, lab: Lab) -> None:
    """The lab's own page, where a grant's launch address leads (a stand-in for the lab's
    server: rero only sends the student there)."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<title>The lab</title>", content_type="text/html")

    app.router.add_get("/lab-page", page)


async def test_during_the_slot_open_the_lab_and_im_done(
    browser: Browser, settings: Settings, shots: Path, tmp_path: Path
) -> None:
    async with running(browser, settings, lab_page, lab_keys=tmp_path) as lab:
        a, b = await lab.student(0), await lab.student(1)
        for slot_id in (8, 9):  # 08:00-09:00 is under way (08:30), 09:00-10:00 is not
            await button(a, slot_id, "Book").click()
            await expect(slot(a, slot_id)).to_have_attribute("data-state", "mine")
        now, later = mine(a, "08:00\u201309:00"), mine(a, "09:00\u201310:00")
        await expect(now.get_by_role("button")).to_have_text(["Open the lab", "I'm done", "Cancel"])
        await expect(now).to_contain_text("Under way")
        await expect(later.get_by_role("button")).to_have_text(["Cancel"])
        await a.screenshot(path=shots / "board-under-way.png")

        # Open the lab: the signed grant, then the lab's page in a new tab with it.
        async with a.context.expect_page() as opened:
            await now.get_by_role("button", name="Open the lab").click()
        tab = await opened.value
        await tab.wait_for_load_state()
        assert tab.url.startswith(f"{lab.url}/lab-page#grant=ey"), tab.url
        await expect(a.locator("#message")).to_contain_text("opens in a new tab. Open it here")
        await expect(a.locator("#message a")).to_have_attribute("href", tab.url)

        # I'm done: the rest of the slot is free for B, live.
        await expect(slot(b, 8)).to_have_attribute("data-state", "taken")
        await now.get_by_role("button", name="I'm done").click()
        await expect(a.locator("#message")).to_have_text(
            re.compile(r"^Done with ReRo lab, .+, 08:00\u201309:00: the rest of it is free")
        )
        await expect(now).to_have_count(0)
        await expect(slot(b, 8)).to_have_attribute("data-state", "free", timeout=1000)

        # Five minutes before 09:00 the page offers the lab; this one opens two minutes
        # before, so the server's refusal is what the student reads.
        await lab.advance(25 * 60 + 30)  # 08:55:30
        await expect(later.get_by_role("button")).to_have_text(["Open the lab", "Cancel"])
        await later.get_by_role("button", name="Open the lab").click()
        await expect(a.locator("#message")).to_have_text(
            re.compile(r"^Booking \d+ is not for now: access opens at 2026-11-24T08:58:00\+05:30$")
        )
        await expect(later.get_by_role("button", name="Open the lab")).to_be_visible()
        await lab.advance(3 * 60)  # 08:58:30: open
        async with a.context.expect_page() as opened:
            await later.get_by_role("button", name="Open the lab").click()
        assert (await opened.value).url.startswith(f"{lab.url}/lab-page#grant=")
        await lab.advance(2 * 60)  # 09:00:30: under way, so "I'm done" too
        await expect(later.get_by_role("button")).to_have_text(
            ["Open the lab", "I'm done", "Cancel"]
        )


async def test_a_resource_without_a_lab_offers_none(browser: Browser, settings: Settings) -> None:
    async with running(browser, settings) as lab:
        a = await lab.student(0)
        await button(a, 8, "Book").click()
        now = mine(a, "08:00\u201309:00")
        await expect(now).to_contain_text("Under way")
        await expect(now.get_by_role("button")).to_have_text(["I'm done", "Cancel"])
