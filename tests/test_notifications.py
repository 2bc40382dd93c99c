"""Email notification settings over HTTP on both stores, with a real SMTP server: the
address is used only once the code mailed to it is entered (15 minutes, 5 tries); codes
are rationed; the code is never logged; the unsubscribe link turns everything off."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

import pytest

from rero.keys import MAILER, STORAGE
from rero.mailer import Policy
from rero.notifications import code_hash
from tests.helpers import (
    ALICE,
    BOB,
    BOB_SRN,
    Clock,
    Inbox,
    bearer,
    code_in,
    login,
    text_of,
)
from tests.test_mail_failures import Hanging

ADDRESS = "bob@students.example.edu"
ALL_ON = dict.fromkeys(
    ("confirmation", "reminder", "cancellation", "waitlist", "no_show", "suspension"), True
)
AGAIN = "ask for a new one with PUT /me/notifications"


def mailing(inbox: Inbox) -> dict[str, Any]:
    return {
        "smtp_host": "127.0.0.1", "smtp_port": inbox.port, "smtp_starttls": False,
        "mail_from": "rero@lab.example.edu", "public_url": "https://rero.example.edu",
    }  # fmt: skip


@pytest.fixture
async def lab(make: Any, database: dict[str, str], inbox: Inbox) -> Any:
    return await make(**database, **mailing(inbox))


async def call(lab: Any, method: str, path: str, token: str | None, body: Any = None) -> Any:
    headers = bearer(token) if token else {}
    resp = await lab.request(method, path, json=body, headers=headers)
    return resp.status, await resp.json()


async def test_settings_before_an_address(lab: Any) -> None:
    bob = await login(lab, BOB)
    assert await call(lab, "GET", "/me/notifications", bob) == (
        200, {"email": None, "verified": False, "reminder_minutes": 60, "events": ALL_ON},
    )  # fmt: skip
    assert (await call(lab, "GET", "/me/notifications", None))[0] == 401


async def test_the_mailed_code_verifies_the_address(lab: Any, inbox: Inbox, clock: Clock) -> None:
    bob = await login(lab, BOB)
    body = {"email": ADDRESS, "reminder_minutes": 30, "events": {"no_show": False}}
    settings = {
        "email": ADDRESS, "verified": False, "reminder_minutes": 30,
        "events": {**ALL_ON, "no_show": False},
    }  # fmt: skip
    assert await call(lab, "PUT", "/me/notifications", bob, body) == (
        200, {**settings, "code_sent": True},
    )  # fmt: skip
    (mail,) = inbox.to(ADDRESS)
    assert mail["Subject"] == "Your rero verification code"
    assert mail["From"] == "rero@lab.example.edu"
    assert mail["List-Unsubscribe"].startswith("<https://rero.example.edu/notifications/")
    code = code_in(mail)
    # Nothing in the headers (which the log-only mode logs) comes from the code.
    assert code_hash(lab.app[MAILER].key, BOB_SRN, ADDRESS, code)[:8] not in str(mail["Message-ID"])
    assert await call(lab, "GET", "/me/notifications", bob) == (200, settings)
    wrong = "000000" if code != "000000" else "111111"
    assert await call(lab, "POST", "/me/notifications/verify", bob, {"code": wrong}) == (
        400, {"detail": "Wrong code, 4 tries left"},
    )  # fmt: skip
    verified = {**settings, "verified": True}
    assert await call(lab, "POST", "/me/notifications/verify", bob, {"code": code}) == (
        200, verified,
    )  # fmt: skip
    assert await call(lab, "POST", "/me/notifications/verify", bob, {"code": code}) == (
        409, {"detail": "The address is verified already"},
    )  # fmt: skip
    # Other choices for the same address: no new code, still verified.
    body = {"email": ADDRESS, "events": {"reminder": False}}
    status, changed = await call(lab, "PUT", "/me/notifications", bob, body)
    assert (status, changed["verified"], changed["code_sent"]) == (200, True, False)
    assert changed["events"] == {**ALL_ON, "reminder": False}
    assert changed["reminder_minutes"] == 60
    assert len(inbox.to(ADDRESS)) == 1
    # A changed address needs a new code, mailed to it (codes: one a minute).
    clock.advance(seconds=60)
    other = "bob.iyer@example.org"
    status, changed = await call(lab, "PUT", "/me/notifications", bob, {"email": other})
    assert (status, changed["verified"], changed["code_sent"]) == (200, False, True)
    resp = await lab.put("/me/notifications", json={"email": ADDRESS}, headers=bearer(bob))
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "60"
    assert await resp.json() == {
        "detail": "A code was mailed less than a minute ago, try again in 60 seconds"
    }
    clock.advance(seconds=60)
    new = code_in(inbox.to(other)[-1])
    assert (await call(lab, "POST", "/me/notifications/verify", bob, {"code": new}))[1]["verified"]


async def test_five_tries_then_a_new_code(lab: Any, inbox: Inbox, clock: Clock) -> None:
    bob = await login(lab, BOB)
    assert (await call(lab, "PUT", "/me/notifications", bob, {"email": ADDRESS}))[0] == 200
    code = code_in(inbox.to(ADDRESS)[-1])
    wrong = "000000" if code != "000000" else "111111"
    answers = [await call(lab, "POST", "/me/notifications/verify", bob, {"code": wrong})
               for _ in range(5)]  # fmt: skip
    assert [a[1]["detail"] for a in answers] == [
        "Wrong code, 4 tries left", "Wrong code, 3 tries left", "Wrong code, 2 tries left",
        "Wrong code, 1 tries left", f"Wrong code, no tries left: {AGAIN}",
    ]  # fmt: skip
    # Even the right code is no use now.
    assert await call(lab, "POST", "/me/notifications/verify", bob, {"code": code}) == (
        409, {"detail": f"No code is waiting: {AGAIN}"},
    )  # fmt: skip
    clock.advance(seconds=61)
    assert (await call(lab, "PUT", "/me/notifications", bob, {"email": ADDRESS}))[0] == 200
    fresh = code_in(inbox.to(ADDRESS)[-1])
    assert (await call(lab, "POST", "/me/notifications/verify", bob, {"code": fresh}))[0] == 200


async def test_a_code_expires_after_fifteen_minutes(lab: Any, inbox: Inbox, clock: Clock) -> None:
    bob = await login(lab, BOB)
    await call(lab, "PUT", "/me/notifications", bob, {"email": ADDRESS})
    code = code_in(inbox.to(ADDRESS)[-1])
    clock.advance(minutes=15)
    assert await call(lab, "POST", "/me/notifications/verify", bob, {"code": code}) == (
        409, {"detail": f"The code has expired: {AGAIN}"},
    )  # fmt: skip
    assert await call(lab, "POST", "/me/notifications/verify", bob, {"code": code}) == (
        409, {"detail": f"No code is waiting: {AGAIN}"},
    )  # fmt: skip


async def test_ten_codes_a_day(lab: Any, inbox: Inbox, clock: Clock) -> None:
    bob = await login(lab, BOB)
    for _ in range(10):
        bob = await login(lab, BOB)  # a session lasts less than the ten codes' time
        assert (await call(lab, "PUT", "/me/notifications", bob, {"email": ADDRESS}))[0] == 200
        clock.advance(minutes=16)  # expired: the same address gets a new code
    status, body = await call(lab, "PUT", "/me/notifications", bob, {"email": ADDRESS})
    assert status == 429
    assert body["detail"].startswith("10 codes were mailed today, try again in ")
    assert len(inbox.to(ADDRESS)) == 10
    clock.advance(hours=24)
    bob = await login(lab, BOB)  # the session ended meanwhile
    assert (await call(lab, "PUT", "/me/notifications", bob, {"email": ADDRESS}))[0] == 200


async def test_what_is_refused(lab: Any) -> None:
    bob = await login(lab, BOB)
    assert await call(lab, "POST", "/me/notifications/verify", bob, {"code": "123456"}) == (
        404, {"detail": "No notification address: add one with PUT /me/notifications"},
    )  # fmt: skip
    for body, field, message in (
        ({"email": "not an address"}, "email", "Not a valid email address."),
        ({}, "email", "Missing data for required field."),
        ({"email": ADDRESS, "reminder_minutes": 1}, "reminder_minutes", None),
        ({"email": ADDRESS, "reminder_minutes": "30"}, "reminder_minutes", None),
        (
            {"email": ADDRESS, "events": {"confirmaton": False}},
            "events",
            "Unknown message 'confirmaton': one of confirmation, reminder, cancellation,"
            " waitlist, no_show, suspension.",
        ),
        (
            {"email": ADDRESS, "events": {"reminder": "no"}},
            "events",
            "reminder: must be true or false.",
        ),
        (
            {"email": ADDRESS, "events": {"reminder": 0}},
            "events",
            "reminder: must be true or false.",
        ),
        (
            {"email": ADDRESS, "events": [True]},
            "events",
            "Must be an object of messages and true or false.",
        ),
    ):
        status, answer = await call(lab, "PUT", "/me/notifications", bob, body)
        assert (status, list(answer["errors"])) == (422, [field]), body
        if message:
            assert answer["errors"][field] == [message]
    for code in ("12345", "1234567", "12345a", "12345\n", 123456):
        status, answer = await call(lab, "POST", "/me/notifications/verify", bob, {"code": code})
        assert (status, list(answer["errors"])) == (422, ["code"]), code
    assert (await call(lab, "PUT", "/me/notifications", None, {"email": ADDRESS}))[0] == 401
    resp = await lab.put("/me/notifications", data=b"{", headers=bearer(bob))
    assert (resp.status, await resp.json()) == (400, {"detail": "Request body must be valid JSON"})


async def test_the_code_is_never_logged(
    lab: Any, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    bob = await login(lab, BOB)
    with caplog.at_level(logging.DEBUG):
        await call(lab, "PUT", "/me/notifications", bob, {"email": ADDRESS})
        code = code_in(inbox.to(ADDRESS)[-1])
        await call(lab, "POST", "/me/notifications/verify", bob, {"code": code})
    ours = [r for r in caplog.records if r.name.startswith("rero")]  # not the test server's
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in ours)
    assert "verification code mailed" in logged
    assert code not in logged
    assert ADDRESS not in logged  # masked: b***@students.example.edu
    assert "b***@students.example.edu" in logged


async def test_without_smtp_no_address_is_taken(make: Any, database: dict[str, str]) -> None:
    """A code could never reach the student: the address is refused, not stored."""
    lab = await make(**database)
    bob = await login(lab, BOB)
    assert await call(lab, "PUT", "/me/notifications", bob, {"email": ADDRESS}) == (
        503, {"detail": "Mail is not configured on this server"},
    )  # fmt: skip
    assert (await call(lab, "GET", "/me/notifications", bob))[1]["email"] is None
    resp = await lab.get("/health")
    assert (await resp.json())["mail"] == {"configured": False, "pending": 0, "dead": 0}


async def test_a_code_only_when_one_is_needed(lab: Any, inbox: Inbox, clock: Clock) -> None:
    """Choices on an unverified address with a code waiting mail none (and are no 429);
    the same address gets a new code once none is waiting; the domain's case is no
    other address."""
    bob = await login(lab, BOB)
    status, body = await call(
        lab, "PUT", "/me/notifications", bob, {"email": "bob@Students.EXAMPLE.edu"}
    )
    assert (status, body["email"], body["code_sent"]) == (200, ADDRESS, True)
    for events in ({"reminder": False}, {"no_show": False}):
        body = {"email": ADDRESS, "events": events}
        status, changed = await call(lab, "PUT", "/me/notifications", bob, body)
        assert (status, changed["code_sent"], changed["events"]) == (
            200,
            False,
            {**ALL_ON, **events},
        )
    assert len(inbox.to(ADDRESS)) == 1
    clock.advance(minutes=15)  # expired
    status, body = await call(lab, "PUT", "/me/notifications", bob, {"email": ADDRESS})
    assert (status, body["code_sent"]) == (200, True)
    code = code_in(inbox.to(ADDRESS)[-1])
    assert (await call(lab, "POST", "/me/notifications/verify", bob, {"code": code}))[0] == 200


async def test_a_code_the_server_will_not_take(lab: Any, inbox: Inbox) -> None:
    """A recipient refused for good is the address's fault (422); a server that does
    not answer within the time is 503, not a hanging request."""
    bob = await login(lab, BOB)
    inbox.unknown.add(ADDRESS)
    status, body = await call(lab, "PUT", "/me/notifications", bob, {"email": ADDRESS})
    assert (status, body["errors"]) == (422, {"email": ["The mail server refuses this address"]})
    mailer = lab.app[MAILER]
    mailer.transport, mailer.policy = Hanging(), Policy(code_timeout=0.2)
    assert await call(lab, "PUT", "/me/notifications", bob, {"email": "bob@example.org"}) == (
        503, {"detail": "The code could not be mailed, try again later"},
    )  # fmt: skip


async def test_a_server_that_refuses_the_code(lab: Any, inbox: Inbox) -> None:
    bob = await login(lab, BOB)
    inbox.refusing = True
    assert await call(lab, "PUT", "/me/notifications", bob, {"email": ADDRESS}) == (
        503, {"detail": "The code could not be mailed, try again later"},
    )  # fmt: skip
    inbox.refusing = False  # not mailed: asking again at once is no second code
    status, body = await call(lab, "PUT", "/me/notifications", bob, {"email": ADDRESS})
    assert (status, body["code_sent"]) == (200, True)
    assert len(inbox.to(ADDRESS)) == 1


async def test_the_unsubscribe_link(lab: Any, inbox: Inbox) -> None:
    bob, alice = await login(lab, BOB), await login(lab, ALICE)
    await call(lab, "PUT", "/me/notifications", bob, {"email": ADDRESS})
    mail = inbox.to(ADDRESS)[-1]
    await call(lab, "POST", "/me/notifications/verify", bob, {"code": code_in(mail)})
    await call(lab, "PUT", "/me/notifications", alice, {"email": "alice@example.edu"})
    link = mail["List-Unsubscribe"].strip("<>")
    assert link in text_of(mail)  # the same link in the body
    path = link.removeprefix("https://rero.example.edu")
    page = await lab.get(path)
    assert page.status == 200
    assert page.content_type == "text/html"
    assert 'method="post"' in await page.text()
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'; form-action")
    assert page.headers["Referrer-Policy"] == "no-referrer"  # the token stays here
    assert (await call(lab, "GET", "/me/notifications", bob))[1]["events"] == ALL_ON  # a look
    resp = await lab.post(path, data=b"List-Unsubscribe=One-Click")
    assert resp.status == 200
    assert "Notifications off" in await resp.text()
    off = dict.fromkeys(ALL_ON, False)
    assert (await call(lab, "GET", "/me/notifications", bob))[1]["events"] == off
    assert (await call(lab, "GET", "/me/notifications", alice))[1]["events"] == ALL_ON
    for token in ("nope", "a" * 64, "<script>"):
        resp = await lab.post(f"/notifications/unsubscribe?token={token}")
        assert (resp.status, await resp.json()) == (404, {"detail": "No such unsubscribe link"})
    resp = await lab.post("/notifications/unsubscribe")
    assert resp.status == 422


async def test_two_puts_at_once(lab: Any, inbox: Inbox) -> None:
    bob = await login(lab, BOB)
    answers = await asyncio.gather(
        *(call(lab, "PUT", "/me/notifications", bob, {"email": ADDRESS}) for _ in range(2))
    )
    # They take turns: the second finds the first's code waiting and mails none.
    assert sorted((status, body["code_sent"]) for status, body in answers) == [
        (200, False), (200, True),
    ]  # fmt: skip
    status, body = await call(lab, "GET", "/me/notifications", bob)
    assert (status, body["email"], body["verified"]) == (200, ADDRESS, False)
    (code,) = [code_in(m) for m in inbox.to(ADDRESS)]
    assert (await call(lab, "POST", "/me/notifications/verify", bob, {"code": code}))[0] == 200
    assert (await call(lab, "GET", "/me/notifications", bob))[1]["verified"]


async def test_the_stored_code_is_keyed(lab: Any, inbox: Inbox) -> None:
    """The table keeps an HMAC under the database's key: with the table alone, trying
    the million codes finds none."""
    bob = await login(lab, BOB)
    await call(lab, "PUT", "/me/notifications", bob, {"email": ADDRESS})
    code = code_in(inbox.to(ADDRESS)[-1])
    ((stored,),) = await lab.app[STORAGE].perform(_stored_code())
    plain = hashlib.sha256(f"{BOB_SRN}\0{ADDRESS}\0{code}".encode()).hexdigest()
    assert stored != plain
    assert stored == code_hash(lab.app[MAILER].key, BOB_SRN, ADDRESS, code)
    assert stored != code_hash("another key", BOB_SRN, ADDRESS, code)


def _stored_code() -> Any:
    return (yield ("SELECT code_hash FROM notification_settings", {}))
