"""The lab API's contract: its key, the session under way, out of service and back, a
student's start, the live events socket, and the webhooks the outbox sends."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from rero.keys import LAB_EVENTS, OUTBOX, SETTINGS, STORAGE
from rero.setting_checks import LabConfig
from tests.helpers import (
    ALICE_SRN,
    ARM,
    BOB,
    CAGE,
    TODAY,
    Clock,
    Receiver,
    bearer,
    eventually,
    login,
    receiver_app,
)

KEY = "lab-key-arm-1-4f9c2e"
OTHER_KEY = "lab-key-cage-77d1"
SECRET = "whsec-arm-1-test"
NOW_LOCAL = f"{TODAY}T08:30:00+05:30"


def lab_of(key: str, url: str = "") -> LabConfig:
    return LabConfig(
        "https://lab.example.edu/arm-1", early_minutes=5,
        api_key_sha256=(hashlib.sha256(key.encode()).hexdigest(),),
        webhook_url=url, webhook_secret_env="RERO_TEST_WEBHOOK_SECRET" if url else "",
    )  # fmt: skip


@pytest.fixture
async def receiver(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> Receiver:
    hook = Receiver(SECRET.encode())
    server = await aiohttp_server(receiver_app(hook))
    hook.url = str(server.make_url("/hook"))
    return hook


@pytest.fixture
async def lab(make: Any, settings: Any, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Any:
    """arm-1 with a lab (key, webhook); the cage has no lab; carol's lab is elsewhere."""
    monkeypatch.setenv("RERO_TEST_WEBHOOK_SECRET", SECRET)
    arm = replace(ARM, lab=lab_of(KEY, receiver.url))
    cage = replace(CAGE, id="cage")
    elsewhere = replace(CAGE, id="arm-2", lab=lab_of(OTHER_KEY))
    return await make(
        resources=(arm, cage, elsewhere), admins=(ALICE_SRN,), public_url="https://rero.test"
    )


def key(value: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


async def answer(resp: Any) -> tuple[int, Any]:
    return resp.status, await resp.json()


async def book_now(lab: Any, who: dict[str, str] | None = None, slot: int = 8) -> int:
    """Book arm-1's slot (default: the one under way, 08:00-09:00); its id."""
    token = await login(lab, who) if who else await login(lab)
    body = {"resource": "arm-1", "date": TODAY, "slot_id": slot}
    resp = await lab.post("/bookings", json=body, headers=bearer(token))
    assert resp.status == 201, await resp.text()
    return int((await resp.json())["booking"]["id"])


# ---- the key ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/current"), ("POST", "/status"), ("POST", "/sessions/1/started")],
)
async def test_every_route_wants_this_labs_key(lab: Any, method: str, path: str) -> None:
    body = {"available": True}
    missing = await lab.request(method, f"/labs/arm-1{path}", json=body)
    assert await answer(missing) == (
        401, {"detail": "A lab key is required: Authorization: Bearer <key>"},
    )  # fmt: skip
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="rero-lab"'
    basic = await lab.request(method, f"/labs/arm-1{path}", json=body,
                              headers={"Authorization": f"Basic {KEY}"})  # fmt: skip
    assert basic.status == 401
    for wrong in ("nope", OTHER_KEY, KEY + "x"):  # another lab's key is wrong too
        resp = await lab.request(method, f"/labs/arm-1{path}", json=body, headers=key(wrong))
        assert await answer(resp) == (403, {"detail": "This key is not a lab key of arm-1"})
    unknown = await lab.request(method, f"/labs/nope{path}", json=body, headers=key())
    assert await answer(unknown) == (404, {"detail": "Resource nope does not exist"})
    no_lab = await lab.request(method, f"/labs/cage{path}", json=body, headers=key())
    assert await answer(no_lab) == (404, {"detail": "Resource cage has no lab"})


async def test_the_socket_wants_the_key_before_the_upgrade(lab: Any) -> None:
    for headers, status in (({}, 401), (key("nope"), 403), (key(OTHER_KEY), 403)):
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await lab.ws_connect("/labs/arm-1/events", headers=headers)
        assert e.value.status == status
    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
        await lab.ws_connect("/labs/cage/events", headers=key())
    assert e.value.status == 404
    bad = await lab.get("/labs/arm-1/events?after=not-a-uuid", headers=key())
    assert await answer(bad) == (
        422, {"detail": "Request validation failed", "errors": {"after": ["Not a valid UUID."]}},
    )  # fmt: skip
    gone = await lab.get(
        "/labs/arm-1/events?after=0b8e2a1e-5b7c-4d5e-9f00-000000000000", headers=key()
    )
    assert await answer(gone) == (410, {"detail": (
        "Event 0b8e2a1e-5b7c-4d5e-9f00-000000000000 of arm-1 is not kept: connect without"
        " after and read GET /labs/arm-1/current"
    )})  # fmt: skip


# ---- the session under way -----------------------------------------------------------------


async def test_current_session(lab: Any, clock: Clock) -> None:
    none = await lab.get("/labs/arm-1/current", headers=key())
    assert (none.status, await none.read()) == (204, b"")
    booking_id = await book_now(lab)
    resp = await lab.get("/labs/arm-1/current", headers=key())
    assert resp.headers["Cache-Control"] == "no-store"
    row = await lab.app[STORAGE].booking(booking_id)
    assert await answer(resp) == (200, {
        "booking_id": booking_id, "srn": ALICE_SRN, "name": row.name,
        "start": f"{TODAY}T08:00:00+05:30", "end": f"{TODAY}T09:00:00+05:30",
        "checked_in": False,
    })  # fmt: skip
    clock.advance(minutes=30)  # 09:00: the slot has ended
    assert (await lab.get("/labs/arm-1/current", headers=key())).status == 204


# ---- out of service and back -------------------------------------------------------------


async def slot_states(lab: Any) -> dict[int, tuple[str, str | None]]:
    board = await (await lab.get(f"/resources/arm-1/slots?date={TODAY}")).json()
    return {s["id"]: (s["state"], s["reason"]) for s in board["slots"]}


async def test_out_of_service_and_back(lab: Any, clock: Clock) -> None:
    under_way = await book_now(lab)
    later = await book_now(lab, BOB, slot=12)
    out = {"available": False, "reason": "gripper jammed"}
    resp = await lab.post("/labs/arm-1/status", json=out, headers=key())
    expected = {"resource": "arm-1", "available": False, "reason": "gripper jammed",
                "since": NOW_LOCAL}  # fmt: skip
    assert await answer(resp) == (200, expected)
    states = await slot_states(lab)
    assert [states[n] for n in (8, 9, 14)] == [("closed", "gripper jammed")] * 3
    bookings = [await lab.app[STORAGE].booking(b) for b in (under_way, later)]
    assert [b.status for b in bookings] == ["cancelled", "cancelled"]
    # Said again (even with another reason): nothing more happens.
    clock.advance(minutes=5)
    again = await lab.post("/labs/arm-1/status", json={**out, "reason": "x"}, headers=key())
    assert await answer(again) == (200, expected)
    admin = await login(lab)
    listed = await (await lab.get("/admin/blackouts", headers=bearer(admin))).json()
    assert [(b["reason"], b["start"], b["end"]) for b in listed["blackouts"]] == [
        ("gripper jammed", NOW_LOCAL, "9999-12-31T23:59:59+00:00"),
    ]  # fmt: skip
    back = await lab.post("/labs/arm-1/status", json={"available": True}, headers=key())
    back_at = f"{TODAY}T08:35:00+05:30"
    expected_back = {"resource": "arm-1", "available": True, "reason": None, "since": back_at}
    assert await answer(back) == (200, expected_back)
    states = await slot_states(lab)
    assert [states[n] for n in (9, 14)] == [("free", None)] * 2
    clock.advance(minutes=1)
    again = await lab.post("/labs/arm-1/status", json={"available": True}, headers=key())
    assert await answer(again) == (200, expected_back)
    assert (await lab.get("/admin/blackouts", headers=bearer(admin))).status == 200


async def test_a_lab_that_never_reported_is_available_since_unknown(lab: Any) -> None:
    resp = await lab.post("/labs/arm-1/status", json={"available": True}, headers=key())
    assert await answer(resp) == (
        200, {"resource": "arm-1", "available": True, "reason": None, "since": None},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"available": False}, {"reason": ["Required when available is false."]}),
        ({"available": False, "reason": ""}, {"reason": ["Length must be between 1 and 200."]}),
        ({"available": "no"}, {"available": ["Not a valid boolean."]}),
        ({"available": 0}, {"available": ["Not a valid boolean."]}),
        ({}, {"available": ["Missing data for required field."]}),
    ],
)
async def test_status_reports_are_checked(lab: Any, body: Any, errors: Any) -> None:
    resp = await lab.post("/labs/arm-1/status", json=body, headers=key())
    assert await answer(resp) == (422, {"detail": "Request validation failed", "errors": errors})


async def test_a_status_report_that_is_not_json(lab: Any) -> None:
    resp = await lab.post("/labs/arm-1/status", data=b"{", headers=key())
    assert await answer(resp) == (400, {"detail": "Request body must be valid JSON"})


# ---- a student's start -------------------------------------------------------------------


async def started(lab: Any, booking_id: int, resource: str = "arm-1") -> Any:
    return await lab.post(f"/labs/{resource}/sessions/{booking_id}/started", headers=key())


async def test_the_lab_reports_a_start(lab: Any, clock: Clock) -> None:
    booking_id = await book_now(lab)
    first = await started(lab, booking_id)
    assert await answer(first) == (
        200, {"booking_id": booking_id, "checked_in_at": NOW_LOCAL},
    )  # fmt: skip
    clock.advance(minutes=2)
    again = await started(lab, booking_id)  # the first check-in stands
    assert await answer(again) == (200, {"booking_id": booking_id, "checked_in_at": NOW_LOCAL})
    current = await (await lab.get("/labs/arm-1/current", headers=key())).json()
    assert current["checked_in"] is True


async def test_a_start_the_calendar_refuses(lab: Any, clock: Clock) -> None:
    soon, later = await book_now(lab, slot=9), await book_now(lab, BOB, slot=10)
    assert await answer(await started(lab, later)) == (
        409, {"detail": f"Booking {later} has not started yet"},
    )  # fmt: skip
    assert await answer(await started(lab, 999999)) == (
        404, {"detail": "Booking 999999 does not exist"},
    )  # fmt: skip
    other = await lab.post(
        f"/labs/arm-2/sessions/{soon}/started", headers=key(OTHER_KEY)
    )  # another resource's lab
    assert await answer(other) == (404, {"detail": f"Booking {soon} does not exist"})
    clock.advance(minutes=25)  # 08:55: within early_minutes of 09:00
    assert (await started(lab, soon)).status == 200
    token = await login(lab, BOB)
    assert (await lab.delete(f"/bookings/{later}", headers=bearer(token))).status == 200
    assert await answer(await started(lab, later)) == (
        409, {"detail": f"Booking {later} is cancelled"},
    )  # fmt: skip
    ended = await book_now(lab, BOB, slot=11)
    clock.advance(hours=3, minutes=10)  # 12:05
    assert await answer(await started(lab, ended)) == (
        409, {"detail": f"Booking {ended} has ended"},
    )  # fmt: skip
    big = await lab.post(f"/labs/arm-1/sessions/{2**63}/started", headers=key())
    assert big.status == 404


# ---- events: the socket and the webhook ----------------------------------------------------


async def event(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    parsed: dict[str, Any] = json.loads(msg.data)
    return parsed


async def test_events_live_and_after_a_reconnect(lab: Any, receiver: Receiver) -> None:
    ws = await lab.ws_connect("/labs/arm-1/events", headers=key())
    token = await login(lab)
    booking_id = await book_now(lab)
    assert (await lab.delete(f"/bookings/{booking_id}", headers=bearer(token))).status == 200
    gone = await event(ws)
    assert gone == {
        "id": gone["id"], "type": "cancelled", "resource": "arm-1", "booking_id": booking_id,
        "srn": ALICE_SRN, "name": gone["name"], "date": TODAY, "slot_id": 8,
        "start": "2026-11-24T02:30:00+00:00", "end": "2026-11-24T03:30:00+00:00",
        "at": "2026-11-24T03:00:00+00:00", "reason": None,
    }  # fmt: skip
    again = await book_now(lab, BOB)
    assert (await started(lab, again)).status == 200
    came = await event(ws)
    assert (came["type"], came["booking_id"]) == ("session_started", again)
    await ws.close()
    # Missed while away: replayed after the last one seen, then live again.
    out = {"available": False, "reason": "camera"}
    assert (await lab.post("/labs/arm-1/status", json=out, headers=key())).status == 200
    back = await lab.ws_connect(f"/labs/arm-1/events?after={gone['id']}", headers=key())
    replayed = [await event(back) for _ in range(2)]
    assert [(e["type"], e["booking_id"]) for e in replayed] == [
        ("session_started", again), ("cancelled", again),
    ]  # fmt: skip
    assert replayed[1]["reason"] == "blackout"
    await back.close()
    # Every event reached the webhook, signed, once each after dropping repeats.
    await eventually(lambda: len(receiver.unique) == 3, what="three events delivered")
    assert [e["type"] for e in receiver.unique] == ["cancelled", "session_started", "cancelled"]
    assert all(r.signed for r in receiver.requests)
    assert {r.headers["X-Rero-Event-Id"] for r in receiver.requests} == {
        e["id"] for e in receiver.unique
    }


async def test_events_written_by_another_process_arrive(make: Any, lab: Any) -> None:
    """Another worker on the same database: its commits reach this one's lab socket."""
    other = await make(resources=lab.app[SETTINGS].resources, public_url="https://rero.test")
    ws = await lab.ws_connect("/labs/arm-1/events", headers=key())
    booking_id = await book_now(other)
    assert (await started(other, booking_id)).status == 200
    came = await event(ws)
    assert (came["type"], came["booking_id"]) == ("session_started", booking_id)
    await ws.close()


async def test_a_receiver_that_fails_gets_it_again(
    lab: Any, receiver: Receiver, clock: Clock
) -> None:
    receiver.answers = [500]
    booking_id = await book_now(lab)
    token = await login(lab)
    assert (await lab.delete(f"/bookings/{booking_id}", headers=bearer(token))).status == 200
    await eventually(lambda: len(receiver.requests) == 1, what="the first attempt")
    clock.advance(seconds=1)  # its back-off: at most a second
    lab.app[OUTBOX].poke()
    await eventually(lambda: len(receiver.unique) == 1, what="the second attempt")
    assert [r.status for r in receiver.requests] == [500, 200]
    retried = 'rero_operations_total{action="webhook",outcome="retried"} 1.0'
    delivered = 'rero_operations_total{action="webhook",outcome="delivered"} 1.0'

    async def counted() -> bool:  # the sender records it once the receiver has answered
        metrics = await (await lab.get("/metrics")).text()
        return retried in metrics and delivered in metrics

    await eventually(counted, what="the retry and the delivery counted")


async def test_lab_sockets_close_going_away_at_shutdown(lab: Any) -> None:
    ws = await lab.ws_connect("/labs/arm-1/events", headers=key())
    await eventually(lambda: len(lab.app[LAB_EVENTS].subscriptions) == 1, what="subscribed")
    closing = asyncio.create_task(ws.receive(timeout=10))
    await lab.server.close()
    msg = await closing
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, aiohttp.WSCloseCode.GOING_AWAY)
