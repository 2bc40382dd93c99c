"""The calendar's HTTP contract: resources, boards by date, bookings, every refusal with its
exact status and sentence, series and blackouts, and the original API on top."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from rero.setting_checks import FakeUser, ResourceConfig
from tests.helpers import (
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
    login,
)


@pytest.fixture
async def lab(make: Any, settings: Any) -> Any:
    return await make(
        resources=(ARM, CAGE),
        admins=(ALICE_SRN,),
        fake_users=(*settings.fake_users, CAROL),
    )


async def book(client: Any, token: str, resource: str, day: str, slot: int, **more: Any) -> Any:
    body = {"resource": resource, "date": day, "slot_id": slot, **more}
    return await client.post("/bookings", json=body, headers=bearer(token))


async def refused(resp: Any) -> tuple[int, Any]:
    return resp.status, await resp.json()


# ---- resources and boards ---------------------------------------------------------------------


async def test_resources_each_with_its_window(lab: Any, clock: Clock) -> None:
    body = await (await lab.get("/resources")).json()
    assert body == {
        "resources": [
            {
                "id": "arm-1", "name": "Robot arm 1", "site": "RR", "timezone": "Asia/Kolkata",
                "slot_minutes": 60, "opens": "03:00", "closes": "15:00",
                "booking_window_days": 7, "campuses": ["RR"], "default": True,
                "window": {"first_date": TODAY, "last_date": "2026-12-01",
                           "next_opens_at": "2026-11-25T00:00:00+05:30"},
            },
            {
                "id": "cage", "name": "Drone cage", "site": "EC", "timezone": "Asia/Kolkata",
                "slot_minutes": 30, "opens": "09:00", "closes": "11:00",
                "booking_window_days": 2, "campuses": [], "default": False,
                # 08:30 is past 08:00: today + 2 is open already.
                "window": {"first_date": TODAY, "last_date": "2026-11-26",
                           "next_opens_at": "2026-11-25T08:00:00+05:30"},
            },
        ]
    }  # fmt: skip
    clock.advance(minutes=-31)  # 07:59: the newest day is one less
    body = await (await lab.get("/resources")).json()
    assert body["resources"][1]["window"]["last_date"] == TOMORROW


async def test_a_board_for_a_date(lab: Any) -> None:
    board = await (await lab.get(f"/resources/cage/slots?date={TOMORROW}")).json()
    assert board == {
        "resource": "cage", "date": TOMORROW, "timezone": "Asia/Kolkata", "opens_at": None,
        "slots": [
            {"id": n, "start": f"{TOMORROW}T{start}:00+05:30", "end": f"{TOMORROW}T{end}:00+05:30",
             "state": "free", "is_booked": False, "booked_by": None, "booked_at": None,
             "reason": None, "held_until": None}
            for n, start, end in ((18, "09:00", "09:30"), (19, "09:30", "10:00"),
                                  (20, "10:00", "10:30"), (21, "10:30", "11:00"))
        ],
        "available_slots": [18, 19, 20, 21], "booked_slots": [],
    }  # fmt: skip
    # Today by default: slots that ended are closed, saying so.
    today = await (await lab.get("/resources/arm-1/slots")).json()
    assert today["date"] == TODAY
    states = {s["id"]: (s["state"], s["reason"]) for s in today["slots"]}
    assert states[7] == ("closed", "ended")
    assert states[8] == ("free", None)  # 08:00-09:00: under way, still bookable
    assert today["available_slots"] == list(range(8, 15))


async def test_closed_days_and_days_not_yet_open(lab: Any) -> None:
    sunday = await (await lab.get("/resources/arm-1/slots?date=2026-11-29")).json()
    assert {(s["state"], s["reason"]) for s in sunday["slots"]} == {("closed", "closed on Sundays")}
    holiday = await (await lab.get("/resources/arm-1/slots?date=2026-11-27")).json()
    assert {(s["state"], s["reason"]) for s in holiday["slots"]} == {("closed", "holiday")}
    later = await (await lab.get("/resources/arm-1/slots?date=2026-12-02")).json()
    assert later["opens_at"] == "2026-11-25T00:00:00+05:30"
    assert {(s["state"], s["reason"]) for s in later["slots"]} == {("closed", "not yet open")}
    assert later["available_slots"] == []


async def test_board_errors(lab: Any) -> None:
    assert await refused(await lab.get("/resources/nope/slots")) == (
        404, {"detail": "Resource nope does not exist"},
    )  # fmt: skip
    status, body = await refused(await lab.get("/resources/arm-1/slots?date=2026-13-01"))
    assert status == 422
    assert body["errors"] == {"date": ["Not a valid date."]}


# ---- booking and its refusals -----------------------------------------------------------------


async def test_book_then_cancel(lab: Any) -> None:
    token = await login(lab)
    resp = await book(lab, token, "arm-1", TOMORROW, 10)
    assert resp.status == 201
    body = await resp.json()
    booking = body["booking"]
    assert body == {
        "success": True,
        "booking": {
            "id": booking["id"], "resource": "arm-1", "date": TOMORROW, "slot_id": 10,
            "start": f"{TOMORROW}T10:00:00+05:30", "end": f"{TOMORROW}T11:00:00+05:30",
            "srn": ALICE_SRN, "status": "booked", "created_at": "2026-11-24T03:00:00+00:00",
            "series_id": None, "checked_in_at": None,
        },
    }  # fmt: skip
    board = await (await lab.get(f"/resources/arm-1/slots?date={TOMORROW}")).json()
    slot = next(s for s in board["slots"] if s["id"] == 10)
    assert (slot["state"], slot["booked_by"]) == ("booked", ALICE_SRN)
    assert board["booked_slots"] == [10]
    resp = await lab.get("/me/bookings", headers=bearer(token))
    assert resp.headers["Cache-Control"] == "no-store"  # a student's own: never cached
    assert await resp.json() == {"bookings": [booking]}
    # Only its owner (or an admin) cancels it; a cancelled booking stays cancelled.
    bob = await login(lab, BOB)
    other = await lab.delete(f"/bookings/{booking['id']}", headers=bearer(bob))
    assert await refused(other) == (403, {"detail": "You can only cancel your own bookings"})
    gone = await lab.delete(f"/bookings/{booking['id']}", headers=bearer(token))
    assert await gone.json() == {"success": True, "booking": {**booking, "status": "cancelled"}}
    again = await lab.delete(f"/bookings/{booking['id']}", headers=bearer(token))
    assert await refused(again) == (
        409,
        {"detail": f"Booking {booking['id']} is already cancelled"},
    )
    missing = await lab.delete("/bookings/999999", headers=bearer(token))
    assert await refused(missing) == (404, {"detail": "Booking 999999 does not exist"})
    assert (await lab.delete("/bookings/1")).status == 401
    assert await (await lab.get("/me/bookings", headers=bearer(token))).json() == {"bookings": []}
    everything = await lab.get(f"/me/bookings?from={TODAY}&to={TOMORROW}", headers=bearer(token))
    assert [b["status"] for b in (await everything.json())["bookings"]] == ["cancelled"]


async def test_every_refusal_says_why(lab: Any, clock: Clock) -> None:
    alice, bob = await login(lab), await login(lab, BOB)
    assert (await book(lab, alice, "arm-1", TOMORROW, 10)).status == 201
    cases = [
        ((bob, "arm-1", TOMORROW, 10), 409, "Slot 10 on 2026-11-25 is not available"),
        ((bob, "arm-1", TODAY, 4), 400, "Slot 4 on 2026-11-24 has ended"),
        ((bob, "arm-1", "2026-11-23", 12), 400, "Slot 12 on 2026-11-23 has ended"),
        ((bob, "arm-1", "2026-12-02", 10), 400,
         "Bookings for 2026-12-02 open at 2026-11-25T00:00:00+05:30"),
        ((bob, "arm-1", "2027-06-01", 10), 400,
         "Bookings for 2027-06-01 open at 2027-05-25T00:00:00+05:30"),
        ((bob, "arm-1", "2026-11-29", 10), 409,
         "Slot 10 on 2026-11-29 is closed: closed on Sundays"),
        ((bob, "arm-1", "2026-11-27", 10), 409, "Slot 10 on 2026-11-27 is closed: holiday"),
        ((bob, "nope", TOMORROW, 10), 404, "Resource nope does not exist"),
    ]  # fmt: skip
    for (token, *where), status, detail in cases:
        assert await refused(await book(lab, token, *where)) == (status, {"detail": detail})
    carol = await login(lab, CAROL_LOGIN)
    assert await refused(await book(lab, carol, "arm-1", TOMORROW, 11)) == (
        403, {"detail": "Robot arm 1 is for campus RR only"},
    )  # fmt: skip
    assert (await book(lab, carol, "cage", TOMORROW, 19)).status == 201  # everyone's
    status, body = await refused(await book(lab, bob, "arm-1", TOMORROW, 99))
    assert (status, body["errors"]) == (
        422, {"slot_id": ["Slot 99 does not exist: valid slots are 3 to 14"]},
    )  # fmt: skip
    status, body = await refused(await book(lab, bob, "arm-1", "tomorrow", 10))
    assert (status, body["errors"]) == (422, {"date": ["Not a valid date."]})
    resp = await lab.post("/bookings", json={"resource": "arm-1", "date": TOMORROW, "slot_id": 9})
    assert resp.status == 422  # neither a token nor credentials
    resp = await lab.post(
        "/bookings", json={"resource": "arm-1", "date": TOMORROW, "slot_id": 9, **BOB}
    )
    assert resp.status == 201  # credentials instead of a token, as everywhere


@pytest.mark.parametrize(
    ("quota", "sentence", "days"),
    [
        ({"max_bookings_per_day": 2}, "at most 2 per day", (TOMORROW, TOMORROW, TOMORROW)),
        ({"max_bookings_per_week": 2}, "at most 2 per week",
         (TOMORROW, "2026-11-26", "2026-11-28")),
        ({"max_upcoming_bookings": 2}, "at most 2 upcoming",
         (TOMORROW, "2026-11-26", "2026-11-30")),
    ],
)  # fmt: skip
async def test_quotas(
    make: Any, quota: dict[str, int], sentence: str, days: tuple[str, ...]
) -> None:
    client = await make(resources=(ARM, CAGE), **quota)
    token = await login(client)
    first, second, third = days
    assert (await book(client, token, "arm-1", first, 10)).status == 201
    assert (await book(client, token, "cage", second, 19)).status == 201  # across resources
    over = await book(client, token, "arm-1", third, 12)
    assert await refused(over) == (409, {"detail": f"Booking limit reached: {sentence}"})
    # Someone else's slot is still "not available", whoever is at their limit.
    assert (await book(client, await login(client, BOB), "arm-1", third, 13)).status == 201
    assert (await refused(await book(client, token, "arm-1", third, 13)))[0] == 409


async def test_a_resource_sets_its_own_quota(make: Any) -> None:
    capped = ResourceConfig(**{**ARM.__dict__, "max_bookings_per_day": 1})
    client = await make(resources=(capped, CAGE))
    token = await login(client)
    assert (await book(client, token, "arm-1", TOMORROW, 10)).status == 201
    over = await book(client, token, "arm-1", TOMORROW, 11)
    assert await refused(over) == (409, {"detail": "Booking limit reached: at most 1 per day"})
    assert (await book(client, token, "cage", TOMORROW, 19)).status == 201  # its own, not arm-1's


async def test_an_admin_books_for_a_student(lab: Any) -> None:
    admin, bob = await login(lab), await login(lab, BOB)
    resp = await book(lab, admin, "arm-1", TOMORROW, 10, srn=BOB_SRN)
    assert resp.status == 201
    assert (await resp.json())["booking"]["srn"] == BOB_SRN
    mine = await (await lab.get("/me/bookings", headers=bearer(bob))).json()
    assert [b["slot_id"] for b in mine["bookings"]] == [10]
    other = await book(lab, bob, "arm-1", TOMORROW, 11, srn=ALICE_SRN)
    assert await refused(other) == (403, {"detail": "Admin access required"})
    # An admin's cancel is audited as such only when the booking was someone else's.
    own = (await (await book(lab, admin, "arm-1", TOMORROW, 12)).json())["booking"]
    theirs = mine["bookings"][0]
    for booking in (theirs, own):
        assert (await lab.delete(f"/bookings/{booking['id']}", headers=bearer(admin))).ok
    audit = await (await lab.get("/admin/audit?limit=2", headers=bearer(admin))).json()
    assert [(e["action"], e["holder_srn"]) for e in audit["events"]] == [
        ("cancelled", ALICE_SRN), ("admin_cancelled", BOB_SRN),
    ]  # fmt: skip


async def test_a_session_from_before_profiles_is_expired(lab: Any) -> None:
    from rero.identity import Token
    from rero.keys import STORAGE

    old = Token("a-version-1-session-token")  # stored before sessions kept the profile
    await lab.server.app[STORAGE]._db.execute(
        "INSERT INTO sessions (token_hash, srn, expires_at, created_at) VALUES (?, ?, ?, ?)",
        (old.digest, ALICE_SRN, "2999-01-01T00:00:00+00:00", "2026-11-24T02:00:00+00:00"),
    )
    resp = await book(lab, old.value, "arm-1", TOMORROW, 10)
    assert await refused(resp) == (401, {"detail": "Invalid or expired session"})


# ---- series -------------------------------------------------------------------------------------


async def test_a_weekly_series(lab: Any, clock: Clock) -> None:
    admin, bob = await login(lab), await login(lab, BOB)
    assert (await book(lab, bob, "arm-1", "2026-12-02", 10)).status == 400  # not open for Bob
    clock.advance(days=1)  # Wednesday 25th: 2026-12-02 opens
    admin, bob = await login(lab), await login(lab, BOB)
    assert (await book(lab, bob, "arm-1", "2026-12-02", 10)).status == 201
    resp = await book(lab, admin, "arm-1", TOMORROW, 10, repeat_weeks=4)
    assert resp.status == 201
    body = await resp.json()
    assert [(b["date"], b["series_id"]) for b in body["bookings"]] == [
        (TOMORROW, body["series_id"]), ("2026-12-09", body["series_id"]),
        ("2026-12-16", body["series_id"]),
    ]  # fmt: skip
    assert body["refused"] == [
        {"date": "2026-12-02", "reason": "Slot 10 on 2026-12-02 is not available"},
    ]
    too_long = await book(lab, admin, "arm-1", TOMORROW, 11, repeat_weeks=13)
    assert (await refused(too_long))[1]["errors"] == {"repeat_weeks": ["Must be at most 12."]}
    assert (await book(lab, bob, "arm-1", TOMORROW, 11, repeat_weeks=2)).status == 403
    gone = await lab.delete(
        f"/bookings/series/{body['series_id']}?from=2026-12-09", headers=bearer(admin)
    )
    assert [b["date"] for b in (await gone.json())["cancelled"]] == ["2026-12-09", "2026-12-16"]
    nothing = await book(lab, admin, "arm-1", "2026-11-29", 10, repeat_weeks=1)  # a Sunday
    assert await refused(nothing) == (409, {
        "detail": "No date of the series could be booked",
        "refused": [{"date": "2026-11-29",
                     "reason": "Slot 10 on 2026-11-29 is closed: closed on Sundays"}],
    })  # fmt: skip
    unknown = await lab.delete("/bookings/series/nope", headers=bearer(admin))
    assert await refused(unknown) == (404, {"detail": "Series nope does not exist"})


# ---- blackouts ------------------------------------------------------------------------------


async def test_a_blackout_closes_and_cancels(lab: Any) -> None:
    admin, bob = await login(lab), await login(lab, BOB)
    taken = (await (await book(lab, bob, "arm-1", TOMORROW, 10)).json())["booking"]
    assert (await book(lab, bob, "arm-1", TOMORROW, 13)).status == 201
    body = {"resource": "arm-1", "start": f"{TOMORROW}T09:30:00+05:30",
            "end": f"{TOMORROW}T12:00:00+05:30", "reason": "servo repair"}  # fmt: skip
    assert (await lab.post("/admin/blackouts", json=body, headers=bearer(bob))).status == 403
    resp = await lab.post("/admin/blackouts", json=body, headers=bearer(admin))
    assert resp.status == 201
    made = await resp.json()
    assert made == {
        "blackout": {"id": made["blackout"]["id"], "resource": "arm-1",
                     "start": f"{TOMORROW}T09:30:00+05:30", "end": f"{TOMORROW}T12:00:00+05:30",
                     "reason": "servo repair"},
        "cancelled": [taken["id"]],
    }  # fmt: skip
    board = await (await lab.get(f"/resources/arm-1/slots?date={TOMORROW}")).json()
    states = {s["id"]: (s["state"], s["reason"]) for s in board["slots"]}
    assert [states[n] for n in (9, 10, 11, 12, 13)] == [
        ("closed", "servo repair"), ("closed", "servo repair"), ("closed", "servo repair"),
        ("free", None), ("booked", None),
    ]  # fmt: skip
    assert await refused(await book(lab, bob, "arm-1", TOMORROW, 11)) == (
        409, {"detail": "Slot 11 on 2026-11-25 is closed: servo repair"},
    )  # fmt: skip
    mine = await (await lab.get(f"/me/bookings?from={TOMORROW}", headers=bearer(bob))).json()
    assert [(b["slot_id"], b["status"]) for b in mine["bookings"]] == [
        (10, "cancelled"), (13, "booked"),
    ]  # fmt: skip
    audit = await (await lab.get("/admin/audit", headers=bearer(admin))).json()
    assert (audit["events"][0]["action"], audit["events"][0]["reason"]) == ("cancelled", "blackout")
    listed = await (await lab.get("/admin/blackouts?resource=arm-1", headers=bearer(admin))).json()
    assert listed == {"blackouts": [made["blackout"]]}
    elsewhere = await lab.get("/admin/blackouts?resource=cage", headers=bearer(admin))
    assert await elsewhere.json() == {"blackouts": []}
    lifted = await lab.delete(f"/admin/blackouts/{made['blackout']['id']}", headers=bearer(admin))
    assert await lifted.json() == {"blackout": made["blackout"]}
    assert (await book(lab, bob, "arm-1", TOMORROW, 11)).status == 201
    again = await lab.delete(f"/admin/blackouts/{made['blackout']['id']}", headers=bearer(admin))
    assert await refused(again) == (
        404, {"detail": f"Blackout {made['blackout']['id']} does not exist"},
    )  # fmt: skip
    backwards = {**body, "end": body["start"]}
    resp = await lab.post("/admin/blackouts", json=backwards, headers=bearer(admin))
    assert (await refused(resp))[1]["errors"] == {"end": ["Must be after start."]}


# ---- the original API on top ------------------------------------------------------------------


async def test_the_rolling_board_is_the_default_resources_next_occurrences(
    lab: Any, clock: Clock
) -> None:
    alice = await login(lab)
    # Slot 10 today, booked through the calendar: the original board shows it.
    assert (await book(lab, alice, "arm-1", TODAY, 10)).status == 201
    board = await (await lab.get("/slots")).json()
    # Slots 3-7 have ended today: their next occurrence is Wednesday's, open and free.
    assert board["booked_slots"] == [10]
    assert board["slots"][7]["booked_by"] == ALICE_SRN


async def test_a_closed_next_occurrence_shows_booked_by_nobody(lab: Any, clock: Clock) -> None:
    clock.advance(days=2)  # Thursday 26th, 08:30: tomorrow (27th) is a holiday
    board = await (await lab.get("/slots")).json()
    slots = {s["id"]: s for s in board["slots"]}
    assert (slots[4]["is_booked"], slots[4]["booked_by"], slots[4]["booked_at"]) == (
        True, None, None,
    )  # fmt: skip
    assert slots[9]["is_booked"] is False
    assert board["booked_slots"] == [3, 4, 5, 6, 7]
    resp = await lab.post("/book-slot", json={"slot_id": 4, **BOB})
    assert await refused(resp) == (400, {"detail": "Slot 4 is not available"})


async def test_300_students_race_for_one_slot(make: Any, settings: Any) -> None:
    crowd = tuple(FakeUser(f"s{i}", f"pw-{i}", f"S {i}", f"SRN{i:04d}") for i in range(300))
    client = await make(resources=(ARM, CAGE), fake_users=crowd)
    bodies = [
        {"resource": "cage", "date": TOMORROW, "slot_id": 20, "username": f"s{i}",
         "password": f"pw-{i}"}
        for i in range(300)
    ]  # fmt: skip
    resps = await asyncio.gather(*(client.post("/bookings", json=b) for b in bodies))
    assert Counter(r.status for r in resps) == {201: 1, 409: 299}
    details = Counter([(await r.json()).get("detail") for r in resps if r.status == 409])
    assert details == {"Slot 20 on 2026-11-25 is not available": 299}
    board = await (await client.get(f"/resources/cage/slots?date={TOMORROW}")).json()
    assert board["booked_slots"] == [20]


async def test_a_version_1_database_is_upgraded_at_start(
    make: Any, settings: Any, tmp_path: Any
) -> None:
    """The original board survives the upgrade: slot 9 stays Alice's (today, 09:00)."""
    import aiosqlite

    from rero.storage.sqlite_schema import MIGRATIONS

    path = tmp_path / "db" / "rero.db"
    path.parent.mkdir(exist_ok=True)
    async with aiosqlite.connect(path) as db:
        for number, step in enumerate(MIGRATIONS, start=1):
            await step(db)
            await db.execute(f"PRAGMA user_version = {number}")
        await db.executemany(
            "INSERT INTO slots (id, start_time, end_time) VALUES (?, ?, ?)",
            [(h, f"{h:02d}:00", f"{h + 1:02d}:00") for h in range(3, 15)],
        )
        await db.execute(
            "UPDATE slots SET is_booked = 1, booked_by = ?, booked_at = ? WHERE id = 9",
            (ALICE_SRN, "2026-11-24T02:00:00+00:00"),
        )
        await db.commit()
    client = await make(database_path=str(path))
    board = await (await client.get("/slots")).json()
    assert board["booked_slots"] == [9]
    assert (board["slots"][6]["booked_by"], board["slots"][6]["booked_at"]) == (
        ALICE_SRN, "2026-11-24T02:00:00+00:00",
    )  # fmt: skip
    today = await (await client.get("/resources/lab/slots")).json()
    assert today["booked_slots"] == [9]
    assert [p.name.startswith("rero.db.v1-") for p in path.parent.iterdir()].count(True) == 1
