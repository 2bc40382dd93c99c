"""Notifications delivered through a real SMTP server (aiosmtpd), on both stores: each
message once, to the right address, with the right subject (and the booking's .ics);
reminders, and the reminder of a cancelled booking never sent; staff and blackout
cancellations with their reason; waitlist offers, no-shows, suspensions; a server that
refuses is retried, then dead-lettered (counted in /health and /metrics)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from icalendar import Calendar

from rero.keys import HOUR, MAILER, STORAGE
from rero.mailer import Policy
from rero.storage.outbox_programs import pending
from tests.helpers import (
    ALICE,
    ALICE_SRN,
    ARM,
    BOB,
    CAGE,
    TODAY,
    TOMORROW,
    Clock,
    Inbox,
    bearer,
    code_in,
    eventually,
    login,
    text_of,
)

ADDRESS = "bob@students.example.edu"
WHEN = "Robot arm 1, Wed 2026-11-25"


@pytest.fixture
async def lab(database: dict[str, str], make: Any, settings: Any, inbox: Inbox) -> Any:
    return await make(
        **database, resources=(ARM, CAGE), admins=(ALICE_SRN,), no_show_limit=2,
        session_minutes=48 * 60.0, smtp_host="127.0.0.1", smtp_port=inbox.port,
        smtp_starttls=False, mail_from="rero@lab.example.edu",
        public_url="https://rero.example.edu",
    )  # fmt: skip


async def call(lab: Any, method: str, path: str, token: str, body: Any = None) -> Any:
    resp = await lab.request(method, path, json=body, headers=bearer(token))
    return resp.status, await resp.json()


async def subscribed(lab: Any, inbox: Inbox, **choices: Any) -> str:
    """Bob, signed in, with a verified address; his session token."""
    bob = await login(lab, BOB)
    body = {"email": ADDRESS, **choices}
    assert (await call(lab, "PUT", "/me/notifications", bob, body))[0] == 200
    code = code_in(inbox.to(ADDRESS)[-1])
    assert (await call(lab, "POST", "/me/notifications/verify", bob, {"code": code}))[0] == 200
    return bob


async def book(lab: Any, token: str, resource: str, day: str, slot_id: int) -> int:
    body = {"resource": resource, "date": day, "slot_id": slot_id}
    status, made = await call(lab, "POST", "/bookings", token, body)
    assert status == 201, made
    return int(made["booking"]["id"])


async def unleased(lab: Any) -> bool:
    rows = await lab.app[STORAGE].perform(_leased())
    return not rows


def _leased() -> Any:
    return (yield ("SELECT id FROM mail_queue WHERE lease_until IS NOT NULL", {}))


async def subjects(lab: Any, inbox: Inbox, count: int) -> list[str]:
    """Deliver what is due until ``count`` messages reached Bob (the code is the first);
    one more round sends no other: each arrives once. Their subjects, after the code's."""
    mailer = lab.app[MAILER]
    await mailer.run_once()
    await eventually(lambda: len(inbox.to(ADDRESS)) >= count, what=f"{count} messages")
    await mailer.run_once()
    # The app's own mail loop may hold a lease still: settled before the test moves on
    # (a clock moved past a lease in flight would send that message again).
    await eventually(lambda: unleased(lab), what="every message settled")
    # A long subject is folded onto the next line: its leading space is no part of it.
    got = [str(m["Subject"]).strip() for m in inbox.to(ADDRESS)]
    assert len(got) == count, got
    return got[1:]


async def test_a_booking_is_confirmed_once_with_its_event(lab: Any, inbox: Inbox) -> None:
    bob = await subscribed(lab, inbox)
    alice = await login(lab, ALICE)  # no address: nothing is written for her
    booking_id = await book(lab, bob, "arm-1", TOMORROW, 10)
    await book(lab, alice, "arm-1", TOMORROW, 11)
    assert await subjects(lab, inbox, 2) == [f"Booked: {WHEN}, 10:00-11:00 (Asia/Kolkata)"]
    mail = inbox.to(ADDRESS)[-1]
    assert mail["To"] == ADDRESS
    assert mail["Message-ID"].endswith(".confirmation@rero.example.edu>")
    assert mail["X-Rero-Event-Id"] in mail["Message-ID"]
    text = text_of(mail)
    assert text.startswith("Hello Bob Iyer,")
    assert "Your booking of Robot arm 1 is confirmed" in text
    link = mail["List-Unsubscribe"].strip("<>")
    assert link in text
    html = mail.get_body(("html",))
    assert html is not None
    assert link in html.get_content()
    (attachment,) = list(mail.iter_attachments())
    assert attachment.get_filename() == "booking.ics"
    assert attachment.get_content_type() == "text/calendar"
    (event,) = Calendar.from_ical(attachment.get_content()).walk("VEVENT")
    assert str(event["SUMMARY"]) == "Robot arm 1"
    assert event.decoded("DTSTART").isoformat() == "2026-11-25T10:00:00+05:30"
    assert str(event["UID"]) == f"booking-{booking_id}@rero.example.edu"
    # The student's events are no lab's: no webhook or socket of the resource sees them.
    store = lab.app[STORAGE]
    assert await store.perform(pending(["arm-1"])) == {}
    assert await store.perform(_told()) == [("booked", None, "PES1UG22EC002")]


def _told() -> Any:
    rows = yield ("SELECT kind, resource, srn FROM outbox WHERE kind = 'booked'", {})
    return [tuple(r) for r in rows]


async def test_reminders_and_cancellations(lab: Any, inbox: Inbox, clock: Clock) -> None:
    bob = await subscribed(lab, inbox, reminder_minutes=30)
    alice = await login(lab, ALICE)
    kept = await book(lab, bob, "arm-1", TOMORROW, 10)
    mine = await book(lab, bob, "arm-1", TOMORROW, 11)
    assert len(await subjects(lab, inbox, 3)) == 2
    # Cancelled by its holder: no message, and its reminder goes with it.
    assert (await call(lab, "DELETE", f"/bookings/{mine}", bob))[0] == 200
    await subjects(lab, inbox, 3)
    clock.advance(hours=24, minutes=59)  # 09:29 tomorrow: not yet
    await subjects(lab, inbox, 3)
    clock.advance(minutes=1)  # 09:30: thirty minutes before 10:00
    assert (await subjects(lab, inbox, 4))[-1] == f"Reminder: {WHEN}, 10:00-11:00 (Asia/Kolkata)"
    text = text_of(inbox.to(ADDRESS)[-1])
    assert "starts at Wed 2026-11-25 10:00 (Asia/Kolkata)." in text
    assert "minutes" not in text
    clock.advance(hours=1)  # 10:30 and later: staff cancel, a blackout closes the lab
    alice = await login(lab, ALICE)
    assert (await call(lab, "DELETE", f"/bookings/{kept}", alice))[0] == 200
    late = await book(lab, bob, "arm-1", TOMORROW, 13)
    closing = {"resource": "arm-1", "start": f"{TOMORROW}T13:00:00+05:30",
               "end": f"{TOMORROW}T14:00:00+05:30", "reason": "inspection"}  # fmt: skip
    assert (await call(lab, "POST", "/admin/blackouts", alice, closing))[0] == 201
    got = await subjects(lab, inbox, 7)
    assert got[-3:] == [
        f"Cancelled: {WHEN}, 10:00-11:00 (Asia/Kolkata)",
        f"Booked: {WHEN}, 13:00-14:00 (Asia/Kolkata)",
        f"Cancelled: {WHEN}, 13:00-14:00 (Asia/Kolkata)",
    ]
    staff, blackout = (text_of(m) for m in (inbox.to(ADDRESS)[-3], inbox.to(ADDRESS)[-1]))
    assert "No reason was given." in staff
    assert "Reason: the lab is closed: inspection." in blackout
    assert late > kept


async def test_offers_no_shows_and_suspensions(lab: Any, inbox: Inbox, clock: Clock) -> None:
    bob = await subscribed(lab, inbox)
    alice = await login(lab, ALICE)
    taken = await book(lab, alice, "cage", TOMORROW, 20)
    target = {"resource": "cage", "date": TOMORROW, "slot_id": 20}
    assert (await call(lab, "POST", "/waitlist", bob, target))[0] == 201
    assert (await call(lab, "DELETE", f"/bookings/{taken}", alice))[0] == 200
    offer = await subjects(lab, inbox, 2)
    assert offer == [
        "A slot is free for you: Drone cage, Wed 2026-11-25, 10:00-10:30 (Asia/Kolkata)"
    ]
    assert "held for you until Tue 2026-11-24 08:35 (Asia/Kolkata)" in text_of(
        inbox.to(ADDRESS)[-1]
    )
    for slot_id in (9, 10):  # no_show_limit = 2
        await book(lab, bob, "arm-1", TODAY, slot_id)
    await subjects(lab, inbox, 4)
    clock.advance(hours=2)  # 10:30: both missed
    await lab.app[HOUR].sweep()
    got = await subjects(lab, inbox, 7)
    assert got[1:3] == [
        "Booked: Robot arm 1, Tue 2026-11-24, 09:00-10:00 (Asia/Kolkata)",
        "Booked: Robot arm 1, Tue 2026-11-24, 10:00-11:00 (Asia/Kolkata)",
    ]
    assert sorted(got[-3:]) == [
        "Booking suspended until Tue 2026-12-01 10:30 (Asia/Kolkata)",
        "No-show recorded: Robot arm 1, Tue 2026-11-24, 09:00-10:00 (Asia/Kolkata)",
        "No-show recorded: Robot arm 1, Tue 2026-11-24, 10:00-11:00 (Asia/Kolkata)",
    ]


async def test_a_refusing_server_is_retried_then_dead_lettered(
    lab: Any, inbox: Inbox, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    bob = await subscribed(lab, inbox, events={"reminder": False})
    mailer = lab.app[MAILER]
    mailer.policy = Policy(max_attempts=3, first_retry=10.0, longest_retry=10.0)
    inbox.refusing = True
    await book(lab, bob, "arm-1", TOMORROW, 10)
    for attempt in (1, 2, 3):
        await mailer.run_once()
        await eventually(lambda: inbox.refused >= attempt, what=f"attempt {attempt}")  # noqa: B023
        await eventually(lambda: unleased(lab), what="the attempt settled")  # by either loop
        clock.advance(seconds=10)
    await mailer.run_once()
    assert inbox.refused == 3
    health = await (await lab.get("/health")).json()
    assert health["mail"] == {"configured": True, "pending": 0, "dead": 1}
    metrics = await (await lab.get("/metrics")).text()
    assert 'rero_operations_total{action="mail",outcome="dead"} 1.0' in metrics
    assert 'rero_operations_total{action="mail",outcome="retried"} 2.0' in metrics
    assert 'rero_mail_messages{state="dead"} 1.0' in metrics  # as /health counted
    assert 'rero_mail_messages{state="pending"} 0.0' in metrics
    # The server's answer names the recipient: the log masks it, as everywhere.
    ours = [r for r in caplog.records if r.name.startswith("rero")]
    gave_up = [r for r in ours if r.getMessage() == "mail gave up"]
    assert [vars(r)["error"] for r in gave_up] == [
        "SMTPDataError: (451, '4.3.0 Mailbox b***@students.example.edu busy, try again later')"
    ]
    assert ADDRESS not in " ".join(f"{r.getMessage()} {r.__dict__}" for r in ours)
    inbox.refusing = False  # dead is dead: nothing more is tried
    clock.advance(hours=1)
    await subjects(lab, inbox, 1)


async def test_a_confirmed_hold_is_a_booking_confirmed(lab: Any, inbox: Inbox) -> None:
    bob = await subscribed(lab, inbox, events={"reminder": False})
    target = {"resource": "arm-1", "date": TOMORROW, "slot_id": 12}
    status, held = await call(lab, "POST", "/holds", bob, target)
    assert status == 201, held
    assert await subjects(lab, inbox, 1) == []  # a hold is no booking yet
    hold_id = held["hold"]["id"]
    assert (await call(lab, "POST", f"/holds/{hold_id}/confirm", bob))[0] == 201
    assert await subjects(lab, inbox, 2) == [f"Booked: {WHEN}, 12:00-13:00 (Asia/Kolkata)"]


async def test_a_commit_wakes_the_mail_loop(lab: Any, inbox: Inbox) -> None:
    """A booking's confirmation goes at once, not at the loop's next poll."""
    bob = await subscribed(lab, inbox, events={"reminder": False})
    mailer = lab.app[MAILER]
    mailer.policy = replace(mailer.policy, poll=3600.0)  # from its next wait on
    await book(lab, bob, "arm-1", TOMORROW, 10)
    await eventually(lambda: len(inbox.to(ADDRESS)) == 2, what="the first confirmation")
    await book(lab, bob, "arm-1", TOMORROW, 11)  # the loop waits an hour unless woken
    await eventually(lambda: len(inbox.to(ADDRESS)) == 3, what="the second confirmation")
