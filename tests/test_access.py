"""Entering a booked hour over HTTP, on both stores: the grant (its claims and signature
checked against the served key set, never the private key), its time window, checking
in (by the grant, or by itself), and every refusal with its status and sentence."""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jwt
import pytest

from rero.keys import STORAGE
from rero.settings import Settings
from tests.helpers import (
    ALICE_SRN,
    ARM,
    BOB,
    CAGE,
    PUBLIC_URL,
    TODAY,
    Clock,
    bearer,
    key_files,
    login,
    with_lab,
)

#: Today's slot 9 on arm-1: 09:00-10:00 in Kolkata, entered from 08:55.
OPENS, STARTS, ENDS = "03:25", "03:30", "04:30"


def epoch(hm: str) -> int:
    """An instant today (UTC hh:mm) as a JWT NumericDate."""
    hour, minute = map(int, hm.split(":"))
    return int(datetime(2026, 11, 24, hour, minute, tzinfo=timezone.utc).timestamp())


@pytest.fixture
async def hour(database: dict[str, str], make: Any, settings: Settings, tmp_path: Path) -> Any:
    """arm-1 with a lab, the cage without; on either store."""
    return await make(
        resources=(with_lab(ARM), CAGE), public_url=PUBLIC_URL + "/",
        grant_signing_keys=key_files(tmp_path, "grants"), session_minutes=600.0, **database,
    )  # fmt: skip


async def booked(client: Any, token: str, slot: int = 9, resource: str = "arm-1") -> int:
    body = {"resource": resource, "date": TODAY, "slot_id": slot}
    resp = await client.post("/bookings", json=body, headers=bearer(token))
    assert resp.status == 201, await resp.text()
    return int((await resp.json())["booking"]["id"])


async def answer(resp: Any) -> tuple[int, Any]:
    return resp.status, await resp.json()


async def verified(client: Any, grant: str, audience: str = "arm-1") -> dict[str, Any]:
    """The grant's claims, its signature checked with the key the JWKS publishes for its
    kid (times are checked by the tests themselves: PyJWT would read the wall clock)."""
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    header = jwt.get_unverified_header(grant)
    assert header == {"alg": "EdDSA", "kid": jwks["keys"][0]["kid"], "typ": "JWT"}
    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    claims: dict[str, Any] = jwt.decode(
        grant, key, algorithms=["EdDSA"], audience=audience, issuer=PUBLIC_URL,
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )  # fmt: skip
    return claims


async def test_a_grant_during_the_hour(hour: Any, clock: Clock) -> None:
    token = await login(hour)
    booking = await booked(hour, token)
    # 08:30: the lab lets students in from 08:55.
    status, body = await answer(
        await hour.post(f"/bookings/{booking}/access", headers=bearer(token))
    )
    assert (status, body) == (409, {
        "detail": f"Booking {booking} is not for now: access opens at {TODAY}T08:55:00+05:30"
    })  # fmt: skip
    clock.advance(minutes=25)  # 08:55
    status, body = await answer(
        await hour.post(f"/bookings/{booking}/access", headers=bearer(token))
    )
    assert status == 200
    grant = body["grant"]
    assert body == {
        "grant": grant,
        "launch_url": f"https://arm-1.lab.example.edu/#grant={grant}",
        "expires_at": f"{TODAY}T10:00:00+05:30",
    }
    claims = await verified(hour, grant)
    assert claims == {
        "iss": PUBLIC_URL, "aud": "arm-1", "sub": ALICE_SRN, "name": "Alice Rao",
        "bid": booking, "jti": claims["jti"], "iat": epoch(OPENS), "nbf": epoch(OPENS),
        "exp": epoch(ENDS),
    }  # fmt: skip
    assert len(claims["jti"]) >= 16
    # Fetching the grant checked the student in.
    mine = await (await hour.get("/me/bookings", headers=bearer(token))).json()
    assert [(b["id"], b["checked_in_at"]) for b in mine["bookings"]] == [
        (booking, f"{TODAY}T{OPENS}:00+00:00")
    ]
    # Again later: a new grant (its own jti), the check-in as it was.
    clock.advance(minutes=20)
    again = await (await hour.post(f"/bookings/{booking}/access", headers=bearer(token))).json()
    later = await verified(hour, again["grant"])
    assert later["jti"] != claims["jti"]
    assert (later["iat"], later["nbf"], later["exp"]) == (epoch("03:45"), epoch(OPENS), epoch(ENDS))
    checked = await (await hour.post(f"/bookings/{booking}/check-in", headers=bearer(token))).json()
    assert checked["booking"]["checked_in_at"] == f"{TODAY}T{OPENS}:00+00:00"


async def test_check_in_without_a_lab(hour: Any, clock: Clock) -> None:
    """The cage has no lab: no grant, and check-in opens with the slot itself."""
    token = await login(hour)
    booking = await booked(hour, token, slot=18, resource="cage")  # 09:00-09:30
    assert await answer(await hour.post(f"/bookings/{booking}/access", headers=bearer(token))) == (
        404, {"detail": "Resource cage has no lab to enter"},
    )  # fmt: skip
    clock.advance(minutes=29)  # 08:59
    assert await answer(
        await hour.post(f"/bookings/{booking}/check-in", headers=bearer(token))
    ) == (
        409,
        {"detail": f"Booking {booking} is not for now: access opens at {TODAY}T09:00:00+05:30"},
    )
    clock.advance(minutes=1)
    first = await answer(await hour.post(f"/bookings/{booking}/check-in", headers=bearer(token)))
    assert first == (200, {"booking": {
        "id": booking, "resource": "cage", "date": TODAY, "slot_id": 18,
        "start": f"{TODAY}T09:00:00+05:30", "end": f"{TODAY}T09:30:00+05:30",
        "srn": ALICE_SRN, "status": "booked", "created_at": f"{TODAY}T03:00:00+00:00",
        "series_id": None, "checked_in_at": f"{TODAY}T03:30:00+00:00",
    }})  # fmt: skip
    clock.advance(minutes=5)  # idempotent: the same booking, checked in when it was
    again = await answer(await hour.post(f"/bookings/{booking}/check-in", headers=bearer(token)))
    assert again == first


async def test_check_in_with_a_lab_opens_early(hour: Any, clock: Clock) -> None:
    token = await login(hour)
    booking = await booked(hour, token)
    clock.advance(minutes=24, seconds=59)
    resp = await hour.post(f"/bookings/{booking}/check-in", headers=bearer(token))
    assert resp.status == 409
    clock.advance(seconds=1)
    resp = await hour.post(f"/bookings/{booking}/check-in", headers=bearer(token))
    assert (await resp.json())["booking"]["checked_in_at"] == f"{TODAY}T{OPENS}:00+00:00"


@pytest.mark.parametrize("action", ["access", "check-in"])
async def test_only_the_owner_and_only_with_a_session(hour: Any, clock: Clock, action: str) -> None:
    token = await login(hour)
    booking = await booked(hour, token)
    clock.advance(minutes=30)
    bob = await login(hour, BOB)
    not_found = {"detail": f"Booking {booking} does not exist"}
    assert await answer(await hour.post(f"/bookings/{booking}/{action}", headers=bearer(bob))) == (
        404,
        not_found,
    )
    assert await answer(await hour.post(f"/bookings/999/{action}", headers=bearer(token))) == (
        404, {"detail": "Booking 999 does not exist"},
    )  # fmt: skip
    assert (await hour.post(f"/bookings/{10**30}/{action}", headers=bearer(token))).status == 404
    for headers in ({}, bearer("not-a-session"), {"Authorization": "Basic eDp5"}):
        assert await answer(await hour.post(f"/bookings/{booking}/{action}", headers=headers)) == (
            401, {"detail": "Invalid or expired session"},
        )  # fmt: skip
    mine = await (await hour.get("/me/bookings", headers=bearer(token))).json()
    assert mine["bookings"][0]["checked_in_at"] is None


def mark(booking: int, status: str) -> Generator[Any, Any, None]:
    """A program (either store) that sets a booking's status, as the no-show sweep would."""
    yield ("UPDATE bookings SET status = :status WHERE id = :id", {"status": status, "id": booking})


@pytest.mark.parametrize("action", ["access", "check-in"])
async def test_no_hour_left_to_enter(hour: Any, clock: Clock, action: str) -> None:
    token = await login(hour)
    cancelled, ended, missed = [await booked(hour, token, slot) for slot in (9, 10, 11)]
    await hour.delete(f"/bookings/{cancelled}", headers=bearer(token))
    await hour.server.app[STORAGE].perform(mark(missed, "no_show"))
    clock.advance(hours=3)  # 11:30: slot 10 has ended, slot 11 is under way
    for booking, why in ((ended, "has ended"), (missed, "was a no-show")):
        assert await answer(
            await hour.post(f"/bookings/{booking}/{action}", headers=bearer(token))
        ) == (409, {"detail": f"Booking {booking} {why}"})
    assert await answer(
        await hour.post(f"/bookings/{cancelled}/{action}", headers=bearer(token))
    ) == (409, {"detail": f"Booking {cancelled} is cancelled"})


async def test_the_openapi_document_names_the_routes(hour: Any) -> None:
    paths = (await (await hour.get("/openapi.json")).json())["paths"]
    assert set(paths["/bookings/{booking_id}/access"]["post"]["responses"]) == {
        "200", "401", "404", "409", "503",
    }  # fmt: skip
    assert "200" in paths["/bookings/{booking_id}/check-in"]["post"]["responses"]
    assert "200" in paths["/.well-known/jwks.json"]["get"]["responses"]
