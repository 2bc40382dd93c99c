"""The staff console (/admin) in Chromium (issue 17): an assistant closes a morning and
the student's board shows it, cancels a booking with a reason and exports the audit
trail; an admin lifts a suspension and sets a role; a student is told the API's 403.

Run as test_browser_hour.py is (the app in this process on a flowing clock, each page's
clock installed at the server's instant), with the same skips. Every page is watched
for console errors, CSP refusals among them. Screenshots go to ``RERO_SCREENSHOTS``.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from rero.keys import HOUR
from rero.setting_checks import ResourceConfig
from rero.settings import Settings
from rero.storage.queries import EVENT_KEYS
from tests.helpers import CAGE, CHROMIUM, bearer, users

REQUIRED = os.environ.get("RERO_REQUIRE_BROWSER") == "1"

pytestmark = pytest.mark.browser

if not REQUIRED and not Path(CHROMIUM).exists():
    pytest.skip("no Chromium here (CI installs it)", allow_module_level=True)
if not REQUIRED:
    pytest.importorskip("playwright")

from playwright.async_api import Browser, Download, Locator, Page, Route, expect  # noqa: E402

from tests.test_browser_hour import USERS, ZONE, Lab, button, running, slot, state  # noqa: E402

STUDENT, ASSISTANT, ADMIN = 0, 1, 2
SRNS = [u.srn for u in users(3)]
MAINTENANCE = "Robot maintenance"
REFUSED = "403 (Forbidden)"


def staffed(settings: Settings, **changes: object) -> Settings:
    """User 1 an assistant, user 2 an admin, user 0 a student."""
    return replace(settings, assistants=(SRNS[ASSISTANT],), admins=(SRNS[ADMIN],), **changes)


async def console(
    lab: Lab,
    who: int,
    errors: list[str],
    width: int = 1200,
    prepare: Callable[[Page], Awaitable[None]] | None = None,
) -> Page:
    """The console, signed in as fake user ``who``; console errors go to ``errors``;
    ``prepare`` (routes, say) runs on the page before it opens."""
    context = await lab.browser.new_context(
        timezone_id=ZONE, viewport={"width": width, "height": 900}
    )
    await context.clock.install(time=lab.clock())
    page = await context.new_page()
    if prepare is not None:
        await prepare(page)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    lab.pages.append(page)
    await page.goto(lab.url + "/admin")
    username, password = USERS[who]
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#who")).to_have_text(f"User {who}")
    return page


async def saved_text(download: Download) -> str:
    saved = await download.path()
    return await asyncio.to_thread(saved.read_text)


async def book_today(lab: Lab, slot_id: int) -> None:
    """The student books ``slot_id`` today over HTTP (no page needed)."""
    async with aiohttp.ClientSession(lab.url) as http:
        login = {"username": USERS[STUDENT][0], "password": USERS[STUDENT][1]}
        token = (await (await http.post("/auth/login", json=login)).json())["token"]
        booking = {"resource": "lab", "date": "2026-11-24", "slot_id": slot_id}
        made = await http.post("/bookings", headers=bearer(token), json=booking)
        assert made.status == 201, await made.text()


def row(page: Page, slot_id: int) -> Locator:
    return page.locator(f'#board-table tr[data-slot="{slot_id}"]')


async def test_an_assistant_closes_a_morning_and_the_students_board_shows_it(
    browser: Browser, settings: Settings, shots: Path
) -> None:
    errors: list[str] = []
    async with running(browser, staffed(settings)) as lab:
        student = await lab.student(STUDENT)
        for booked in (8, 10, 14):
            await button(student, booked, "Book").click()
            await expect(slot(student, booked)).to_have_attribute("data-state", "mine")
        staff = await console(lab, ASSISTANT, errors)
        await expect(staff.locator("#role")).to_have_text("assistant")
        await expect(row(staff, 10)).to_contain_text("User 0 (SRN0000)")
        await expect(row(staff, 10).locator("td")).to_have_text(
            ["10:00\u201311:00", "Booked", "User 0 (SRN0000)", "Not yet", "\u2014", "Cancel"]
        )
        # Slot 8 is under way (it is 08:30): the student is at the desk and is checked in.
        await row(staff, 8).get_by_role("button", name="Check in").click()
        await expect(staff.locator("#board-message")).to_have_text(
            "Checked SRN0000 in for 08:00\u201309:00."
        )
        # A success is one status element (announced once), beside the board's form.
        await expect(staff.locator("#board-message [role=status]")).to_have_count(1)
        await expect(staff.locator("[aria-live], [role=alert]")).to_have_count(2)  # month, pager
        await expect(row(staff, 3).locator("td").nth(1)).to_have_text("Ended")  # past, unbooked
        # Focus stays on the row: its Check in is gone, its Cancel is next.
        await expect(row(staff, 8).get_by_role("button", name="Cancel")).to_be_focused()
        await expect(row(staff, 8).locator("td").nth(3)).to_have_text(re.compile(r"^At 08:3\d$"))
        await expect(row(staff, 8).get_by_role("button", name="Check in")).to_have_count(0)
        await expect(staff.locator("#chart-utilization canvas")).to_have_count(1)
        await expect(staff.locator("#table-counts tbody tr")).to_have_count(2)
        async with staff.expect_download() as waiting:
            await staff.get_by_role("button", name="Counts as CSV").click()
        assert await saved_text(await waiting.value) == "What,Count\nBookings,3\nCancellations,0\n"

        # Close the morning, 09:00-12:00 in the lab's zone: slot 10's booking goes.
        closing = staff.locator("#blackout-form")
        await closing.get_by_label("Start time").fill("09:00")
        await closing.get_by_label("End time").fill("12:00")
        await closing.get_by_label("Reason").fill(MAINTENANCE)
        await closing.get_by_role("button", name="Add blackout").click()
        await expect(staff.locator("#blackouts-message")).to_contain_text(
            f"09:00 to 12:00: {MAINTENANCE}. Cancelled 1 booking."
        )
        await expect(staff.locator("#blackout-list li")).to_contain_text(MAINTENANCE)
        await expect(staff.locator("#month button.closed")).to_contain_text("1 closed")
        await expect(row(staff, 10)).to_contain_text(f"Closed: {MAINTENANCE}")
        await expect(slot(student, 10)).to_have_attribute("data-state", "closed", timeout=2000)
        await expect(state(student, 10)).to_have_text(f"Closed: {MAINTENANCE}")
        await staff.evaluate("window.scrollTo(0, 0)")
        await staff.screenshot(path=shots / "console.png")

        # Cancel the afternoon's booking with a reason; the student's slot is free again.
        await row(staff, 14).get_by_role("button", name="Cancel").click()
        reason = staff.get_by_label("Reason (told to the student)")
        await expect(reason).to_be_focused()  # the dialog is keyboard-first: type, Enter
        await reason.press("Escape")  # Escape keeps the booking
        await expect(staff.locator("#cancel-dialog")).to_be_hidden()
        await row(staff, 14).get_by_role("button", name="Cancel").press("Enter")
        await reason.fill("Lab closes early")
        await staff.get_by_role("button", name="Cancel booking").press("Enter")
        await expect(staff.locator("#board-message")).to_have_text(
            "Cancelled SRN0000's booking 14:00\u201315:00: Lab closes early"
        )
        await expect(staff.locator("#board-title")).to_be_focused()  # the row has no button
        await expect(slot(student, 14)).to_have_attribute("data-state", "free", timeout=2000)
        await expect(student.locator("#mine li")).to_have_count(1)  # slot 8's, under way
        await expect(student.locator("#mine li")).to_contain_text("08:00\u201309:00")

        # The audit trail, filtered by action, and its CSV export.
        await staff.get_by_label("Action").fill("admin_cancelled")
        await staff.get_by_role("button", name="Search").click()
        events = staff.locator("#audit-table tbody tr")
        await expect(events).to_have_count(1)
        await expect(events).to_contain_text("Lab closes early")
        await expect(staff.locator("#audit-when")).to_have_text(f"When ({ZONE})")
        async with staff.expect_download() as waiting:
            await staff.get_by_role("button", name="Export CSV").click()
        download = await waiting.value
        assert download.suggested_filename == "rero-audit.csv"
        lines = (await saved_text(download)).splitlines()
        assert lines[0] == ",".join(EVENT_KEYS)
        assert [line.split(",")[4] for line in lines[1:]] == ["admin_cancelled"]

        # Lift the blackout: the student may book slot 10 again.
        lift = staff.locator("#blackout-list").get_by_role("button", name=re.compile("^Lift"))
        await lift.click()
        await expect(staff.locator("#blackout-list")).to_have_text("None this month.")
        await expect(staff.locator("#blackouts-title")).to_be_focused()  # no Lift left
        await expect(slot(student, 10)).to_have_attribute("data-state", "free", timeout=2000)
    assert errors == []


async def test_an_admin_lifts_a_suspension_and_sets_a_role(
    browser: Browser, settings: Settings, shots: Path
) -> None:
    errors: list[str] = []
    apps: list[web.Application] = []
    configured = staffed(settings, no_show_limit=1, no_show_minutes=10)
    async with running(browser, configured, routes=lambda app, _: apps.append(app)) as lab:
        await book_today(lab, 8)
        lab.clock.advance(15 * 60)  # 08:45: the booking of 08:00-09:00 is a no-show
        await apps[0][HOUR].sweep()

        assistant = await console(lab, ASSISTANT, errors)
        await assistant.get_by_label("SRN", exact=True).fill(SRNS[STUDENT])
        await assistant.get_by_role("button", name="Look up").click()
        await expect(assistant.locator("#student-suspension")).to_contain_text("Suspended until")
        await expect(assistant.locator("#lift-suspension")).to_be_hidden()  # admins only
        await expect(assistant.locator("#lift-note")).to_have_text(
            "Only admins can lift suspensions."
        )
        await expect(assistant.locator("#role-form")).to_be_hidden()

        admin = await console(lab, ADMIN, errors, width=390)  # on a phone
        await expect(admin.locator("#role")).to_have_text("admin")
        await admin.get_by_label("SRN", exact=True).fill(SRNS[STUDENT])
        await admin.get_by_label("SRN", exact=True).press("Enter")
        await expect(admin.locator("#student-no-shows")).to_have_text("1")
        await expect(admin.locator("#student-bookings tbody tr")).to_contain_text("no-show")
        await admin.get_by_role("button", name="Lift suspension").click()
        await expect(admin.locator("#students-message")).to_have_text(
            "Lifted the suspension of SRN0000."
        )
        await expect(admin.locator("#student-suspension")).to_have_text("Not suspended")
        await expect(admin.locator("#lift-suspension")).to_be_hidden()

        await admin.get_by_label("Set role").select_option("assistant")
        await admin.get_by_role("button", name="Save role").click()
        dialog = admin.locator("#role-dialog")
        await expect(dialog).to_contain_text("Make SRN0000 an assistant?")
        await dialog.get_by_role("button", name="Keep the role").click()
        await expect(admin.locator("#student-role")).to_have_text("student (everyone's)")
        await admin.get_by_role("button", name="Save role").click()
        await dialog.get_by_role("button", name="Set role").click()
        await expect(admin.locator("#students-message")).to_have_text(
            "SRN0000 is now an assistant."
        )
        await expect(admin.locator("#student-role")).to_have_text("assistant (set by an admin)")
        await admin.screenshot(path=shots / "console-phone.png", full_page=True)
        # Nothing is wider than the phone's screen: wide tables scroll inside their box.
        assert await admin.evaluate("document.documentElement.scrollWidth") == 390
    assert errors == []


async def test_a_student_is_told_staff_access_is_required(
    browser: Browser, settings: Settings, shots: Path
) -> None:
    errors: list[str] = []
    async with running(browser, staffed(settings)) as lab:
        page = await console(lab, STUDENT, errors)
        await expect(page.locator("#denied")).to_be_visible()
        await expect(page.locator("#denied-title")).to_have_text("Staff access required")
        await expect(page.locator("#denied-text")).to_contain_text("403")
        await expect(page.locator("#console")).to_be_hidden()
        await expect(page.locator("#role")).to_have_text("student")
        await page.screenshot(path=shots / "console-denied.png")
        # Signing out brings the form back.
        await page.get_by_role("button", name="Sign out").click()
        await expect(page.get_by_label("Username")).to_be_visible()
        await expect(page.locator("#denied")).to_be_hidden()
    # The browser logs the API's refusal; nothing else went wrong (no CSP refusal either).
    assert errors == [f"Failed to load resource: the server responded with a status of {REFUSED}"]


def refusals(errors: list[str]) -> list[str]:
    """The browser's log of the API's refusals (the page shows them; they are expected)."""
    return [e for e in errors if e.startswith("Failed to load resource")]


async def test_errors_show_beside_their_form_and_stale_data_goes(
    browser: Browser, settings: Settings
) -> None:
    errors: list[str] = []
    async with running(browser, staffed(settings)) as lab:
        staff = await console(lab, ASSISTANT, errors)
        await expect(staff.locator("#board-title")).to_be_focused()  # after signing in
        analytics = staff.locator("#analytics-section")
        await expect(staff.locator("#analytics")).to_be_visible()
        # From after To: the refusal is beside the form, on screen; the old numbers go.
        await analytics.get_by_label("From").fill("2026-11-30")
        await analytics.get_by_label("To").fill("2026-11-01")
        await analytics.get_by_role("button", name="Show").click()
        refusal = staff.locator("#analytics-message [role=alert]")
        await expect(refusal).to_contain_text("Analytics not updated:")
        await expect(refusal).to_be_in_viewport()
        await expect(staff.locator("#analytics")).to_be_hidden()
        # The next request clears it, and the button is off while it runs (no double submit).
        gate = asyncio.Event()

        async def held(route: Route) -> None:
            await gate.wait()
            await route.continue_()

        await staff.route("**/admin/analytics?*", held)
        await analytics.get_by_label("To").fill("2026-12-01")
        await analytics.get_by_role("button", name="Show").click()
        await expect(analytics.get_by_role("button", name="Show")).to_be_disabled()
        await expect(staff.locator("#analytics-message")).to_be_empty()
        gate.set()
        await expect(analytics.get_by_role("button", name="Show")).to_be_enabled()
        await expect(staff.locator("#analytics")).to_be_visible()

        # One fill date: the axis spans a day either side, the table says hours.
        span = await staff.evaluate(
            """async () => {
                renderFill([{ date: "2026-11-24", resource: "lab", minutes: 2509.8 }]);
                await new Promise((done) => queueMicrotask(done)); // uPlot sets its scales
                const x = charts[charts.length - 1].scales.x;
                return [x.min, x.max, x.max - x.min];
            }"""
        )
        assert span[2] == 2 * 86400, span
        await expect(staff.locator("#table-fill tbody td")).to_have_text(["ReRo lab", "41.8"])

        # A typed SRN is trimmed and upper-cased; one with no record is a 404, said so.
        students = staff.locator("#students-section")
        await students.get_by_label("SRN").fill(f"  {SRNS[ADMIN].lower()} ")
        await students.get_by_role("button", name="Look up").click()
        await expect(staff.locator("#student-title")).to_have_text(SRNS[ADMIN])
        await students.get_by_label("SRN").fill("nobody")
        await students.get_by_role("button", name="Look up").click()
        await expect(staff.locator("#students-message")).to_have_text("No record of student NOBODY")
        await expect(staff.locator("#student")).to_be_hidden()

        # A blank reason is not sent.
        closing = staff.locator("#blackout-form")
        await closing.get_by_label("Start time").fill("09:00")
        await closing.get_by_label("End time").fill("10:00")
        await closing.get_by_label("Reason").fill("   ")
        await closing.get_by_role("button", name="Add blackout").click()
        await expect(staff.locator("#blackouts-message")).to_have_text("Enter a reason.")
        await expect(staff.locator("#month button.closed")).to_have_count(0)

        # Signed out in another tab: the export says so instead of throwing.
        await staff.evaluate("() => { session = null; }")
        await staff.get_by_role("button", name="Export CSV").click()
        await expect(staff.locator("#audit-message")).to_have_text(
            "Your session has ended. Please sign in again."
        )
    assert [e for e in errors if e not in refusals(errors)] == []
    assert len(refusals(errors)) == 2  # the 422 (dates) and the 404 (SRN)


async def test_a_failed_role_check_retries_and_the_board_fits_a_phone(
    browser: Browser, settings: Settings, shots: Path
) -> None:
    errors: list[str] = []
    failing = [True]

    async def down(route: Route) -> None:
        if failing[0]:
            await route.fulfill(status=500, json={"detail": "Internal server error"})
        else:
            await route.continue_()

    async def prepare(page: Page) -> None:
        await page.route("**/admin/students/*", down)

    async with running(browser, staffed(settings)) as lab:
        await book_today(lab, 14)
        staff = await console(lab, ASSISTANT, errors, width=390, prepare=prepare)
        await expect(staff.locator("#check-message")).to_have_text(
            "Could not check your role: Internal server error"
        )
        await expect(staff.locator("#role")).to_have_text("not checked")
        failing[0] = False
        await staff.get_by_role("button", name="Retry").click()
        await expect(staff.locator("#role")).to_have_text("assistant")
        await expect(staff.locator("#check")).to_be_hidden()
        # On a phone each slot is a card: its Cancel button is on screen, nothing scrolls.
        cancel = row(staff, 14).get_by_role("button", name="Cancel")
        box = await cancel.bounding_box()
        assert box is not None
        assert box["x"] + box["width"] <= 390
        await expect(row(staff, 14).locator("td").first).to_have_attribute("data-label", "Time")
        assert await staff.evaluate("document.documentElement.scrollWidth") == 390
        await staff.screenshot(path=shots / "console-phone-board.png")
    assert refusals(errors) == [
        "Failed to load resource: the server responded with a status of 500 (Internal Server Error)"
    ]
    assert len(errors) == 1


async def test_an_overnight_blackout_on_the_calendar_of_its_resource(
    browser: Browser, settings: Settings
) -> None:
    errors: list[str] = []
    both = (ResourceConfig("lab", name="ReRo lab", default=True), CAGE)
    async with running(browser, staffed(settings, resources=both)) as lab:
        staff = await console(lab, ASSISTANT, errors)
        closing = staff.locator("#blackout-form")
        await expect(closing.get_by_label("End date")).to_have_value("2026-11-24")
        await closing.get_by_label("Start time").fill("22:00")
        await closing.get_by_label("End date").fill("2026-11-25")
        await closing.get_by_label("End time").fill("06:00")
        await closing.get_by_label("Reason").fill("Overnight cleaning")
        await closing.get_by_role("button", name="Add blackout").click()
        await expect(staff.locator("#blackouts-message")).to_have_text(
            "Closed ReRo lab from Tue, 24 Nov 2026, 22:00 to Wed, 25 Nov 2026, 06:00: "
            "Overnight cleaning. Cancelled 0 bookings."
        )
        await expect(staff.locator("#month button.closed")).to_have_count(2)
        # The calendar is the chosen resource's: the cage is open on both days.
        await closing.get_by_label("Resource").select_option(label="Drone cage")
        await expect(staff.locator("#month button.closed")).to_have_count(0)
        await expect(staff.locator("#blackout-list")).to_have_text("None this month.")
        await expect(staff.locator("#blackout-list-title")).to_have_text(
            "Drone cage: blackouts this month"
        )
        # The audit trail names who closed it.
        await staff.get_by_label("Action").fill("blackout_added")
        await staff.get_by_role("button", name="Search").click()
        await expect(staff.locator("#audit-table tbody tr td").nth(3)).to_have_text(SRNS[ASSISTANT])
    assert errors == []
