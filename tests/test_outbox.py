"""The outbox on both stores: leased claims, settling, expiry, purging, following by id;
and the sender against a real receiver that checks signatures and drops repeats."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from datetime import datetime, timezone

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from rero.lab_events import BEHIND, EventGone, LabEvents, Subscription
from rero.outbox import OutboxSender, Policy, Webhook
from rero.outcomes import Outcomes
from rero.storage import Cancel, Query, Rows, Storage
from rero.storage.mail_programs import dispatch
from rero.storage.outbox_programs import Settled, after, claim, pending, purge, settle
from tests.helpers import Clock, Receiver, book, one, receiver_app

NOW = "2030-01-07T00:00:00+00:00"
LATER = "2030-01-07T00:01:00+00:00"
SECRET = b"whsec-test-7f3a"


async def cancelled(store: Storage, hour: int, resource: str = "arm") -> int:
    """Book and cancel a slot of ``resource``: one ``cancelled`` event; the booking id."""
    made = await one(store, book(hour, "PES1", NOW, resource=resource))
    booking_id = made.bookings[0].id
    gone = await one(store, Cancel(booking_id, None, None, "ADMIN", "cancelled", NOW, NOW))
    assert gone.changed
    return booking_id


async def test_a_claim_leases_due_events_in_order(store: Storage) -> None:
    first, second = await cancelled(store, 5), await cancelled(store, 6)
    await cancelled(store, 7, resource="other")  # no webhook: never claimed
    batch = await store.perform(claim(["arm"], NOW, LATER, "2030-01-06T00:00:00+00:00", 10))
    assert [(json.loads(c.payload)["booking_id"], c.attempts) for c in batch] == [
        (first, 1),
        (second, 1),
    ]
    assert [json.loads(c.payload)["id"] for c in batch] == [c.event_id for c in batch]
    # Leased: nobody else takes them until the lease runs out, and then they are due again.
    assert await store.perform(claim(["arm"], NOW, LATER, "2030-01-06", 10)) == []
    again = await store.perform(claim(["arm"], LATER, "2030-01-07T00:02:00+00:00", "2030", 1))
    assert [(c.id, c.attempts) for c in again] == [(batch[0].id, 2)]
    assert await store.perform(claim([], LATER, LATER, "2030", 10)) == []


@pytest.mark.parametrize("skip_locked", [False, True])
async def test_concurrent_claims_never_share_an_event(store: Storage, skip_locked: bool) -> None:
    for hour in range(3, 13):
        await cancelled(store, hour)
    skip = skip_locked and store.description == "postgresql"
    claims = await asyncio.gather(
        *(store.perform(claim(["arm"], NOW, LATER, "2030", 3, skip)) for _ in range(6))
    )
    ids = [c.id for batch in claims for c in batch]
    assert sorted(ids) == sorted(set(ids))
    # Claimers that waited for each other's rows take fewer; skipping, all are taken.
    assert len(ids) == 10 if skip or store.description == "sqlite" else 3 <= len(ids) <= 10


async def test_settling_delivered_retried_dead_and_expired(store: Storage) -> None:
    for hour in (5, 6, 7):
        await cancelled(store, hour)
    a, b, c = await store.perform(claim(["arm"], NOW, LATER, "2030", 10))
    retry_at = "2030-01-07T00:00:30+00:00"
    await store.perform(
        settle(
            [
                Settled(a.id, True),
                Settled(b.id, False, retry_at, "HTTP 500"),
                Settled(c.id, False, None, "HTTP 410"),
            ],
            NOW,
        )
    )
    assert await store.perform(pending(["arm"])) == {"arm": 1}
    assert await store.perform(claim(["arm"], NOW, NOW, "2030", 10)) == []  # not due yet
    (due,) = await store.perform(claim(["arm"], retry_at, LATER, "2030", 10))
    assert (due.id, due.attempts) == (b.id, 2)
    # A day later it is given up on rather than sent.
    await store.perform(settle([Settled(b.id, False, retry_at, "HTTP 500")], NOW))
    day_later, day_before = "2030-01-08T01:00:00+00:00", "2030-01-07T01:00:00+00:00"
    assert await store.perform(claim(["arm"], day_later, "x", day_before, 10)) == []
    assert await store.perform(_last_errors()) == [None, "expired", "HTTP 410"]
    assert await store.perform(pending(["arm"])) == {}


async def test_purge_keeps_what_may_still_be_sent(store: Storage) -> None:
    await cancelled(store, 5)  # pending for a webhook: kept
    await cancelled(store, 6, resource="other")  # no webhook: purged once old
    (sent,) = await store.perform(claim(["arm"], NOW, LATER, "2030", 1))
    await cancelled(store, 7)
    await store.perform(settle([Settled(sent.id, True)], NOW))
    assert await store.perform(purge(["arm"], NOW)) == 0  # nothing older than NOW
    assert await store.perform(purge(["arm"], LATER)) == 0  # the mail has not seen them
    assert await store.perform(dispatch(NOW, 10)) == 3
    assert await store.perform(purge(["arm"], LATER)) == 2
    rows = await store.perform(after(0, 10))
    assert [json.loads(p)["slot_id"] for _, _, p in rows] == [7]


# ---- following by id ---------------------------------------------------------------------


async def test_the_follower_hands_each_event_to_its_resource(store: Storage) -> None:
    follower = LabEvents(store, grace=1.0, timer=lambda: 0.0)
    await cancelled(store, 4)  # before anyone listened: not live
    arm = await follower.subscribe("arm", None)
    other = await follower.subscribe("other", None)
    mine = await cancelled(store, 5)
    await cancelled(store, 6, resource="other")
    assert await follower.poll_once() == 2
    assert json.loads(await arm.next() or "")["booking_id"] == mine
    assert json.loads(await other.next() or "")["resource"] == "other"
    assert not arm.pending
    # Catching up after an event: what followed it, up to where the live ones start.
    first = json.loads((await store.perform(after(0, 1)))[0][2])["id"]
    back = await follower.subscribe("arm", first)
    pages = [page async for page in follower.backlog(back)]
    assert [[json.loads(p)["slot_id"] for p in page] for page in pages] == [[5]]
    with pytest.raises(EventGone):
        await follower.subscribe("other", first)  # not an event of that resource


async def test_the_follower_waits_a_little_at_a_gap(store: Storage) -> None:
    now = [0.0]
    follower = LabEvents(store, grace=2.0, timer=lambda: now[0])
    sub = await follower.subscribe("arm", None)
    await cancelled(store, 5)
    (top, _, payload) = (await store.perform(after(0, 10)))[-1]
    # A row two ids on, as a transaction that took an id earlier has not committed yet.
    await store.perform(_copy(payload, top + 2))
    assert await follower.poll_once() == 1
    assert await follower.poll_once() == 0  # waiting for top + 1
    now[0] = 2.5
    assert await follower.poll_once() == 1
    assert [json.loads(p)["event_id_copy"] for p in list(sub.pending)[1:]] == [True]


def _copy(payload: str, row_id: int):  # type: ignore[no-untyped-def]
    data = {**json.loads(payload), "event_id_copy": True}
    yield (
        "INSERT INTO outbox (id, event_id, kind, resource, at, payload, next_attempt_at)"
        " VALUES (:id, :event, 'cancelled', 'arm', :at, :payload, :at)",
        {"id": row_id, "event": f"copy-{row_id}", "at": NOW, "payload": json.dumps(data)},
    )


async def test_a_subscriber_too_far_behind_is_cut_off() -> None:
    sub = Subscription("arm", 0, None, limit=2)
    for n in range(2):
        sub.offer(str(n))
    assert sub.ended is None
    sub.offer("2")
    assert sub.ended == BEHIND
    assert await sub.next() is None  # what was queued is dropped with it


# ---- the sender ----------------------------------------------------------------------------


@pytest.fixture
async def receiver(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> Receiver:
    hook = Receiver(SECRET)
    server = await aiohttp_server(receiver_app(hook))
    hook.url = str(server.make_url("/hook"))
    return hook


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def sender(
    store: Storage, hook: Receiver, http: aiohttp.ClientSession, clock: Clock, **policy: float
) -> OutboxSender:
    return OutboxSender(
        store, {"arm": Webhook(hook.url, SECRET)}, http, clock, Outcomes(),
        Policy(**policy),  # type: ignore[arg-type]
        jitter=lambda: 1.0,
    )  # fmt: skip


async def test_delivers_signed_and_retries_until_answered(
    store: Storage, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    clock = Clock(datetime(2030, 1, 7, tzinfo=timezone.utc))
    booking_id = await cancelled(store, 5)
    (stored,) = [p for _, _, p in await store.perform(after(0, 10))]
    receiver.answers = [500]
    outbox = sender(store, receiver, http, clock)
    assert await outbox.run_once() == 1
    assert await outbox.run_once() == 0  # not due before its back-off
    clock.advance(seconds=1)
    assert await outbox.run_once() == 1
    assert [r.status for r in receiver.requests] == [500, 200]
    # Byte for byte what was stored, signed; the receiver drops the repeat.
    assert receiver.requests[1].body == stored.encode()
    assert receiver.requests[1].headers["Content-Type"] == "application/json"
    assert receiver.requests[1].signed
    assert [e["booking_id"] for e in receiver.unique] == [booking_id]
    assert await store.perform(pending(["arm"])) == {}
    assert dict(outbox._outcomes) == {("webhook", "retried"): 1, ("webhook", "delivered"): 1}


async def test_backoff_doubles_to_its_ceiling(store: Storage, http: aiohttp.ClientSession) -> None:
    policy = Policy(first_retry=1.0, longest_retry=600.0)
    outbox = OutboxSender(store, {}, http, Clock(datetime.now(timezone.utc)), Outcomes(), policy,
                          jitter=lambda: 0.0)  # fmt: skip
    assert [outbox.backoff(n) for n in (1, 2, 3, 10, 11, 40)] == [
        0.5, 1.0, 2.0, 256.0, 300.0, 300.0,
    ]  # fmt: skip


async def test_dead_after_the_last_attempt(
    store: Storage, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    clock = Clock(datetime(2030, 1, 7, tzinfo=timezone.utc))
    await cancelled(store, 5)
    receiver.answers = [503] * 10
    outbox = sender(store, receiver, http, clock, max_attempts=3)
    for _ in range(3):
        assert await outbox.run_once() == 1
        clock.advance(seconds=10)
    assert await outbox.run_once() == 0
    assert len(receiver.requests) == 3
    assert receiver.unique == []
    assert await store.perform(pending(["arm"])) == {}
    assert dict(outbox._outcomes) == {("webhook", "retried"): 2, ("webhook", "dead"): 1}


async def test_a_slow_receiver_or_a_redirect_is_a_failure(
    store: Storage, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    clock = Clock(datetime(2030, 1, 7, tzinfo=timezone.utc))
    await cancelled(store, 5)
    receiver.delay = 1.0  # the subject: a receiver slower than the timeout
    outbox = sender(store, receiver, http, clock, timeout=0.1)
    assert await outbox.run_once() == 1
    assert await store.perform(_last_errors()) == ["no answer within 0.1 s"]
    receiver.delay = 0.0
    receiver.answers = [302]
    clock.advance(seconds=2)
    assert await outbox.run_once() == 1
    assert receiver.unique == []
    assert await store.perform(_last_errors()) == ["HTTP 302"]
    clock.advance(seconds=4)
    assert await outbox.run_once() == 1
    assert len(receiver.unique) == 1


def _last_errors() -> Generator[Query, Rows, list[object]]:
    rows = yield ("SELECT last_error FROM outbox ORDER BY id", {})
    return [r[0] for r in rows]
