"""Roles: students, assistants and admins, from the configuration or set at run time by
an admin; each staff route checks the level in one place, on both stores."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from rero.app import create_app
from tests.helpers import (
    ALICE,
    ALICE_SRN,
    ARM,
    BOB,
    BOB_SRN,
    CAGE,
    CAROL,
    CAROL_LOGIN,
    TOMORROW,
    Clock,
    bearer,
    eventually,
    login,
)

STAFF_ONLY = {"detail": "Staff access required"}
ADMIN_ONLY = {"detail": "Admin access required"}


@pytest.fixture
async def lab(make: Any, settings: Any, database: dict[str, str]) -> Any:
    """Alice is an admin and Carol an assistant by configuration; Bob is a student."""
    return await make(
        **database, resources=(replace(ARM, campuses=()), CAGE), admins=(ALICE_SRN,),
        assistants=(CAROL.srn,), fake_users=(*settings.fake_users, CAROL),
    )  # fmt: skip


async def call(lab: Any, method: str, path: str, token: str, body: Any = None) -> Any:
    resp = await lab.request(method, path, json=body, headers=bearer(token))
    return resp.status, (await resp.json() if resp.status != 204 else None)


BLACKOUT = {"resource": "cage", "start": f"{TOMORROW}T09:00:00+05:30",
            "end": f"{TOMORROW}T10:00:00+05:30", "reason": "inspection"}  # fmt: skip


async def test_who_may_do_what(lab: Any) -> None:
    admin, bob, carol = (
        await login(lab, ALICE),
        await login(lab, BOB),
        await login(lab, CAROL_LOGIN),
    )
    # Staff routes: a student is refused in the same words everywhere.
    for method, path, body in (
        ("GET", "/admin/roles", None),
        ("GET", "/admin/audit", None),
        ("POST", "/admin/blackouts", BLACKOUT),
        ("GET", "/admin/blackouts", None),
        ("POST", "/bookings", {"resource": "cage", "date": TOMORROW, "slot_id": 18,
                               "repeat_weeks": 2}),
    ):  # fmt: skip
        assert await call(lab, method, path, bob, body) == (403, STAFF_ONLY), path
    # Admin routes: an assistant is refused as an assistant.
    for method, path, body in (
        ("PUT", f"/admin/roles/{BOB_SRN}", {"role": "assistant"}),
        ("POST", "/admin/reset", {"confirm": True}),
        ("DELETE", f"/admin/suspensions/{BOB_SRN}", None),
        ("POST", "/bookings", {"resource": "cage", "date": TOMORROW, "slot_id": 18,
                               "repeat_weeks": 2, "srn": BOB_SRN}),
        ("POST", "/bookings", {"resource": "cage", "date": TOMORROW, "slot_id": 18,
                               "srn": BOB_SRN}),
    ):  # fmt: skip
        assert await call(lab, method, path, carol, body) == (403, ADMIN_ONLY), path
    # What an assistant may do: close a morning, read the audit trail, cancel a student's
    # booking, book a series for themselves.
    status, made = await call(
        lab, "POST", "/bookings", bob, {"resource": "cage", "date": TOMORROW, "slot_id": 20}
    )
    assert status == 201
    assert (await call(lab, "POST", "/admin/blackouts", carol, BLACKOUT))[0] == 201
    assert (await call(lab, "GET", "/admin/audit", carol))[0] == 200
    status, gone = await call(lab, "DELETE", f"/bookings/{made['booking']['id']}", carol)
    assert (status, gone["booking"]["status"]) == (200, "cancelled")
    series = {"resource": "cage", "date": TOMORROW, "slot_id": 21, "repeat_weeks": 2}
    assert (await call(lab, "POST", "/bookings", carol, series))[0] == 201
    assert await call(lab, "GET", "/admin/roles", carol) == (200, {"roles": [
        {"srn": ALICE_SRN, "role": "admin", "source": "config"},
        {"srn": CAROL.srn, "role": "assistant", "source": "config"},
    ]})  # fmt: skip
    assert (await call(lab, "POST", "/admin/reset", admin, {"confirm": True}))[0] == 200


async def test_an_admin_sets_roles_at_run_time(lab: Any) -> None:
    admin, bob = await login(lab, ALICE), await login(lab, BOB)
    assert await call(lab, "PUT", f"/admin/roles/{BOB_SRN}", admin, {"role": "assistant"}) == (
        200, {"srn": BOB_SRN, "role": "assistant", "source": "runtime"},
    )  # fmt: skip
    assert (await call(lab, "POST", "/admin/blackouts", bob, BLACKOUT))[0] == 201
    status, body = await call(lab, "GET", "/admin/roles", bob)
    assert {"srn": BOB_SRN, "role": "assistant", "source": "runtime"} in body["roles"]
    # A role fixed in the configuration stays; a role that is none is refused.
    assert await call(lab, "PUT", f"/admin/roles/{CAROL.srn}", admin, {"role": "student"}) == (
        409, {"detail": f"Role of {CAROL.srn} is set in the configuration"},
    )  # fmt: skip
    status, body = await call(lab, "PUT", f"/admin/roles/{BOB_SRN}", admin, {"role": "boss"})
    assert (status, list(body["errors"])) == (422, ["role"])
    # Back to student: staff routes are closed again; the change is in the audit trail.
    assert (await call(lab, "PUT", f"/admin/roles/{BOB_SRN}", admin, {"role": "student"}))[0] == 200
    assert await call(lab, "GET", "/admin/audit", bob) == (403, STAFF_ONLY)
    _, audit = await call(lab, "GET", "/admin/audit", admin)
    changes = [(e["action"], e["holder_srn"], e["actor_srn"], e["reason"])
               for e in audit["events"] if e["action"] == "role_set"]  # fmt: skip
    assert changes == [
        ("role_set", BOB_SRN, ALICE_SRN, "student"), ("role_set", BOB_SRN, ALICE_SRN, "assistant"),
    ]  # fmt: skip


async def test_a_role_outlives_a_restart_and_reaches_other_hosts(
    aiohttp_client: Any, settings: Any, clock: Clock, database: dict[str, str]
) -> None:
    """Two apps on one database: a role set on one is known to the other, and to a
    third started afterwards."""
    changed = replace(settings, **database, admins=(ALICE_SRN,))
    one, two = [
        await aiohttp_client(create_app(changed, clock=clock, timer=clock.timer)) for _ in "12"
    ]
    admin = await login(one, ALICE)
    await call(one, "PUT", f"/admin/roles/{BOB_SRN}", admin, {"role": "admin"})
    bob = await login(two, BOB)

    async def bob_is_admin() -> bool:
        return (await call(two, "GET", "/admin/roles", bob))[0] == 200

    await eventually(bob_is_admin, 5, what="the other app learning the role")
    three = await aiohttp_client(create_app(changed, clock=clock, timer=clock.timer))
    assert (await call(three, "GET", "/admin/roles", await login(three, BOB)))[0] == 200


async def test_an_srn_in_a_path_is_checked(lab: Any) -> None:
    admin = await login(lab, ALICE)
    for path in ("/admin/roles/" + "S" * 65, "/admin/roles/S%01"):
        status, body = await call(lab, "PUT", path, admin, {"role": "assistant"})
        assert (status, body["errors"]) == (422, {"srn": ["Not a valid SRN."]}), path
    assert (await call(lab, "GET", "/admin/students/%7F", admin))[0] == 422
    assert (await call(lab, "DELETE", "/admin/suspensions/" + "x" * 65, admin))[0] == 422
