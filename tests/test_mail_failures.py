"""How the mail sender fails, on both stores: a recipient refused for good (5xx) is dead
at once, a refused login is an error in the log; a student's later messages wait behind
one that failed (their attempt not counted); a batch stops before its lease runs out;
a sender whose lease ran out settles nothing (the row may be another sender's); the
queue's booking ids are as large as the bookings'; the upgrade marks old events mailed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import pytest

from rero.mailer import Mailer, Policy
from rero.outcomes import Outcomes
from rero.storage import Storage
from rero.storage.mail_programs import Sent, claim, dispatch, settle
from rero.storage.sqlite import open_sqlite
from rero.storage.sqlite_schema import VERSION
from tests.helpers import UPGRADE, Clock, Inbox, book, one
from tests.test_mail_queue import ADDRESS, NOW, START, _states, _verified, mailer

LEASE = (START + timedelta(seconds=120)).isoformat()


def _attempts() -> Any:
    rows = yield ("SELECT kind, state, attempts FROM mail_queue ORDER BY id", {})
    return [(str(k), str(s), int(n)) for k, s, n in rows]


async def test_a_recipient_refused_for_good_is_dead_at_once(
    store: Storage, inbox: Inbox, settings: Any
) -> None:
    inbox.unknown.add(ADDRESS)
    await store.perform(_verified("PES1"))
    await one(store, book(5, "PES1", NOW))
    await one(store, book(6, "PES1", NOW))
    await mailer(store, inbox, settings, Clock(START)).run_once()
    # The first is dead after one try; the second waited behind it, then goes (and dies).
    assert await store.perform(_attempts()) == [
        ("confirmation", "dead", 1), ("reminder", "pending", 0),
        ("confirmation", "pending", 0), ("reminder", "pending", 0),
    ]  # fmt: skip
    assert inbox.refused == 1


async def test_later_messages_wait_behind_a_failed_one(
    store: Storage, inbox: Inbox, settings: Any
) -> None:
    clock = Clock(START)
    inbox.refusing = True
    await store.perform(_verified("PES1"))
    await one(store, book(5, "PES1", NOW))
    await one(store, book(6, "PES1", NOW))
    sender = mailer(store, inbox, settings, clock)
    await sender.run_once()
    assert inbox.refused == 1  # the second was not tried
    assert [n for _, _, n in await store.perform(_attempts())] == [1, 0, 0, 0]
    inbox.refusing = False
    clock.advance(hours=1)
    await sender.run_once()
    assert len(inbox.to(ADDRESS)) == 2
    assert (await store.perform(_states()))["confirmation"] == ["sent", "sent"]


async def booked(
    store: Storage, settings: Any, transport: Any, policy: Policy | None = None
) -> Mailer:
    """A student with a verified address booked slot 5; a sender through ``transport``."""
    clock = Clock(START)
    await store.perform(_verified("PES1"))
    await one(store, book(5, "PES1", NOW))
    render = mailer(store, Inbox(), settings, clock).render
    return Mailer(store, transport, render, clock, Outcomes(), "key", policy or Policy())


class Hanging:
    """An SMTP server that never answers."""

    configured = True

    async def send(self, message: EmailMessage) -> None:
        await asyncio.Event().wait()


class LoginRefused:
    configured = True

    async def send(self, message: EmailMessage) -> None:
        raise aiosmtplib.SMTPAuthenticationError(535, "5.7.8 Authentication credentials invalid")


async def test_a_batch_stops_before_its_lease_runs_out(store: Storage, settings: Any) -> None:
    sender = await booked(store, settings, Hanging(), Policy(lease=0.4, margin=0.3))
    assert await asyncio.wait_for(sender.run_once(), 5) == 1
    # Cut off: still leased, it goes again once the lease has run out.
    assert await store.perform(_attempts()) == [("confirmation", "pending", 1),
                                                ("reminder", "pending", 0)]  # fmt: skip


async def test_a_refused_login_is_an_error(
    store: Storage, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sender = await booked(store, settings, LoginRefused())
    with caplog.at_level(logging.INFO, logger="rero"):
        await sender.run_once()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["SMTP login refused: check smtp_username and the password"]
    assert (await store.perform(_attempts()))[0] == ("confirmation", "pending", 1)  # retried


async def test_a_lapsed_lease_settles_nothing(store: Storage) -> None:
    await store.perform(_verified("PES1"))
    await one(store, book(5, "PES1", NOW))
    await store.perform(dispatch(NOW, 10))
    (mine,) = await store.perform(claim(NOW, LEASE, 1))
    later = (START + timedelta(seconds=121)).isoformat()
    theirs = (START + timedelta(seconds=241)).isoformat()
    assert [m.id for m in await store.perform(claim(later, theirs, 1))] == [mine.id]
    await store.perform(settle([Sent(mine.id, True)], later, LEASE))  # too late: not mine
    assert (await store.perform(_attempts()))[0] == ("confirmation", "pending", 2)
    await store.perform(settle([Sent(mine.id, True)], later, theirs))
    assert (await store.perform(_attempts()))[0] == ("confirmation", "sent", 2)


async def test_a_booking_id_as_large_as_the_bookings(store: Storage) -> None:
    """The queue's booking_id holds any booking's id (BIGINT on PostgreSQL, as there)."""
    big = 2**40
    rows = await store.perform(_queued(big))
    assert rows == [(big,)]


def _queued(booking_id: int) -> Any:
    yield (
        "INSERT INTO mail_queue (event_id, kind, srn, recipient, booking_id, context, state,"
        " next_attempt_at, created_at) VALUES ('e', 'confirmation', 'PES1', 'a@b.c', :id, '{}',"
        " 'pending', :at, :at)",
        {"id": booking_id, "at": NOW},
    )
    return (yield ("SELECT booking_id FROM mail_queue", {}))


async def test_the_upgrade_marks_the_outbox_mailed(tmp_path: Any) -> None:
    """Events from before migration 8 are not mailed, and do not sit in its index."""
    path = str(tmp_path / "rero.db")
    async with open_sqlite(path, UPGRADE):
        pass
    with contextlib.closing(sqlite3.connect(path)) as db:  # back to version 7, one event
        for sql in (
            "DROP INDEX outbox_unmailed", "DROP INDEX booking_events_cancelled",
            "DROP TABLE notification_settings", "DROP TABLE mail_queue",
            "DROP TABLE mail_state", "ALTER TABLE outbox DROP COLUMN mailed_at",
            "INSERT INTO outbox (event_id, kind, srn, booking_id, at, payload,"
            " next_attempt_at) VALUES ('old', 'booked', 'PES1', 1, 'x', '{}', 'x')",
            f"PRAGMA user_version = {VERSION - 1}",
        ):  # fmt: skip
            db.execute(sql)
        db.commit()
    async with open_sqlite(path, UPGRADE) as store:
        assert await store.perform(dispatch(NOW, 10)) == 0
        assert await store.perform(_unmailed()) == []


def _unmailed() -> Any:
    return (yield ("SELECT id FROM outbox WHERE mailed_at IS NULL", {}))
