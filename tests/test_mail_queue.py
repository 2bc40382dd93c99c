"""The mail queue on both stores, below HTTP: a crash between the commit and the send
(before the dispatcher saw the event, or after a sender leased its message) still
delivers, once; what is no longer wanted at send time is not sent; an outbox row
committed late (below ids already dispatched) is mailed all the same; a message that
cannot be made fails alone; the labs' followers never see a student's events; what a
message says is escaped in its HTML part."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from rero.lab_events import LabEvents
from rero.mail_render import Renderer
from rero.mailer import LogOnly, Mailer, Policy, Smtp
from rero.outcomes import Outcomes
from rero.resources import build_lab
from rero.settings import Settings
from rero.storage import Cancel, Storage
from rero.storage.mail_programs import Mail, claim, dispatch
from rero.storage.notify_programs import unsubscribe
from rero.storage.rows import COLUMNS, booking, emit
from tests.helpers import (
    Clock,
    Inbox,
    book,
    cancel,
    one,
    text_of,
)

ADDRESS = "pes1@students.example.edu"
OTHER = "pes2@students.example.edu"
START = datetime(2030, 1, 7, 0, 0, tzinfo=timezone.utc)
NOW = START.isoformat()


def _verified(srn: str, reminder: int = 60, email: str = ADDRESS) -> Any:
    yield (
        "INSERT INTO notification_settings (srn, email, verified_at, reminder_minutes, events,"
        " unsubscribe_hash, updated_at) VALUES (:srn, :email, :at, :minutes, '{}', :hash, :at)",
        {"srn": srn, "email": email, "at": NOW, "minutes": reminder, "hash": "h-" + srn},
    )


def mailer(
    store: Storage, inbox: Inbox, settings: Settings, clock: Clock, policy: Policy | None = None
) -> Mailer:
    """A sender as a fresh process makes it: nothing in memory but its settings."""
    lab = build_lab(replace(settings, timezone="UTC"))
    render = Renderer(lab, "https://rero.example.edu", "rero@lab.example.edu", _ics)
    transport = Smtp("127.0.0.1", inbox.port, False, "", "")
    skip = store.description == "postgresql"
    how = policy or Policy()
    return Mailer(store, transport, render, clock, Outcomes(), "key", how, skip_locked=skip)


def _ics(_: Any, __: str) -> bytes:
    return b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"


def subjects(inbox: Inbox) -> list[str]:
    return [str(m["Subject"]).strip() for m in inbox.to(ADDRESS)]


async def test_a_crash_between_commit_and_send_still_delivers(
    store: Storage, inbox: Inbox, settings: Settings
) -> None:
    clock = Clock(START)
    await store.perform(_verified("PES1"))
    await one(store, book(5, "PES1", NOW))  # committed; no sender has seen it yet
    # A sender queues it and leases it, then dies before sending.
    first = mailer(store, inbox, settings, clock)
    assert await first.dispatch_once() == 1
    lease = (START + timedelta(seconds=120)).isoformat()
    assert len(await store.perform(claim(NOW, lease, 10))) == 1
    await one(store, book(6, "PES1", NOW))  # committed as the process died
    # Another process: the leased message waits for its lease, and the student's next
    # waits behind it (their messages go in order).
    second = mailer(store, inbox, settings, clock)
    await second.run_once()
    assert subjects(inbox) == []
    clock.advance(seconds=120)
    await second.run_once()
    await second.run_once()
    assert subjects(inbox) == [
        "Booked: ReRo lab, Mon 2030-01-07, 05:00-06:00 (UTC)",
        "Booked: ReRo lab, Mon 2030-01-07, 06:00-07:00 (UTC)",
    ]


async def test_what_is_no_longer_wanted_is_not_sent(
    store: Storage, inbox: Inbox, settings: Settings
) -> None:
    clock = Clock(START)
    await store.perform(_verified("PES1", reminder=60))
    await one(store, book(5, "PES1", NOW))
    await one(store, book(6, "PES1", NOW))
    sender = mailer(store, inbox, settings, clock)
    await sender.run_once()
    assert len(inbox.to(ADDRESS)) == 2  # confirmations; reminders due at 04:00 and 05:00
    # Slot 5's booking ends without a cancel event reaching the queue first: its
    # reminder is checked at send time. Then the student turns everything off.
    await store.perform(_no_show(5))
    clock.advance(hours=4)
    await sender.run_once()
    assert subjects(inbox)[2:] == []
    assert await store.perform(_states()) == {"confirmation": ["sent", "sent"],
                                              "reminder": ["cancelled", "pending"]}  # fmt: skip
    assert await store.perform(unsubscribe("h-PES1", NOW)) == "PES1"
    clock.advance(hours=1)
    await sender.run_once()
    assert len(inbox.to(ADDRESS)) == 2
    assert (await store.perform(_states()))["reminder"] == ["cancelled", "dropped"]
    assert await sender.health() == {"configured": True, "pending": 0, "dead": 0}


async def test_a_cancel_cancels_the_reminder(
    store: Storage, inbox: Inbox, settings: Settings
) -> None:
    clock = Clock(START)
    await store.perform(_verified("PES1"))
    await one(store, book(5, "PES1", NOW))
    sender = mailer(store, inbox, settings, clock)
    await sender.run_once()
    await one(store, cancel(5, "PES1", "PES1", NOW))  # the student's own: no message
    await sender.run_once()
    assert await store.perform(_states()) == {"confirmation": ["sent"], "reminder": ["cancelled"]}
    assert len(inbox.to(ADDRESS)) == 1


def _no_show(hour: int) -> Any:
    yield ("UPDATE bookings SET status = 'no_show' WHERE slot_id = :slot", {"slot": hour})


def _states() -> Any:
    rows = yield ("SELECT kind, state FROM mail_queue ORDER BY booking_id, id", {})
    found: dict[str, list[str]] = {}
    for kind, state in rows:
        found.setdefault(str(kind), []).append(str(state))
    return found


async def test_a_row_committed_late_into_a_gap_is_still_mailed(
    store: Storage, inbox: Inbox, settings: Settings
) -> None:
    clock = Clock(START)
    await store.perform(_verified("PES1"))
    sender = mailer(store, inbox, settings, clock)
    await one(store, book(5, "PES1", NOW))
    top = await store.perform(_top())
    # A row two ids on; the transaction that took the id between commits later.
    await store.perform(_event(top + 2, "PES1"))
    assert await sender.dispatch_once() == 2
    clock.advance(seconds=60)
    assert await sender.dispatch_once() == 0
    await store.perform(_event(top + 1, "PES1"))
    assert await sender.dispatch_once() == 1
    assert await sender.dispatch_once() == 0
    # Each late row was queued as any other: a no-show message.
    assert (await store.perform(_states()))["no_show"] == ["pending", "pending"]


async def test_a_message_that_cannot_be_made_fails_alone(
    store: Storage, inbox: Inbox, settings: Settings
) -> None:
    clock = Clock(START)
    await store.perform(_verified("PES1", email=OTHER))
    await store.perform(_verified("PES2"))
    held = await store.perform(_held("PES2"))
    await store.perform(emit("hold_offered", held, NOW))
    await store.perform(_confirmed(held.id))  # taken before the offer was mailed
    await one(store, book(5, "PES2", NOW))
    await store.perform(_event(await store.perform(_top()) + 1, "PES1", start=None))
    policy = Policy(max_attempts=2, first_retry=10.0, longest_retry=10.0)
    sender = mailer(store, inbox, settings, clock, policy)
    await sender.run_once()
    assert subjects(inbox) == ["Booked: ReRo lab, Mon 2030-01-07, 05:00-06:00 (UTC)"]
    assert inbox.to(OTHER) == []
    states = await store.perform(_states())
    assert states["waitlist"] == ["cancelled"]  # the hold is no longer offered
    assert states["no_show"] == ["pending"]
    clock.advance(seconds=10)
    await sender.run_once()
    assert (await store.perform(_states()))["no_show"] == ["dead"]
    assert await sender.health() == {"configured": True, "pending": 1, "dead": 1}


def _held(srn: str) -> Any:
    """A hold of slot 8, as a waitlist offer makes it, until 05:30."""
    rows = yield (
        "INSERT INTO bookings (resource, date, slot_id, starts_at, ends_at, srn, status,"
        " created_at, updated_at, name, hold_expires_at) VALUES ('lab', '2030-01-07', 8,"
        " '2030-01-07T08:00:00+00:00', '2030-01-07T09:00:00+00:00', :srn, 'held', :at, :at,"
        f" '', '2030-01-07T05:30:00+00:00') RETURNING {COLUMNS}",
        {"srn": srn, "at": NOW},
    )
    return booking(rows[0])


def _confirmed(booking_id: int) -> Any:
    yield (
        "UPDATE bookings SET status = 'booked', hold_expires_at = NULL WHERE id = :id",
        {"id": booking_id},
    )


def _top() -> Any:
    ((top,),) = yield ("SELECT MAX(id) FROM outbox", {})
    return int(top)


def _event(row_id: int, srn: str, start: str | None = "2030-01-07T07:00:00+00:00") -> Any:
    """A no-show event at ``row_id``; without ``start`` it cannot be rendered."""
    payload = {"id": f"late-{row_id}", "type": "no_show", "resource": "lab", "booking_id": row_id,
               "srn": srn, "name": "", "date": "2030-01-07", "slot_id": 7,
               "start": start, "end": "2030-01-07T08:00:00+00:00",
               "at": NOW, "reason": None}  # fmt: skip
    yield (
        "INSERT INTO outbox (id, event_id, kind, resource, srn, booking_id, at, payload,"
        " next_attempt_at) VALUES (:id, :event, 'no_show', 'lab', :srn, :id, :at, :payload, :at)",
        {"id": row_id, "event": payload["id"], "srn": srn, "at": NOW,
         "payload": json.dumps(payload)},
    )  # fmt: skip


async def test_the_labs_never_see_a_students_events(store: Storage) -> None:
    follower = LabEvents(store, grace=0.0, timer=lambda: 0.0)
    sub = await follower.subscribe("lab", None)
    await store.perform(_verified("PES1"))
    await one(store, book(5, "PES1", NOW))
    await one(store, cancel(5, "PES1", "PES1", NOW))
    assert await follower.poll_once() == 2  # both passed, one handed on
    assert [json.loads(p)["type"] for p in sub.pending] == ["cancelled"]


def test_the_html_part_escapes_what_it_says(settings: Settings) -> None:
    render = Renderer(build_lab(settings), "https://rero.example.edu", "", _ics)
    context = {
        "id": "e1", "resource": "lab", "booking_id": 1, "name": "<b>Bob</b>",
        "date": "2030-01-07", "slot_id": 5, "start": "2030-01-07T05:00:00+00:00",
        "end": "2030-01-07T06:00:00+00:00", "at": NOW, "why": "a <script> & more",
    }  # fmt: skip
    mail = Mail(1, "e1", "cancellation", "PES1", ADDRESS, context, 1)
    message = render.notification(mail, "token", START)
    html = message.get_body(("html",))
    assert html is not None
    page = html.get_content()
    assert "Hello &lt;b&gt;Bob&lt;/b&gt;," in page
    assert "Reason: a &lt;script&gt; &amp; more." in page
    assert "<script>" not in page
    assert "Reason: a <script> & more." in text_of(message)
    assert message["From"] == "rero@localhost"


@pytest.mark.parametrize("action", ["admin_cancelled", "staff_cancelled"])
async def test_a_staff_cancel_with_its_reason(
    store: Storage, inbox: Inbox, settings: Settings, action: str
) -> None:
    """As the console's cancel writes it (audit action admin_cancelled with a reason; any
    other action name finds no audit row and falls back to the event's reason)."""
    clock = Clock(START)
    await store.perform(_verified("PES1"))
    made = await one(store, book(5, "PES1", NOW))
    gone = Cancel(made.bookings[0].id, None, None, "STAFF", action, NOW, NOW, "gripper jammed")
    assert (await one(store, gone)).changed
    await mailer(store, inbox, settings, clock).run_once()
    assert subjects(inbox) == [
        "Booked: ReRo lab, Mon 2030-01-07, 05:00-06:00 (UTC)",
        "Cancelled: ReRo lab, Mon 2030-01-07, 05:00-06:00 (UTC)",
    ]
    assert "Reason: gripper jammed." in text_of(inbox.to(ADDRESS)[-1])


async def test_without_smtp_a_notification_is_logged(
    store: Storage, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(START)
    await store.perform(_verified("PES1"))
    await one(store, book(5, "PES1", NOW))
    render = Renderer(build_lab(settings), "", "", _ics)
    quiet = Mailer(store, LogOnly(), render, clock, Outcomes(), "key")
    with caplog.at_level(logging.INFO, logger="rero"):
        await quiet.run_once()
    (line,) = [r for r in caplog.records if r.getMessage() == "mail logged, not sent"]
    said = vars(line)  # the log line's fields
    assert said["to"] == "p***@students.example.edu"
    assert said["subject"] == "Booked: ReRo lab, Mon 2030-01-07, 10:30-11:30 (Asia/Kolkata)"
    assert said["message_id"].endswith(".confirmation@rero>")
    assert await store.perform(_states()) == {"confirmation": ["sent"], "reminder": ["pending"]}
    assert await quiet.health() == {"configured": False, "pending": 1, "dead": 0}


def test_an_idle_dispatch_writes_nothing() -> None:
    """Each worker polls every second: with nothing to mail, one read and no write."""
    steps = dispatch(NOW, 200)
    sql, _ = next(steps)
    assert sql == "SELECT 1 FROM outbox WHERE mailed_at IS NULL LIMIT 1"
    with pytest.raises(StopIteration) as done:
        steps.send([])
    assert done.value.value == 0
