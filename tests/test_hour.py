"""The hour's HTTP contract: holds (shown, confirmed, let go, lapsed), the waitlist and its
offers, early release, no-shows and suspensions, each refusal with its status and sentence.
Time moves by the test clock; the scheduler's sweep is run by hand."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from rero.app import create_app
from rero.keys import HOUR, STORAGE
from rero.setting_checks import FakeUser
from tests.helpers import (
    ALICE,
    ALICE_SRN,
    ARM,
    BOB,
    BOB_SRN,
    CAGE,
    CAROL,
    CAROL_LOGIN,
    TODAY,
    TOMORROW,
    Clock,
    bearer,
    connect,
    key_files,
    login,
    new_database,
    receive,
    with_lab,
)

DAVE = FakeUser("dave", "dave-pw-3", "Dave Pai", "PES2UG22CS004", campus="EC")
DAVE_LOGIN = {"username": "dave", "password": "dave-pw-3"}


@pytest.fixture
async def lab(database: dict[str, str], make: Any, settings: Any) -> Any:
    """The test lab, on each store."""
    return await make(
        **database,
        resources=(ARM, CAGE),
        admins=(ALICE_SRN,),
        fake_users=(*settings.fake_users, CAROL, DAVE),
        no_show_limit=2,
        session_minutes=24 * 60.0,  # the clock moves hours: sessions outlive it
    )


@pytest.fixture
async def tokens(lab: Any) -> dict[str, str]:
    who = {"alice": ALICE, "bob": BOB, "carol": CAROL_LOGIN, "dave": DAVE_LOGIN}
    return {name: await login(lab, creds) for name, creds in who.items()}


def slot(resource: str, day: str, slot_id: int) -> dict[str, Any]:
    return {"resource": resource, "date": day, "slot_id": slot_id}


async def post(lab: Any, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    resp = await lab.post(path, json=body, headers=bearer(token))
    return resp.status, await resp.json()


async def state(lab: Any, resource: str, day: str, slot_id: int) -> tuple[str, Any]:
    board = await (await lab.get(f"/resources/{resource}/slots?date={day}")).json()
    cell = next(s for s in board["slots"] if s["id"] == slot_id)
    return cell["state"], cell["held_until"]


async def sweep(lab: Any) -> None:
    await lab.app[HOUR].sweep()


# ---- holds ------------------------------------------------------------------------------------


async def test_a_hold_shows_held_to_everyone_and_confirms(lab: Any, tokens: Any) -> None:
    status, body = await post(lab, "/holds", tokens["alice"], slot("arm-1", TOMORROW, 10))
    assert status == 201
    hold_id = body["hold"]["id"]
    assert body == {
        "hold": {
            "id": hold_id, "resource": "arm-1", "date": TOMORROW, "slot_id": 10,
            "start": f"{TOMORROW}T10:00:00+05:30", "end": f"{TOMORROW}T11:00:00+05:30",
            "srn": ALICE_SRN, "status": "held", "created_at": "2026-11-24T03:00:00+00:00",
            "series_id": None, "checked_in_at": None,
            "expires_at": "2026-11-24T08:32:00+05:30",
        }
    }  # fmt: skip
    assert await state(lab, "arm-1", TOMORROW, 10) == ("held", "2026-11-24T08:32:00+05:30")
    # Nobody else may book or hold it; the holder holds one slot at a time.
    taken = {"detail": "Slot 10 on 2026-11-25 is not available"}
    assert await post(lab, "/bookings", tokens["bob"], slot("arm-1", TOMORROW, 10)) == (409, taken)
    assert await post(lab, "/holds", tokens["bob"], slot("arm-1", TOMORROW, 10)) == (409, taken)
    assert await post(lab, "/holds", tokens["alice"], slot("arm-1", TOMORROW, 11)) == (
        409, {"detail": "You already hold a slot: confirm or release it first"},
    )  # fmt: skip
    # Another student cannot confirm or drop it: to them it does not exist.
    gone = {"detail": f"Hold {hold_id} does not exist"}
    assert await post(lab, f"/holds/{hold_id}/confirm", tokens["bob"]) == (404, gone)
    resp = await lab.delete(f"/holds/{hold_id}", headers=bearer(tokens["bob"]))
    assert (resp.status, await resp.json()) == (404, gone)
    status, made = await post(lab, f"/holds/{hold_id}/confirm", tokens["alice"])
    assert (status, made["success"], made["booking"]["id"]) == (201, True, hold_id)
    assert made["booking"]["status"] == "booked"
    assert await state(lab, "arm-1", TOMORROW, 10) == ("booked", None)
    # Confirmed once: a second confirm finds no hold.
    assert await post(lab, f"/holds/{hold_id}/confirm", tokens["alice"]) == (
        409, {"detail": f"Hold {hold_id} is cancelled"},
    )  # fmt: skip


async def test_a_hold_lapses_and_the_slot_is_free(lab: Any, tokens: Any, clock: Clock) -> None:
    _, body = await post(lab, "/holds", tokens["alice"], slot("arm-1", TOMORROW, 10))
    hold_id = body["hold"]["id"]
    clock.advance(seconds=119)
    await sweep(lab)
    assert (await state(lab, "arm-1", TOMORROW, 10))[0] == "held"
    clock.advance(seconds=1)
    await sweep(lab)
    assert await state(lab, "arm-1", TOMORROW, 10) == ("free", None)
    lapsed = {"detail": f"Hold {hold_id} has lapsed"}
    assert await post(lab, f"/holds/{hold_id}/confirm", tokens["alice"]) == (409, lapsed)
    status, _ = await post(lab, "/bookings", tokens["bob"], slot("arm-1", TOMORROW, 10))
    assert status == 201


async def test_an_expired_hold_gives_way_before_the_sweep(
    lab: Any, tokens: Any, clock: Clock
) -> None:
    await post(lab, "/holds", tokens["alice"], slot("arm-1", TOMORROW, 10))
    clock.advance(minutes=3)  # expired, not yet swept: the next change lapses it itself
    status, body = await post(lab, "/holds", tokens["bob"], slot("arm-1", TOMORROW, 10))
    assert (status, body["hold"]["srn"]) == (201, BOB_SRN)
    status, _ = await post(lab, "/holds", tokens["alice"], slot("arm-1", TOMORROW, 11))
    assert status == 201  # her own lapsed hold no longer counts


async def test_confirming_counts_the_quotas_then(make: Any, settings: Any) -> None:
    lab = await make(resources=(ARM, CAGE), max_bookings_per_day=1)
    token = await login(lab)
    _, hold = await post(lab, "/holds", token, slot("arm-1", TOMORROW, 10))
    status, _ = await post(lab, "/bookings", token, slot("arm-1", TOMORROW, 9))
    assert status == 201  # a hold is not a booking: it does not count
    assert await post(lab, f"/holds/{hold['hold']['id']}/confirm", token) == (
        409, {"detail": "Booking limit reached: at most 1 per day"},
    )  # fmt: skip


async def test_letting_go_of_a_hold(lab: Any, tokens: Any) -> None:
    _, body = await post(lab, "/holds", tokens["alice"], slot("arm-1", TOMORROW, 10))
    hold_id = body["hold"]["id"]
    resp = await lab.delete(f"/holds/{hold_id}", headers=bearer(tokens["alice"]))
    assert resp.status == 200
    assert (await resp.json())["hold"]["status"] == "cancelled"
    assert await state(lab, "arm-1", TOMORROW, 10) == ("free", None)
    resp = await lab.delete(f"/holds/{hold_id}", headers=bearer(tokens["alice"]))
    assert (resp.status, await resp.json()) == (409, {"detail": f"Hold {hold_id} is cancelled"})


async def test_hold_refusals(lab: Any, tokens: Any) -> None:
    assert (await lab.post("/holds", json=slot("arm-1", TOMORROW, 10))).status == 422
    resp = await lab.post("/holds", json=slot("arm-1", TOMORROW, 10), headers=bearer("x" * 43))
    assert resp.status == 401
    assert await post(lab, "/holds", tokens["alice"], slot("arm-1", TOMORROW, 2)) == (
        422, {"detail": "Request validation failed",
              "errors": {"slot_id": ["Slot 2 does not exist: valid slots are 3 to 14"]}},
    )  # fmt: skip
    assert (await post(lab, "/holds", tokens["alice"], slot("nope", TOMORROW, 10)))[0] == 404
    # The campus and the window hold for holds as for bookings.
    assert (await post(lab, "/holds", tokens["carol"], slot("arm-1", TOMORROW, 10)))[0] == 403
    assert await post(lab, "/holds", tokens["alice"], slot("arm-1", "2026-12-05", 10)) == (
        400, {"detail": "Bookings for 2026-12-05 open at 2026-11-28T00:00:00+05:30"},
    )  # fmt: skip


# ---- the waitlist ------------------------------------------------------------------------------


async def waitlist(lab: Any, token: str) -> list[dict[str, Any]]:
    resp = await lab.get("/me/waitlist", headers=bearer(token))
    assert resp.headers["Cache-Control"] == "no-store"
    entries: list[dict[str, Any]] = (await resp.json())["waitlist"]
    return entries


async def test_the_waitlist_in_order_with_live_positions(
    lab: Any, tokens: Any, clock: Clock
) -> None:
    cage = slot("cage", TOMORROW, 18)
    _, booked = await post(lab, "/bookings", tokens["bob"], cage)
    status, body = await post(lab, "/waitlist", tokens["alice"], cage)
    assert status == 201
    assert body == {
        "entry": {
            "id": body["entry"]["id"], "resource": "cage", "date": TOMORROW, "slot_id": 18,
            "start": f"{TOMORROW}T09:00:00+05:30", "end": f"{TOMORROW}T09:30:00+05:30",
            "status": "waiting", "position": 1, "hold_id": None, "hold_expires_at": None,
        }
    }  # fmt: skip
    for name in ("carol", "dave"):
        assert (await post(lab, "/waitlist", tokens[name], cage))[0] == 201
    assert [e["position"] for e in await waitlist(lab, tokens["dave"])] == [3]
    assert await post(lab, "/waitlist", tokens["alice"], cage) == (
        409, {"detail": "You are on this slot's waitlist already"},
    )  # fmt: skip
    assert await post(lab, "/waitlist", tokens["bob"], cage) == (
        409, {"detail": "You keep this slot already"},
    )  # fmt: skip
    assert await post(lab, "/waitlist", tokens["bob"], slot("cage", TOMORROW, 19)) == (
        409, {"detail": "Slot 19 on 2026-11-25 is free: book it instead of waiting"},
    )  # fmt: skip
    # Alice leaves: everyone behind her moves up.
    entry = body["entry"]["id"]
    resp = await lab.delete(f"/waitlist/{entry}", headers=bearer(tokens["alice"]))
    assert resp.status == 204
    assert await waitlist(lab, tokens["alice"]) == []
    assert [e["position"] for e in await waitlist(lab, tokens["dave"])] == [2]
    resp = await lab.delete(f"/waitlist/{entry}", headers=bearer(tokens["alice"]))
    assert (resp.status, await resp.json()) == (
        404, {"detail": f"Waitlist entry {entry} does not exist"},
    )  # fmt: skip
    # Bob cancels: Carol, first in line, is offered the slot as a hold.
    await lab.delete(f"/bookings/{booked['booking']['id']}", headers=bearer(tokens["bob"]))
    (offer,) = await waitlist(lab, tokens["carol"])
    assert (offer["status"], offer["position"]) == ("offered", 0)
    assert offer["hold_expires_at"] == "2026-11-24T08:35:00+05:30"  # waitlist_hold_seconds
    assert await state(lab, "cage", TOMORROW, 18) == ("held", "2026-11-24T08:35:00+05:30")
    assert [e["position"] for e in await waitlist(lab, tokens["dave"])] == [1]
    # She lets it lapse: Dave is next.
    clock.advance(seconds=300)
    await sweep(lab)
    assert await waitlist(lab, tokens["carol"]) == []
    (offer,) = await waitlist(lab, tokens["dave"])
    assert offer["status"] == "offered"
    status, made = await post(lab, f"/holds/{offer['hold_id']}/confirm", tokens["dave"])
    assert (status, made["booking"]["srn"]) == (201, DAVE.srn)
    assert await waitlist(lab, tokens["dave"]) == []


async def test_an_offer_reaches_the_students_socket(lab: Any, tokens: Any) -> None:
    cage = slot("cage", TOMORROW, 18)
    _, booked = await post(lab, "/bookings", tokens["bob"], cage)
    await post(lab, "/waitlist", tokens["alice"], cage)
    await post(lab, "/waitlist", tokens["carol"], cage)
    sockets = {}
    for name in ("alice", "carol"):
        ws = await connect(lab)
        await ws.send_json({"type": "authenticate", "token": tokens[name]})
        assert (await receive(ws))["type"] == "auth_response"
        sockets[name] = ws
    await lab.delete(f"/bookings/{booked['booking']['id']}", headers=bearer(tokens["bob"]))
    offered = await receive(sockets["alice"])
    assert offered["type"] == "hold_offered"
    assert (offered["data"]["hold"]["slot_id"], offered["data"]["hold"]["srn"]) == (18, ALICE_SRN)
    assert offered["data"]["hold"]["expires_at"] == "2026-11-24T08:35:00+05:30"
    places = await receive(sockets["alice"])
    assert places["type"] == "waitlist"
    assert [e["status"] for e in places["data"]["waitlist"]] == ["offered"]
    moved = await receive(sockets["carol"])
    assert moved["type"] == "waitlist"
    assert [e["position"] for e in moved["data"]["waitlist"]] == [1]
    for ws in sockets.values():
        await ws.close()


async def test_a_socket_signed_out_is_told_no_more_offers(lab: Any, tokens: Any) -> None:
    """Alice signs her socket out while she waits: the offer is made (her waitlist says
    so) but her socket, still following the cage's board, is not told of it."""
    cage = slot("cage", TOMORROW, 18)
    _, booked = await post(lab, "/bookings", tokens["bob"], cage)
    await post(lab, "/waitlist", tokens["alice"], cage)
    ws = await connect(lab)
    await ws.send_json({"type": "authenticate", "token": tokens["alice"]})
    assert (await receive(ws))["type"] == "auth_response"
    await ws.send_json({"type": "subscribe", "resource": "cage", "date": TOMORROW})
    assert (await receive(ws))["type"] == "slots_update"
    await ws.send_json({"type": "logout"})
    assert await receive(ws) == {"type": "logout_response", "success": True}
    await lab.delete(f"/bookings/{booked['booking']['id']}", headers=bearer(tokens["bob"]))
    # Carol books the next slot: her board is the last message this test waits for.
    await post(lab, "/bookings", tokens["carol"], slot("cage", TOMORROW, 19))
    kinds = []
    while True:
        msg = await receive(ws)
        kinds.append(msg["type"])
        cells = {c["id"]: c for c in msg.get("data", {}).get("slots", [])}
        if msg["type"] == "slots_update" and cells.get(19, {}).get("state") == "booked":
            break
    assert set(kinds) == {"slots_update"}
    again = await login(lab, ALICE)
    (offer,) = await waitlist(lab, again)
    assert offer["status"] == "offered"
    await ws.close()


# ---- release, no-shows, suspensions ------------------------------------------------------------


async def my_status(lab: Any, token: str, booking_id: int) -> str:
    resp = await lab.get(f"/me/bookings?from={TODAY}", headers=bearer(token))
    return next(b["status"] for b in (await resp.json())["bookings"] if b["id"] == booking_id)


async def test_done_early_frees_the_rest_of_the_hour(lab: Any, tokens: Any) -> None:
    _, now = await post(lab, "/bookings", tokens["alice"], slot("arm-1", TODAY, 8))  # 08:00-09:00
    _, later = await post(lab, "/bookings", tokens["alice"], slot("arm-1", TODAY, 9))
    now_id, later_id = now["booking"]["id"], later["booking"]["id"]
    assert await post(lab, f"/bookings/{later_id}/release", tokens["alice"]) == (
        409, {"detail": f"Booking {later_id} is not under way"},
    )  # fmt: skip
    assert await post(lab, f"/bookings/{now_id}/release", tokens["bob"]) == (
        404, {"detail": f"Booking {now_id} does not exist"},
    )  # fmt: skip
    status, body = await post(lab, f"/bookings/{now_id}/release", tokens["alice"])
    assert (status, body["success"], body["booking"]["status"]) == (200, True, "completed")
    assert await state(lab, "arm-1", TODAY, 8) == ("free", None)
    status, _ = await post(lab, "/bookings", tokens["bob"], slot("arm-1", TODAY, 8))
    assert status == 201
    assert await post(lab, f"/bookings/{now_id}/release", tokens["alice"]) == (
        409, {"detail": f"Booking {now_id} is over"},
    )  # fmt: skip


async def test_a_no_show_frees_the_slot(lab: Any, tokens: Any, clock: Clock) -> None:
    _, body = await post(lab, "/bookings", tokens["alice"], slot("arm-1", TODAY, 9))  # 09:00
    booking_id = body["booking"]["id"]
    clock.advance(minutes=39, seconds=59)  # 09:09:59
    await sweep(lab)
    assert await my_status(lab, tokens["alice"], booking_id) == "booked"
    clock.advance(seconds=1)  # 09:10: no_show_minutes after the start
    await sweep(lab)
    assert await my_status(lab, tokens["alice"], booking_id) == "no_show"
    assert await state(lab, "arm-1", TODAY, 9) == ("free", None)
    status, _ = await post(lab, "/bookings", tokens["bob"], slot("arm-1", TODAY, 9))
    assert status == 201
    # The lab hears of it through the outbox, written with the change.
    events = await lab.app[STORAGE].perform(outbox_kinds())
    assert ("no_show", booking_id) in events


def outbox_kinds() -> Any:
    rows = yield ("SELECT kind, booking_id FROM outbox ORDER BY id", {})
    return [(str(k), int(b)) for k, b in rows]


async def test_a_late_booking_has_its_own_grace(lab: Any, tokens: Any, clock: Clock) -> None:
    clock.advance(minutes=35)  # 09:05, five minutes into slot 9
    _, body = await post(lab, "/bookings", tokens["alice"], slot("arm-1", TODAY, 9))
    clock.advance(minutes=9)  # 09:14
    await sweep(lab)
    assert await my_status(lab, tokens["alice"], body["booking"]["id"]) == "booked"
    clock.advance(minutes=1)  # 09:15: ten minutes after it was made
    await sweep(lab)
    assert await my_status(lab, tokens["alice"], body["booking"]["id"]) == "no_show"


async def test_no_shows_suspend_until_an_admin_lifts_it(
    lab: Any, tokens: Any, clock: Clock
) -> None:
    bob = tokens["bob"]
    for slot_id in (9, 10):  # no_show_limit = 2
        await post(lab, "/bookings", bob, slot("arm-1", TODAY, slot_id))
    clock.advance(hours=2)  # 10:30: both missed
    await sweep(lab)
    suspended = {"detail": "Bookings are suspended until 2026-12-01T10:30:00+05:30 after"
                           " repeated no-shows"}  # fmt: skip
    assert await post(lab, "/bookings", bob, slot("arm-1", TOMORROW, 10)) == (403, suspended)
    assert await post(lab, "/holds", bob, slot("arm-1", TOMORROW, 10)) == (403, suspended)
    resp = await lab.get("/me/suspension", headers=bearer(bob))
    assert await resp.json() == {"srn": BOB_SRN, "suspended_until": "2026-12-01T10:30:00+05:30"}
    resp = await lab.delete(f"/admin/suspensions/{BOB_SRN}", headers=bearer(bob))
    assert resp.status == 403
    resp = await lab.get(f"/me/suspension?srn={ALICE_SRN}", headers=bearer(bob))
    assert resp.status == 403
    resp = await lab.delete(f"/admin/suspensions/{BOB_SRN}", headers=bearer(tokens["alice"]))
    assert (resp.status, await resp.json()) == (200, {"srn": BOB_SRN, "suspended_until": None})
    resp = await lab.delete(f"/admin/suspensions/{BOB_SRN}", headers=bearer(tokens["alice"]))
    assert (resp.status, await resp.json()) == (
        404, {"detail": f"{BOB_SRN} is not suspended"},
    )  # fmt: skip
    assert (await post(lab, "/bookings", bob, slot("arm-1", TOMORROW, 10)))[0] == 201
    resp = await lab.get(f"/me/suspension?srn={BOB_SRN}", headers=bearer(tokens["alice"]))
    assert await resp.json() == {"srn": BOB_SRN, "suspended_until": None}


async def test_no_shows_off(make: Any, clock: Clock) -> None:
    lab = await make(resources=(ARM, CAGE), no_show_minutes=0, session_minutes=600.0)
    token = await login(lab)
    _, body = await post(lab, "/bookings", token, slot("arm-1", TODAY, 9))
    clock.advance(hours=1)
    await lab.app[HOUR].sweep()
    assert await my_status(lab, token, body["booking"]["id"]) == "booked"


async def test_an_offer_made_by_another_host_reaches_the_socket(
    request: pytest.FixtureRequest, aiohttp_client: Any, settings: Any, clock: Clock
) -> None:
    """Bob cancels on one host; Alice, first in line, is connected to the other."""
    pytest.importorskip("asyncpg")
    url = await new_database(request.getfixturevalue("pg_cluster").url)
    changed = replace(settings, resources=(ARM, CAGE), database_url=url)
    one, two = [
        await aiohttp_client(create_app(changed, clock=clock, timer=clock.timer)) for _ in "12"
    ]
    alice, bob = await login(two, ALICE), await login(one, BOB)
    cage = slot("cage", TOMORROW, 18)
    _, booked = await post(one, "/bookings", bob, cage)
    await post(two, "/waitlist", alice, cage)
    ws = await connect(two)
    await ws.send_json({"type": "authenticate", "token": alice})
    assert (await receive(ws))["type"] == "auth_response"
    await one.delete(f"/bookings/{booked['booking']['id']}", headers=bearer(bob))
    offered = await receive(ws)
    assert (offered["type"], offered["data"]["hold"]["srn"]) == ("hold_offered", ALICE_SRN)
    places = await receive(ws)
    assert [e["status"] for e in places["data"]["waitlist"]] == ["offered"]
    await ws.close()


async def test_checked_in_is_no_no_show(lab: Any, tokens: Any, clock: Clock) -> None:
    _, body = await post(lab, "/bookings", tokens["alice"], slot("arm-1", TODAY, 9))  # 09:00
    booking_id = body["booking"]["id"]
    clock.advance(minutes=35)  # 09:05
    status, checked = await post(lab, f"/bookings/{booking_id}/check-in", tokens["alice"])
    assert (status, checked["booking"]["checked_in_at"]) == (200, "2026-11-24T03:35:00+00:00")
    clock.advance(minutes=30)  # 09:35
    await sweep(lab)
    assert await my_status(lab, tokens["alice"], booking_id) == "booked"
    clock.advance(minutes=30)  # 10:05: the slot has ended
    await sweep(lab)
    assert await my_status(lab, tokens["alice"], booking_id) == "completed"


async def test_the_labs_hear_sessions_start_and_end(make: Any, clock: Clock, tmp_path: Any) -> None:
    """session_starting at the lab's early minutes before the start, session_ended after
    the end, each once however often the sweep runs; nothing for a resource without a lab."""
    lab = await make(
        resources=(with_lab(ARM), CAGE), public_url="http://127.0.0.1:1",
        grant_signing_keys=key_files(tmp_path, "k"), session_minutes=600.0, no_show_minutes=0,
    )  # fmt: skip
    token = await login(lab)
    _, arm = await post(lab, "/bookings", token, slot("arm-1", TODAY, 9))  # 09:00, early 5
    _, cage = await post(lab, "/bookings", token, slot("cage", TODAY, 18))  # 09:00, no lab
    arm_id, cage_id = arm["booking"]["id"], cage["booking"]["id"]

    async def events() -> list[tuple[str, int]]:
        kinds = await lab.app[STORAGE].perform(outbox_kinds())
        return [(k, b) for k, b in kinds if k.startswith("session_")]

    clock.advance(minutes=24, seconds=59)  # 08:54:59
    await sweep(lab)
    assert await events() == []
    clock.advance(seconds=1)  # 08:55
    await sweep(lab)
    await sweep(lab)
    assert await events() == [("session_starting", arm_id)]
    clock.advance(hours=1, minutes=5)  # 10:00: both ended
    await sweep(lab)
    await sweep(lab)
    assert await events() == [("session_starting", arm_id), ("session_ended", arm_id)]
    assert cage_id not in {b for _, b in await events()}
