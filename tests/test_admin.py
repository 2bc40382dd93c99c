"""What the staff read: the audit trail filtered (JSON and CSV) and a student's record,
with the role checks, on both stores."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Generator
from typing import Any

import pytest

from rero.keys import HOUR, STORAGE
from rero.storage.queries import EVENT_KEYS
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
    login,
)


@pytest.fixture
async def lab(database: dict[str, str], make: Any, settings: Any) -> Any:
    """Alice is an admin, Carol an assistant, Bob a student; two no-shows suspend."""
    return await make(
        **database, resources=(ARM, CAGE), admins=(ALICE_SRN,), assistants=(CAROL.srn,),
        fake_users=(*settings.fake_users, CAROL), no_show_limit=2, session_minutes=3000.0,
    )  # fmt: skip


async def book(lab: Any, token: str, resource: str, day: str, slot_id: int) -> int:
    body = {"resource": resource, "date": day, "slot_id": slot_id}
    resp = await lab.post("/bookings", json=body, headers=bearer(token))
    assert resp.status == 201, await resp.text()
    return int((await resp.json())["booking"]["id"])


async def get(lab: Any, path: str, token: str) -> tuple[int, Any]:
    resp = await lab.get(path, headers=bearer(token))
    body = await (resp.text() if resp.content_type == "text/csv" else resp.json())
    return resp.status, body


async def test_the_audit_trail_filtered(lab: Any, clock: Clock) -> None:
    alice, bob, carol = (
        await login(lab, ALICE),
        await login(lab, BOB),
        await login(lab, CAROL_LOGIN),
    )
    await book(lab, alice, "arm-1", TOMORROW, 10)
    cage = await book(lab, bob, "cage", TOMORROW, 18)
    await lab.delete(f"/bookings/{cage}", headers=bearer(bob))
    clock.advance(days=1)  # the next day in the lab's zone
    await book(lab, bob, "arm-1", "2026-11-26", 9)

    def seen(body: Any) -> list[tuple[str, str, str]]:
        return [(e["action"], e["holder_srn"], e["resource"]) for e in body["events"]]

    status, body = await get(lab, f"/admin/audit?srn={BOB_SRN}", carol)
    assert (status, seen(body)) == (200, [
        ("booked", BOB_SRN, "arm-1"), ("cancelled", BOB_SRN, "cage"), ("booked", BOB_SRN, "cage"),
    ])  # fmt: skip
    assert seen((await get(lab, "/admin/audit?resource=cage", carol))[1]) == [
        ("cancelled", BOB_SRN, "cage"), ("booked", BOB_SRN, "cage"),
    ]  # fmt: skip
    assert seen((await get(lab, "/admin/audit?action=cancelled", carol))[1]) == [
        ("cancelled", BOB_SRN, "cage"),
    ]  # fmt: skip
    # Dates are the lab's: the first three events were on the 24th, the last on the 25th.
    assert len((await get(lab, f"/admin/audit?from={TODAY}&to={TODAY}", carol))[1]["events"]) == 3
    assert seen((await get(lab, f"/admin/audit?from={TOMORROW}", carol))[1]) == [
        ("booked", BOB_SRN, "arm-1"),
    ]  # fmt: skip
    status, page = await get(lab, f"/admin/audit?srn={BOB_SRN}&limit=2", alice)
    assert (status, len(page["events"])) == (200, 2)
    status, rest = await get(lab, f"/admin/audit?srn={BOB_SRN}&before={page['next_before']}", alice)
    assert (seen(rest), rest["next_before"]) == ([("booked", BOB_SRN, "cage")], None)
    for bad in ("limit=0", "from=soon", "resource=Not%20one", "action=Booked"):
        assert (await get(lab, f"/admin/audit?{bad}", alice))[0] == 422, bad
    assert await get(lab, "/admin/audit", bob) == (403, {"detail": "Staff access required"})


async def test_the_audit_trail_as_csv(lab: Any) -> None:
    alice, bob = await login(lab, ALICE), await login(lab, BOB)
    await book(lab, alice, "arm-1", TOMORROW, 10)
    await book(lab, bob, "cage", TOMORROW, 18)
    resp = await lab.get(f"/admin/audit.csv?srn={BOB_SRN}", headers=bearer(alice))
    assert (resp.status, resp.content_type, resp.charset) == (200, "text/csv", "utf-8")
    assert resp.headers["Content-Disposition"] == 'attachment; filename="rero-audit.csv"'
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    _, events = await get(lab, f"/admin/audit?srn={BOB_SRN}", alice)
    assert rows == [{k: "" if e[k] is None else str(e[k]) for k in EVENT_KEYS}
                    for e in events["events"]]  # fmt: skip
    assert (await resp.text()).splitlines()[0] == ",".join(EVENT_KEYS)
    assert (await get(lab, "/admin/audit.csv", bob))[0] == 403


async def test_a_reason_is_never_a_formula_in_the_csv(lab: Any) -> None:
    alice, bob = await login(lab, ALICE), await login(lab, BOB)
    booking = await book(lab, bob, "cage", TOMORROW, 18)
    reason = '=HYPERLINK("http://x.example","open")'
    resp = await lab.post(f"/admin/bookings/{booking}/cancel", json={"reason": reason},
                          headers=bearer(alice))  # fmt: skip
    assert resp.status == 200
    resp = await lab.get("/admin/audit.csv?action=admin_cancelled", headers=bearer(alice))
    (row,) = csv.DictReader(io.StringIO(await resp.text()))
    assert (row["reason"], row["booking_id"]) == ("'" + reason, str(booking))
    _, events = await get(lab, "/admin/audit?action=admin_cancelled", alice)
    assert events["events"][0]["reason"] == reason  # the JSON keeps the text as typed


async def test_a_students_record(lab: Any, clock: Clock) -> None:
    alice, bob, carol = (
        await login(lab, ALICE),
        await login(lab, BOB),
        await login(lab, CAROL_LOGIN),
    )
    missed = [await book(lab, bob, "arm-1", TODAY, slot) for slot in (9, 10)]
    taken = await book(lab, alice, "cage", TOMORROW, 18)
    resp = await lab.post("/waitlist", json={"resource": "cage", "date": TOMORROW, "slot_id": 18},
                          headers=bearer(bob))  # fmt: skip
    assert resp.status == 201
    clock.advance(hours=2)  # 10:30: both of Bob's hours were missed
    await lab.app[HOUR].sweep()
    status, record = await get(lab, f"/admin/students/{BOB_SRN}", carol)
    assert status == 200
    assert [(b["id"], b["status"]) for b in record["bookings"]] == [
        (missed[1], "no_show"), (missed[0], "no_show"),
    ]  # fmt: skip
    assert {k: v for k, v in record.items() if k not in ("bookings", "waitlist")} == {
        "srn": BOB_SRN, "role": "student", "role_source": "default", "no_shows": 2,
        "suspended_until": "2026-12-01T10:30:00+05:30",
    }  # fmt: skip
    assert [(e["slot_id"], e["position"]) for e in record["waitlist"]] == [(18, 1)]
    assert taken > 0
    # An assistant may look; only an admin lifts the suspension.
    refused = await lab.delete(f"/admin/students/{BOB_SRN}/suspension", headers=bearer(carol))
    assert (refused.status, await refused.json()) == (403, {"detail": "Admin access required"})
    lifted = await lab.delete(f"/admin/students/{BOB_SRN}/suspension", headers=bearer(alice))
    assert (lifted.status, await lifted.json()) == (200, {"srn": BOB_SRN, "suspended_until": None})
    assert (await get(lab, f"/admin/students/{BOB_SRN}", carol))[1]["suspended_until"] is None
    _, admin = await get(lab, f"/admin/students/{ALICE_SRN}", carol)
    assert (admin["role"], admin["role_source"], admin["bookings"][0]["id"]) == (
        "admin", "config", taken,
    )  # fmt: skip
    assert await get(lab, f"/admin/students/{ALICE_SRN}", bob) == (
        403, {"detail": "Staff access required"},
    )  # fmt: skip


async def test_a_board_as_the_staff_see_it(lab: Any, clock: Clock) -> None:
    alice, bob = await login(lab, ALICE), await login(lab, BOB)
    carol = await login(lab, CAROL_LOGIN)
    held = await book(lab, alice, "arm-1", TODAY, 9)
    resp = await lab.post("/waitlist", json={"resource": "arm-1", "date": TODAY, "slot_id": 9},
                          headers=bearer(bob))  # fmt: skip
    assert resp.status == 201
    clock.advance(minutes=32)  # 09:02
    resp = await lab.post(f"/bookings/{held}/check-in", headers=bearer(alice))
    assert resp.status == 200
    status, board = await get(lab, f"/admin/bookings?resource=arm-1&date={TODAY}", carol)
    assert status == 200
    nine = next(s for s in board["slots"] if s["id"] == 9)
    assert nine["booking"] == {
        "id": held, "srn": ALICE_SRN, "name": "Alice Rao", "status": "booked",
        "checked_in_at": "2026-11-24T03:32:00+00:00",
    }  # fmt: skip
    assert nine["waitlist"] == [{"srn": BOB_SRN, "name": "Bob Iyer", "position": 1}]
    assert next(s for s in board["slots"] if s["id"] == 10)["booking"] is None
    # The assistant checks Bob in at the desk: his booking, her name in the audit trail.
    mine = await book(lab, bob, "cage", TODAY, 20)  # 10:00-10:30
    clock.advance(minutes=58)  # 10:00
    resp = await lab.post(f"/bookings/{mine}/check-in", headers=bearer(carol))
    came = (await resp.json())["booking"]
    assert (resp.status, came["srn"], came["checked_in_at"]) == (
        200, BOB_SRN, "2026-11-24T04:30:00+00:00",
    )  # fmt: skip
    _, trail = await get(lab, f"/admin/audit?action=checked_in&srn={BOB_SRN}", carol)
    assert [(e["booking_id"], e["actor_srn"]) for e in trail["events"]] == [(mine, CAROL.srn)]
    assert (await get(lab, "/admin/bookings?resource=nope", carol))[0] == 404
    assert (await get(lab, "/admin/bookings", carol))[0] == 422
    assert await get(lab, "/admin/bookings?resource=arm-1", bob) == (
        403, {"detail": "Staff access required"},
    )  # fmt: skip


def outbox_payloads() -> Generator[Any, Any, list[dict[str, Any]]]:
    rows = yield ("SELECT payload FROM outbox ORDER BY id", {})
    return [json.loads(p) for (p,) in rows]


async def staff_cancel(lab: Any, token: str | None, booking: int, body: Any) -> tuple[int, Any]:
    """``POST /admin/bookings/{booking}/cancel`` with ``body`` (a string: sent as is)."""
    sent = {"data": body} if isinstance(body, str) else {"json": body}
    headers = {} if token is None else bearer(token)
    resp = await lab.post(f"/admin/bookings/{booking}/cancel", headers=headers, **sent)
    return resp.status, await resp.json()


async def test_staff_cancel_a_booking_with_a_reason(lab: Any, clock: Clock) -> None:
    alice, bob = await login(lab, ALICE), await login(lab, BOB)
    carol = await login(lab, CAROL_LOGIN)
    taken = await book(lab, bob, "arm-1", TOMORROW, 10)
    waits = await lab.post("/waitlist", json={"resource": "arm-1", "date": TOMORROW,
                           "slot_id": 10}, headers=bearer(alice))  # fmt: skip
    assert waits.status == 201
    reason = {"reason": "The arm is being serviced"}
    # A student may not, not even for their own booking; the booking stays.
    assert await staff_cancel(lab, bob, taken, reason) == (
        403, {"detail": "Staff access required"},
    )  # fmt: skip
    assert (await staff_cancel(lab, None, taken, reason))[0] == 401
    # Bad bodies, whoever sends them.
    for bad, why in (
        ({}, {"reason": ["Missing data for required field."]}),
        ({"reason": ""}, {"reason": ["Length must be between 1 and 200."]}),
        ({"reason": "x" * 201}, {"reason": ["Length must be between 1 and 200."]}),
        ({"reason": 7}, {"reason": ["Not a valid string."]}),
    ):
        status, body = await staff_cancel(lab, carol, taken, bad)
        assert (status, body["detail"], body["errors"]) == (
            422, "Request validation failed", why,
        ), bad  # fmt: skip
    assert await staff_cancel(lab, carol, taken, "{") == (
        400, {"detail": "Request body must be valid JSON"},
    )  # fmt: skip

    # An assistant cancels Bob's booking.
    status, body = await staff_cancel(lab, carol, taken, reason)
    assert (status, body) == (200, {"success": True, "booking": {
        "id": taken, "resource": "arm-1", "date": TOMORROW, "slot_id": 10,
        "start": f"{TOMORROW}T10:00:00+05:30", "end": f"{TOMORROW}T11:00:00+05:30",
        "srn": BOB_SRN, "status": "cancelled", "created_at": "2026-11-24T03:00:00+00:00",
        "series_id": None, "checked_in_at": None,
    }})  # fmt: skip
    _, trail = await get(lab, "/admin/audit?action=admin_cancelled", alice)
    keys = ("holder_srn", "actor_srn", "booking_id", "reason")
    seen = [tuple(e[k] for k in keys) for e in trail["events"]]
    assert seen == [(BOB_SRN, CAROL.srn, taken, reason["reason"])]
    cancelled = [p for p in await lab.app[STORAGE].perform(outbox_payloads())
                 if p["type"] == "cancelled"]  # fmt: skip
    assert [(p["booking_id"], p["srn"], p["reason"]) for p in cancelled] == [
        (taken, BOB_SRN, reason["reason"]),
    ]  # fmt: skip
    # The freed slot is offered to the first in line, as on any cancel.
    _, board = await get(lab, f"/admin/bookings?resource=arm-1&date={TOMORROW}", carol)
    ten = next(s for s in board["slots"] if s["id"] == 10)
    assert (ten["booking"]["srn"], ten["booking"]["status"]) == (ALICE_SRN, "held")

    # Once is enough; an unknown booking; one that has ended (an admin, this time).
    assert await staff_cancel(lab, alice, taken, reason) == (
        409, {"detail": f"Booking {taken} is already cancelled"},
    )  # fmt: skip
    assert await staff_cancel(lab, carol, 999999, reason) == (
        404, {"detail": "Booking 999999 does not exist"},
    )  # fmt: skip
    ended = await book(lab, bob, "arm-1", TODAY, 9)
    clock.advance(hours=2)  # 10:30: slot 9 (09:00-10:00) has ended
    assert await staff_cancel(lab, alice, ended, reason) == (
        400, {"detail": f"Booking {ended} has ended"},
    )  # fmt: skip


def without_ids(body: Any) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "id"} for e in body["events"]]


async def test_an_unknown_srn_has_no_record(lab: Any, clock: Clock) -> None:
    carol = await login(lab, CAROL_LOGIN)
    gone = {"detail": "No record of student PES2UG22CS999"}
    assert await get(lab, "/admin/students/PES2UG22CS999", carol) == (404, gone)
    # Known by a sign-in alone (a live session), by a configured role, by a booking.
    bob = await login(lab, BOB)
    assert (await get(lab, f"/admin/students/{BOB_SRN}", carol))[0] == 200
    assert (await get(lab, f"/admin/students/{ALICE_SRN}", carol))[0] == 200
    # A role set at run time, then taken back, leaves its audit row: still known.
    alice = await login(lab, ALICE)
    for role in ("assistant", "student"):
        resp = await lab.put("/admin/roles/PES2UG22CS777", json={"role": role},
                             headers=bearer(alice))  # fmt: skip
        assert resp.status == 200
    assert (await get(lab, "/admin/students/PES2UG22CS777", carol))[0] == 200
    assert await get(lab, "/admin/students/pes2ug22cs777", carol) == (
        404, {"detail": "No record of student pes2ug22cs777"},
    )  # fmt: skip
    assert bob


async def test_suspension_lifts_and_blackouts_are_audited(lab: Any, clock: Clock) -> None:
    alice, bob = await login(lab, ALICE), await login(lab, BOB)
    carol = await login(lab, CAROL_LOGIN)
    for slot in (9, 10):
        await book(lab, bob, "arm-1", TODAY, slot)
    clock.advance(hours=2)  # 10:30: both hours missed, Bob is suspended
    await lab.app[HOUR].sweep()
    lifted = await lab.delete(f"/admin/students/{BOB_SRN}/suspension", headers=bearer(alice))
    assert lifted.status == 200
    _, trail = await get(lab, "/admin/audit?action=suspension_lifted", carol)
    assert without_ids(trail) == [{
        "slot_id": 0, "holder_srn": BOB_SRN, "actor_srn": ALICE_SRN,
        "action": "suspension_lifted", "at": "2026-11-24T05:00:00+00:00", "resource": None,
        "date": None, "booking_id": None, "reason": None,
    }]  # fmt: skip
    body = {"resource": "cage", "start": f"{TOMORROW}T22:00:00+05:30",
            "end": "2026-11-26T06:00:00+05:30", "reason": "Overnight cleaning"}  # fmt: skip
    made = await lab.post("/admin/blackouts", json=body, headers=bearer(carol))
    assert made.status == 201, await made.text()
    number = (await made.json())["blackout"]["id"]
    gone = await lab.delete(f"/admin/blackouts/{number}", headers=bearer(alice))
    assert gone.status == 200
    span = f"#{number} {TOMORROW}T16:30:00+00:00/2026-11-26T00:30:00+00:00: Overnight cleaning"
    _, trail = await get(lab, "/admin/audit?resource=cage", carol)
    assert without_ids(trail) == [
        {"slot_id": 0, "holder_srn": None, "actor_srn": ALICE_SRN, "action": "blackout_lifted",
         "at": "2026-11-24T05:00:00+00:00", "resource": "cage", "date": None,
         "booking_id": None, "reason": span},
        {"slot_id": 0, "holder_srn": None, "actor_srn": CAROL.srn, "action": "blackout_added",
         "at": "2026-11-24T05:00:00+00:00", "resource": "cage", "date": None,
         "booking_id": None, "reason": span},
    ]  # fmt: skip
    for action in ("suspension_lifted", "blackout_added", "blackout_lifted"):
        assert (await get(lab, f"/admin/audit?action={action}", carol))[0] == 200
    # Analytics counts bookings, cancellations and no-shows by name: these are none of them.
    _, usage = await get(lab, f"/admin/analytics?from={TODAY}&to={TOMORROW}", carol)
    assert (usage["bookings"], usage["cancellations"]) == (2, 0)


async def test_private_answers_are_never_cached(lab: Any) -> None:
    """One response hook marks every private path: staff reads, a student's own, the
    unsubscribe page (its token is in the URL)."""
    alice = await login(lab, ALICE)
    for path in (f"/admin/bookings?resource=arm-1&date={TODAY}", "/admin/analytics",
                 "/admin/roles", "/me/waitlist", "/me/notifications",
                 "/notifications/unsubscribe?token=" + "a" * 40):  # fmt: skip
        resp = await lab.get(path, headers=bearer(alice))
        assert (resp.status, resp.headers["Cache-Control"]) == (200, "no-store"), path
