"""The board page in a real browser: Debian's Chromium driven headless by Playwright.

Two browser contexts are two students on the same server board. Skipped where Chromium or
Playwright is missing, unless ``RERO_REQUIRE_BROWSER=1`` (CI sets it: there a missing
browser is a failure). Screenshots go to ``RERO_SCREENSHOTS`` (default: the test's
temporary folder).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import CHROMIUM, ByteCounter, Server, eventually, outside_booking, start_server

REQUIRED = os.environ.get("RERO_REQUIRE_BROWSER") == "1"
A_USER = ("user0", "pw-0")  # the test server's fake users (start_server in tests/helpers.py)
B_USER = ("user1", "pw-1")
SLOT_9 = "09:00\u201310:00"  # as the page writes it, with an en dash
BOOK = re.compile(r"^Book ")  # a free slot's Book button (beside its Hold)

pytestmark = pytest.mark.browser

if not REQUIRED and not Path(CHROMIUM).exists():
    pytest.skip("no Chromium here (CI installs it)", allow_module_level=True)
if not REQUIRED:
    pytest.importorskip("playwright")

from playwright.async_api import Browser, Page, expect  # noqa: E402


async def open_board(browser: Browser, url: str, **context: Any) -> Page:
    page = await (await browser.new_context(**context)).new_page()
    await page.goto(url + "/board")
    await expect(page.locator("#status")).to_have_attribute("data-state", "live")
    # The calendar shows today first, where slot 9 may have ended: these tests use tomorrow.
    tomorrow = page.locator("#dates button").nth(1)
    await tomorrow.click()
    await expect(tomorrow).to_have_attribute("aria-current", "true")
    return page


async def sign_in(page: Page, user: tuple[str, str]) -> None:
    await page.get_by_label("Username").fill(user[0])
    await page.get_by_label("Password").fill(user[1])
    await page.get_by_role("button", name="Sign in").click()


def slot(page: Page, slot_id: int) -> Any:
    return page.locator(f'li[data-slot="{slot_id}"]')


async def test_two_students_book_and_cancel_live(
    browser: Browser, server: Server, shots: Path
) -> None:
    a = await open_board(browser, server.url, viewport={"width": 1100, "height": 820})
    b = await open_board(browser, server.url, viewport={"width": 390, "height": 844})  # a phone
    await expect(a.locator("#slots li")).to_have_count(12)
    await expect(slot(a, 9).locator(".time")).to_have_text(SLOT_9)
    await sign_in(a, A_USER)
    await expect(a.locator("#who")).to_have_text("User 0")
    await sign_in(b, B_USER)
    await expect(b.locator("#who")).to_have_text("User 1")

    # A books slot 9; B sees it taken within one second, without a reload.
    await slot(a, 9).get_by_role("button", name=f"Book {SLOT_9}").click()
    await expect(slot(b, 9)).to_have_attribute("data-state", "taken", timeout=1000)
    await expect(slot(a, 9)).to_have_attribute("data-state", "mine")
    # The calendar names the resource and the date (in the browser's language).
    await expect(a.locator("#message")).to_have_text(
        re.compile(f"^Booked ReRo lab, .+, {SLOT_9}\\.$")
    )
    await expect(a.locator("#mine")).to_have_text(re.compile(f"^ReRo lab, .+, {SLOT_9} Cancel$"))
    await expect(b.locator("#announce")).to_contain_text(f"Slot {SLOT_9} is now booked.")
    await a.screenshot(path=shots / "board.png")

    # B may only wait for it: the taken slot offers its waitlist, not Book.
    await expect(slot(b, 9).get_by_role("button")).to_have_text("Join waitlist")
    await b.screenshot(path=shots / "board-phone-taken.png", full_page=True)

    # A cancels; B sees it free again.
    await slot(a, 9).get_by_role("button", name=f"Cancel {SLOT_9}").click()
    await expect(slot(b, 9)).to_have_attribute("data-state", "free", timeout=1000)
    await expect(a.locator("#mine")).to_have_text("None yet.")

    # No password anywhere in the page's storage: only the session token.
    stored = await a.evaluate("JSON.stringify(localStorage)")
    assert A_USER[1] not in stored
    assert "token" in stored
    assert await a.get_by_label("Password").input_value() == ""


async def test_a_bad_password_shows_the_error(
    browser: Browser, server: Server, shots: Path
) -> None:
    page = await open_board(browser, server.url)
    await sign_in(page, ("user0", "wrong-password"))
    await expect(page.locator("#message")).to_have_text("Wrong username or password.")
    await expect(page.locator("#signin")).to_be_visible()
    await page.screenshot(path=shots / "board-bad-password.png")


async def test_keyboard_booking_and_sign_out(browser: Browser, server: Server) -> None:
    page = await open_board(browser, server.url)
    await page.get_by_label("Username").focus()
    await page.keyboard.type(B_USER[0])
    await page.keyboard.press("Tab")
    await page.keyboard.type(B_USER[1])
    await page.keyboard.press("Enter")
    await expect(page.locator("#who")).to_have_text("User 1")
    button = slot(page, 4).get_by_role("button", name=BOOK)
    await button.focus()
    await page.keyboard.press("Enter")
    await expect(slot(page, 4)).to_have_attribute("data-state", "mine")
    # The session survives a reload (token, not password) ...
    await page.reload()
    await expect(page.locator("#who")).to_have_text("User 1")
    await expect(slot(page, 4)).to_have_attribute("data-state", "mine")
    # ... and signing out revokes it on the server too.
    key = f"rero.session:{server.url}"  # one session per server, never sent to another
    token = await page.evaluate(f"JSON.parse(localStorage.getItem('{key}')).token")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.locator("#signin")).to_be_visible()
    resp = await page.request.post(
        server.url + "/my-bookings", headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status == 401
    await slot(page, 5).get_by_role("button", name=BOOK).click()
    await expect(page.locator("#message")).to_have_text("Sign in to book a slot.")


async def test_reconnects_and_rereads_the_board(browser: Browser, tmp_path: Path) -> None:
    srv = start_server(tmp_path)
    page = await open_board(browser, srv.url)
    # Show the date of slot 5's next occurrence: today, unless its slot 5 has ended.
    await page.locator("#dates button").first.click()
    await expect(slot(page, 5)).to_have_count(1)
    if await slot(page, 5).get_attribute("data-reason") == "ended":
        tomorrow = page.locator("#dates button").nth(1)
        await tomorrow.click()
        await expect(tomorrow).to_have_attribute("aria-current", "true")
    srv.proc.terminate()
    srv.proc.wait(10)
    await expect(page.locator("#status")).to_have_attribute("data-state", "offline")
    await expect(page.locator("#status-text")).to_contain_text("retrying in")
    # While it is down, the board changes behind its back.
    outside_booking(tmp_path / "rero.db", 5, "SRN0007")
    port = srv.url.rsplit(":", 1)[1]
    again = start_server(tmp_path, PORT=port)
    try:
        await expect(page.locator("#status")).to_have_attribute("data-state", "live", timeout=20000)
        await expect(slot(page, 5)).to_have_attribute("data-state", "taken")
    finally:
        again.proc.terminate()
        try:
            again.proc.wait(10)
        except subprocess.TimeoutExpired:
            again.proc.kill()


async def test_page_is_served_offline_with_its_assets(browser: Browser, server: Server) -> None:
    page = await (await browser.new_context()).new_page()
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(server.url) else outside.append(r.url))
    resp = await page.goto(server.url + "/board")
    assert resp is not None
    assert resp.status == 200
    assert "default-src 'self'" in resp.headers["content-security-policy"]
    await expect(page.locator("#status")).to_have_attribute("data-state", "live")
    assert outside == []
    await page.get_by_role("button", name="Help").click()
    await expect(page.locator("#help")).to_contain_text("board_servers")
    await expect(page.get_by_label("Server")).to_be_hidden()  # none configured


async def test_yours_without_booked_by_on_the_board(browser: Browser, tmp_path: Path) -> None:
    """A server that hides who booked what (show_booked_by = false): the page asks for
    its own bookings with its token."""
    srv = start_server(tmp_path, profile="show_booked_by = false")
    try:
        a = await open_board(browser, srv.url)
        b = await open_board(browser, srv.url)
        await sign_in(a, A_USER)
        await expect(a.locator("#who")).to_have_text("User 0")
        await slot(a, 7).get_by_role("button", name=BOOK).click()
        await expect(slot(a, 7)).to_have_attribute("data-state", "mine")
        await expect(slot(b, 7)).to_have_attribute("data-state", "taken")
        await expect(a.locator("#mine")).to_contain_text("07:00\u201308:00")
    finally:
        srv.proc.terminate()
        srv.proc.wait(10)


async def test_limits_and_throttling_are_explained(browser: Browser, tmp_path: Path) -> None:
    profile = "max_bookings_per_user = 2\nmax_failed_logins_per_user = 2\n"
    srv = start_server(tmp_path, profile=profile)
    try:
        page = await open_board(browser, srv.url)
        for _ in range(2):
            await sign_in(page, ("user2", "wrong"))
            await expect(page.locator("#message")).to_have_text("Wrong username or password.")
            await expect(page.get_by_role("button", name="Sign in")).to_be_enabled()
        await sign_in(page, ("user2", "wrong"))
        await expect(page.locator("#message")).to_contain_text("Too many failed attempts")
        await sign_in(page, A_USER)
        await expect(page.locator("#who")).to_have_text("User 0")
        for slot_id in (3, 4):
            await slot(page, slot_id).get_by_role("button", name=BOOK).click()
            await expect(slot(page, slot_id)).to_have_attribute("data-state", "mine")
        await slot(page, 5).get_by_role("button", name=BOOK).click()
        # max_bookings_per_user is max_upcoming_bookings now, with the calendar's sentence.
        await expect(page.locator("#message")).to_have_text(
            "Booking limit reached: at most 2 upcoming"
        )
    finally:
        srv.proc.terminate()
        srv.proc.wait(10)


async def test_sign_in_service_down_is_not_a_wrong_password(
    browser: Browser, tmp_path: Path
) -> None:
    srv = start_server(
        tmp_path, AUTH_BACKEND="pesu", PESU_AUTH_URL="http://127.0.0.1:9/authenticate"
    )
    try:
        page = await open_board(browser, srv.url)
        await sign_in(page, A_USER)
        await expect(page.locator("#message")).to_have_text(
            "The PESU sign-in service is unavailable right now. Try again in a minute."
        )
    finally:
        srv.proc.terminate()
        srv.proc.wait(10)


# ---- which servers the page talks to ---------------------------------------------------------


async def live_and_silent(page: Page, other: ByteCounter) -> None:
    """Wait until the page is live on its own server, or ``other`` has been contacted;
    then ``other`` must have had nothing at all, not even a connection."""

    async def settled() -> bool:
        state = await page.locator("#status").get_attribute("data-state")
        return bool(other.connections) or state == "live"

    await eventually(settled, 10, what="the page live, or the other server contacted")
    assert (other.connections, other.received) == (0, 0), (
        f"the other server had {other.connections} connections, {other.received} bytes"
    )


async def test_a_server_parameter_sends_nothing_to_that_server(
    browser: Browser, server: Server
) -> None:
    """A crafted ``/board?server=X`` link once made the page send X the password on
    sign-in and the token on every later visit. X must not hear a single byte."""
    async with ByteCounter() as other:
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(f"{server.url}/board?server={other.url}")
        await live_and_silent(page, other)
        await sign_in(page, A_USER)
        await expect(page.locator("#who")).to_have_text("User 0")
        await live_and_silent(page, other)
        # A later plain visit in the same browser: signed in (its own server took the
        # token), and still nothing for the other server.
        later = await context.new_page()
        await later.goto(server.url + "/board")
        await expect(later.locator("#who")).to_have_text("User 0")
        await live_and_silent(later, other)
        # Even a script on the page could not reach it: the CSP refuses the connection.
        tried = "url => fetch(url).then(() => 'sent', () => 'refused')"
        assert await later.evaluate(tried, other.url) == "refused"
        assert (other.connections, other.received) == (0, 0)


async def test_a_server_stored_by_an_older_page_is_forgotten(
    browser: Browser, server: Server
) -> None:
    """The old page kept a free-form server (``rero.server``) and one session for it
    (``rero.session``); the page discards both on load and stays on its own server."""
    async with ByteCounter() as other:
        page = await open_board(browser, server.url)
        old_session = {"token": "old-token", "expires_at": "2999-01-01T00:00:00Z",
                       "user": {"name": "Old", "srn": "SRN0001"}}  # fmt: skip
        await page.evaluate(
            "([server, session]) => { localStorage.setItem('rero.server', server);"
            " localStorage.setItem('rero.session', session); }",
            [other.url, json.dumps(old_session)],
        )
        await page.reload()
        await live_and_silent(page, other)
        await expect(page.locator("#signin")).to_be_visible()
        assert await page.evaluate("Object.keys(localStorage)") == []


async def test_configured_servers_are_offered_each_with_its_own_token(
    browser: Browser, server: Server, tmp_path: Path
) -> None:
    """``board_servers`` lists another server: the page offers it, its CSP allows it, and
    a token of one server is never sent to the other."""
    other = server  # a second rero server, the one the operator configured
    (tmp_path / "home").mkdir()
    home = start_server(tmp_path / "home", profile=f'board_servers = ["{other.url}"]')
    try:
        page = await (await browser.new_context()).new_page()
        sent: list[tuple[str, str | bytes]] = []
        page.on("websocket", lambda ws: ws.on("framesent", lambda f: sent.append((ws.url, f))))
        resp = await page.goto(home.url + "/board")
        assert resp is not None
        other_ws = other.url.replace("http:", "ws:", 1)
        assert (
            f"connect-src 'self' {other.url} {other_ws};" in resp.headers["content-security-policy"]
        )
        chooser = page.get_by_label("Server")
        await expect(chooser.locator("option")).to_have_text(["This server", other.url])
        await expect(chooser).to_have_value(home.url)
        await expect(page.locator("#status")).to_have_attribute("data-state", "live")
        await sign_in(page, A_USER)
        await expect(page.locator("#who")).to_have_text("User 0")
        home_token = await page.evaluate(
            f"JSON.parse(localStorage['rero.session:{home.url}']).token"
        )

        # To the other server: not signed in there, and the home token never sent to it.
        await chooser.select_option(other.url)
        await expect(chooser).to_have_value(other.url)
        await expect(page.locator("#status")).to_have_attribute("data-state", "live")
        await expect(page.locator("#signin")).to_be_visible()
        await sign_in(page, B_USER)
        await expect(page.locator("#who")).to_have_text("User 1")
        other_token = await page.evaluate(
            f"JSON.parse(localStorage['rero.session:{other.url}']).token"
        )
        to_other = [str(f) for url, f in sent if url.startswith(other_ws)]
        assert any('"authenticate"' in f for f in to_other)  # the frames were seen
        assert [f for f in to_other if home_token in f] == []

        # Back home: still signed in there, with the home token only.
        await chooser.select_option(home.url)
        await expect(page.locator("#who")).to_have_text("User 0")
        home_ws = home.url.replace("http:", "ws:", 1)

        def to_home() -> list[str]:
            return [str(f) for url, f in sent if url.startswith(home_ws)]

        # #who shows the stored session before the socket opens and sends its token.
        await eventually(lambda: any(home_token in f for f in to_home()), 10, what="token home")
        assert [f for f in to_home() if other_token in f] == []

        # ?server= may preselect a configured server, and only that.
        await page.goto(f"{home.url}/board?server={other.url}")
        await expect(chooser).to_have_value(other.url)
        await expect(page.locator("#who")).to_have_text("User 1")
    finally:
        home.proc.terminate()
        home.proc.wait(10)
