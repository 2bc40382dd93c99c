"""Usage analytics over a small, known history, on both stores: every number checked
against what the test made happen."""

from __future__ import annotations

from typing import Any

import pytest

from rero.keys import HOUR
from rero.setting_checks import FakeUser
from rero.usage import percentile
from tests.helpers import (
    ALICE,
    ALICE_SRN,
    ARM,
    BOB,
    CAGE,
    CAROL,
    CAROL_LOGIN,
    TODAY,
    TOMORROW,
    Clock,
    bearer,
    login,
)

DAVE = FakeUser("dave", "dave-pw-3", "Dave Pai", "PES2UG22CS004", campus="RR")


@pytest.fixture
async def lab(database: dict[str, str], make: Any, settings: Any) -> Any:
    return await make(
        **database, resources=(ARM, CAGE), admins=(ALICE_SRN,), session_minutes=600.0,
        fake_users=(*settings.fake_users, CAROL, DAVE),
    )  # fmt: skip


async def post(lab: Any, path: str, token: str, body: Any = None) -> Any:
    resp = await lab.post(path, json=body, headers=bearer(token))
    assert resp.status in (200, 201), await resp.text()
    return await resp.json()


def at(resource: str, day: str, slot_id: int) -> dict[str, Any]:
    return {"resource": resource, "date": day, "slot_id": slot_id}


async def test_usage_over_a_known_history(lab: Any, clock: Clock) -> None:
    alice, bob = await login(lab, ALICE), await login(lab, BOB)
    carol, dave = (
        await login(lab, CAROL_LOGIN),
        await login(lab, {"username": "dave", "password": "dave-pw-3"}),
    )
    # Tomorrow's cage fills (four half-hour slots, 09:00-11:00), at 08:30 today.
    first = await post(lab, "/bookings", alice, at("cage", TOMORROW, 18))
    for token, slot in ((bob, 19), (carol, 20), (dave, 21)):
        await post(lab, "/bookings", token, at("cage", TOMORROW, slot))
    # Bob waits for slot 18; Alice lets it go; Bob takes the offer.
    await post(lab, "/waitlist", bob, at("cage", TOMORROW, 18))
    await lab.delete(f"/bookings/{first['booking']['id']}", headers=bearer(alice))
    (place,) = (await (await lab.get("/me/waitlist", headers=bearer(bob))).json())["waitlist"]
    await post(lab, f"/holds/{place['hold_id']}/confirm", bob)
    # Alice books tomorrow's 10:00 on the arm and cancels 25.5 hours before it.
    made = await post(lab, "/bookings", alice, at("arm-1", TOMORROW, 10))
    await lab.delete(f"/bookings/{made['booking']['id']}", headers=bearer(alice))
    # Dave books today's 09:00 on the arm and never comes.
    await post(lab, "/bookings", dave, at("arm-1", TODAY, 9))
    clock.advance(minutes=40)  # 09:10
    await lab.app[HOUR].sweep()

    resp = await lab.get(f"/admin/analytics?from={TODAY}&to={TOMORROW}", headers=bearer(alice))
    assert resp.status == 200
    body = await resp.json()
    usage = {(u["resource"], u["weekday"], u["hour"]): u["booked_fraction"]
             for u in body.pop("utilization")}  # fmt: skip
    assert body == {
        "from": TODAY, "to": TOMORROW, "resources": ["arm-1", "cage"],
        "bookings": 7,  # five on the cage (one the confirmed offer), two on the arm
        "cancellations": 2,
        "cancellation_lead_hours": {"p50": 24.5, "p90": 25.5},
        "no_show_rate": 0.2,  # one of the five bookings kept
        "unique_students": 3, "repeat_students": 2,  # Bob and Dave twice, Carol once
        "fill_minutes_after_open": [{"resource": "cage", "date": TOMORROW, "minutes": 1470.0}],
        "waitlist_conversion": 1.0,
    }  # fmt: skip
    # Tuesday (1) on the arm: 09:00 booked; Wednesday (2) on the cage: both hours full.
    assert usage[("arm-1", 1, 9)] == 1.0
    assert usage[("arm-1", 1, 10)] == 0.0
    assert usage[("cage", 2, 9)] == usage[("cage", 2, 10)] == 1.0
    assert usage[("cage", 1, 9)] == 0.0
    assert len([k for k in usage if k[0] == "arm-1"]) == 24  # 12 hours, two open days

    one = await (await lab.get(f"/admin/analytics?from={TODAY}&to={TOMORROW}&resource=cage",
                               headers=bearer(alice))).json()  # fmt: skip
    assert (one["resources"], one["bookings"], one["no_show_rate"]) == (["cage"], 5, 0.0)


async def test_analytics_refusals(lab: Any) -> None:
    admin, bob = await login(lab, ALICE), await login(lab, BOB)
    resp = await lab.get("/admin/analytics", headers=bearer(bob))
    assert (resp.status, await resp.json()) == (403, {"detail": "Staff access required"})
    resp = await lab.get("/admin/analytics", headers=bearer(admin))
    body = await resp.json()
    assert (resp.status, body["from"], body["to"]) == (200, "2026-10-26", TODAY)
    for bad, status in (("from=2026-11-25&to=2026-11-24", 422), ("from=2024-01-01", 422),
                        ("resource=nope", 404), ("to=soon", 422)):  # fmt: skip
        assert (await lab.get(f"/admin/analytics?{bad}", headers=bearer(admin))).status == status


def test_percentiles_by_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0], 0.9) == 3.0
    assert [percentile([1.0, 2.0, 3.0, 4.0], f) for f in (0.5, 0.9, 0.25)] == [2.0, 4.0, 1.0]
