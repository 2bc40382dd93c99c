"""The calendar over the WebSocket: subscriptions to a resource's date, booking and
cancelling by resource and date, and boards that time changes."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from rero.keys import CALENDAR
from tests.helpers import (
    ALICE,
    ALICE_SRN,
    ARM,
    BOB,
    CAGE,
    TODAY,
    TOMORROW,
    Clock,
    bearer,
    connect,
    login,
    receive,
)


@pytest.fixture
async def lab(make: Any) -> Any:
    return await make(resources=(ARM, CAGE), admins=(ALICE_SRN,), ws_max_subscriptions=2)


async def nothing_more(ws: aiohttp.ClientWebSocketResponse) -> None:
    """No message is waiting: a ping round trip arrives first."""
    await ws.send_json({"type": "no-such-type"})
    assert (await receive(ws))["type"] == "error"


async def subscribe(ws: aiohttp.ClientWebSocketResponse, resource: str, day: str) -> Any:
    await ws.send_json({"type": "subscribe", "resource": resource, "date": day})
    update = await receive(ws)
    assert (update["type"], update["resource"], update["date"]) == ("slots_update", resource, day)
    return update


async def test_subscribe_then_follow_that_board_only(lab: Any) -> None:
    ws = await connect(lab)
    update = await subscribe(ws, "cage", TOMORROW)
    assert sorted(update) == ["data", "date", "resource", "timestamp", "type"]
    board = await (await lab.get(f"/resources/cage/slots?date={TOMORROW}")).json()
    assert update["data"] == board
    token = await login(lab)
    body = {"resource": "cage", "date": TOMORROW, "slot_id": 19}
    assert (await lab.post("/bookings", json=body, headers=bearer(token))).status == 201
    update = await receive(ws)
    assert (update["resource"], update["data"]["booked_slots"]) == ("cage", [19])
    # A change elsewhere (and on the rolling board) is not sent to this socket.
    other = {"resource": "arm-1", "date": TODAY, "slot_id": 12}
    assert (await lab.post("/bookings", json=other, headers=bearer(token))).status == 201
    await nothing_more(ws)
    # A socket that never subscribed sees the original message, as before.
    legacy = await connect(lab)
    assert (await lab.post("/book-slot", json={"slot_id": 13, **BOB})).status == 200
    update = await receive(legacy)
    assert sorted(update) == ["data", "timestamp", "type"]
    assert update["data"]["booked_slots"] == [12, 13]
    await nothing_more(ws)


async def test_unsubscribe_and_the_limit(lab: Any) -> None:
    ws = await connect(lab)
    await subscribe(ws, "cage", TOMORROW)
    await subscribe(ws, "cage", TODAY)
    await ws.send_json({"type": "subscribe", "resource": "arm-1", "date": TOMORROW})
    assert await receive(ws) == {
        "type": "error",
        "message": "At most 2 subscriptions per connection",
    }
    await ws.send_json({"type": "unsubscribe", "resource": "cage", "date": TODAY})
    assert await receive(ws) == {"type": "unsubscribed", "resource": "cage", "date": TODAY}
    await subscribe(ws, "arm-1", TOMORROW)
    token = await login(lab)
    body = {"resource": "cage", "date": TODAY, "slot_id": 20}
    assert (await lab.post("/bookings", json=body, headers=bearer(token))).status == 201
    await nothing_more(ws)  # no longer following cage today


@pytest.mark.parametrize(
    ("message", "reply"),
    [
        ({"resource": "nope", "date": TOMORROW}, "Resource nope does not exist"),
        ({"resource": "cage", "date": "someday"}, "Invalid date: Not a valid date."),
        ({"date": TOMORROW}, "Invalid resource: Missing data for required field."),
    ],
)
async def test_subscribe_errors(lab: Any, message: dict[str, str], reply: str) -> None:
    ws = await connect(lab)
    await ws.send_json({"type": "subscribe", **message})
    assert await receive(ws) == {"type": "error", "message": reply}


async def test_book_and_cancel_by_resource_and_date(lab: Any) -> None:
    ws = await connect(lab)
    await subscribe(ws, "arm-1", TOMORROW)
    book = {"type": "book_slot", "resource": "arm-1", "date": TOMORROW, "slot_id": 10, **ALICE}
    await ws.send_json(book)
    replies = [await receive(ws), await receive(ws)]
    reply = next(r for r in replies if r["type"] == "booking_response")
    update = next(r for r in replies if r["type"] == "slots_update")
    assert update["data"]["booked_slots"] == [10]
    assert reply == {
        "type": "booking_response", "slot_id": 10, "resource": "arm-1", "date": TOMORROW,
        "success": True, "message": "Slot 10 booked successfully",
        "booking": {**reply["booking"], "status": "booked", "srn": ALICE_SRN},
    }  # fmt: skip
    await ws.send_json({**book, **BOB})
    assert await receive(ws) == {
        "type": "booking_response", "slot_id": 10, "resource": "arm-1", "date": TOMORROW,
        "success": False, "message": "Slot 10 on 2026-11-25 is not available",
    }  # fmt: skip
    cancel = {**book, "type": "cancel_slot", **BOB}
    await ws.send_json(cancel)
    reply = await receive(ws)
    assert (reply["success"], reply["message"]) == (False, "You can only cancel your own bookings")
    await ws.send_json({**cancel, **ALICE})
    replies = [await receive(ws), await receive(ws)]
    reply = next(r for r in replies if r["type"] == "cancellation_response")
    assert (reply["success"], reply["booking"]["status"]) == (True, "cancelled")
    await ws.send_json({**cancel, **ALICE})
    reply = await receive(ws)
    assert reply["message"] == "Slot 10 on 2026-11-25 is not booked"


async def test_a_day_that_opens_while_followed(lab: Any, clock: Clock) -> None:
    clock.advance(minutes=-31)  # 07:59 in Kolkata: cage opens 26th at 08:00
    calendar = lab.server.app[CALENDAR]
    ws = await connect(lab)
    update = await subscribe(ws, "cage", "2026-11-26")
    assert update["data"]["opens_at"] == "2026-11-24T08:00:00+05:30"
    assert update["data"]["available_slots"] == []
    clock.advance(minutes=1)
    await calendar.tick()
    update = await asyncio.wait_for(receive(ws), 5)
    assert (update["data"]["opens_at"], update["data"]["available_slots"]) == (
        None, [18, 19, 20, 21],
    )  # fmt: skip
