"""The example lab server (examples/lab_server.py) against the real service, both in this
process on free ports: book, fetch the grant, hand it to the lab, and every grant the lab
must refuse (another resource, too late, a replay of an ended session, a retired key)."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from examples import lab_server as example
from rero.app import create_app
from rero.grants import GrantClaims, Signer, load_key
from rero.settings import Settings
from tests.helpers import (
    ALICE_SRN,
    ARM,
    BOB,
    BOB_SRN,
    TODAY,
    ClientFactory,
    Clock,
    bearer,
    eventually,
    free_port,
    key_files,
    login,
    with_lab,
)

ARM2 = replace(ARM, id="arm-2", name="Robot arm 2")


class Hour:
    """rero and the arm-1 lab, on one clock (the lab may run ahead or behind)."""

    def __init__(self, rero: Any, lab: Any, url: str, keys: tuple[str, ...]) -> None:
        self.rero, self.lab, self.url, self.keys = rero, lab, url, keys

    async def grant(self, who: dict[str, str] | None = None, slot: int = 9,
                    resource: str = "arm-1") -> tuple[int, str]:  # fmt: skip
        """Book today's ``slot`` and fetch its grant when access opens (08:55 for 9)."""
        token = await (login(self.rero, who) if who else login(self.rero))
        body = {"resource": resource, "date": TODAY, "slot_id": slot}
        made = await self.rero.post("/bookings", json=body, headers=bearer(token))
        assert made.status == 201, await made.text()
        booking = int((await made.json())["booking"]["id"])
        resp = await self.rero.post(f"/bookings/{booking}/access", headers=bearer(token))
        assert resp.status == 200, await resp.text()
        return booking, str((await resp.json())["grant"])

    async def enter(self, grant: str) -> tuple[int, Any]:
        resp = await self.lab.post("/session", json={"grant": grant})
        return resp.status, await resp.json()

    async def status(self) -> Any:
        return (await (await self.lab.get("/status")).json())["session"]


async def start(
    aiohttp_client: ClientFactory, settings: Settings, clock: Clock, tmp_path: Path,
    *, lab_offset: timedelta = timedelta(0), published: int = 2,
) -> Hour:  # fmt: skip
    """rero with keys ``new`` and ``old`` (the first ``published`` of them), and the lab."""
    keys = key_files(tmp_path, "new", "old")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    changed = replace(
        settings, resources=(with_lab(ARM), with_lab(ARM2)), public_url=url,
        grant_signing_keys=keys[:published], session_minutes=600.0,
    )  # fmt: skip
    app = create_app(changed, clock=clock, timer=clock.timer)
    rero = await aiohttp_client(app, server_kwargs={"port": port})
    lab_app = example.make_app(url, "arm-1", clock=lambda: (clock() + lab_offset).timestamp())
    return Hour(rero, await aiohttp_client(lab_app), url, keys)


@pytest.fixture
async def hour(
    aiohttp_client: ClientFactory, settings: Settings, clock: Clock, tmp_path: Path
) -> Hour:
    return await start(aiohttp_client, settings, clock, tmp_path)


async def test_a_student_is_let_in_for_their_time(hour: Hour, clock: Clock) -> None:
    clock.advance(minutes=25)  # 08:55: access opens
    booking, grant = await hour.grant()
    admitted = {
        "booking_id": booking, "srn": ALICE_SRN, "name": "Alice Rao",
        "ends_at": "2026-11-24T04:30:00+00:00", "seconds_left": 65 * 60,
    }  # fmt: skip
    assert await hour.enter(grant) == (200, admitted)
    assert await (await hour.lab.get("/status")).json() == {
        "resource": "arm-1",
        "session": admitted,
    }
    clock.advance(minutes=60)
    assert await hour.status() == {**admitted, "seconds_left": 300}
    assert await hour.enter(grant) == (200, {**admitted, "seconds_left": 300})  # a reload
    page = await hour.lab.get("/")
    assert page.status == 200
    assert "#grant=" not in await page.text()  # the page reads the fragment itself
    assert 'get("grant")' in await page.text()


async def test_the_session_ends_with_the_slot(hour: Hour, clock: Clock) -> None:
    clock.advance(minutes=25)
    _, grant = await hour.grant()
    assert (await hour.enter(grant))[0] == 200
    clock.advance(minutes=65)  # 10:00: the slot's end
    assert await hour.status() is None
    # Within the leeway the grant is still in time, but its session is over.
    assert await hour.enter(grant) == (403, {"detail": "This booking's session has ended"})
    clock.advance(seconds=30)
    assert await hour.enter(grant) == (403, {"detail": "This grant has expired"})


async def test_a_grant_for_another_resource(hour: Hour, clock: Clock) -> None:
    clock.advance(minutes=25)
    _, grant = await hour.grant(BOB, resource="arm-2")
    assert await hour.enter(grant) == (403, {"detail": "This grant is not for arm-1"})
    assert await hour.status() is None


async def test_one_student_at_a_time(hour: Hour, clock: Clock) -> None:
    clock.advance(minutes=25)
    alice, grant = await hour.grant()
    assert (await hour.enter(grant))[0] == 200
    clock.advance(minutes=60)  # 09:55: Bob's slot 10 opens, Alice still has five minutes
    bob, later = await hour.grant(BOB, slot=10)
    assert await hour.enter(later) == (
        409, {"detail": "The lab is in use until 2026-11-24T04:30:00+00:00"},
    )  # fmt: skip
    clock.advance(minutes=5)
    status, body = await hour.enter(later)
    assert (status, body["booking_id"], body["srn"]) == (200, bob, BOB_SRN)
    assert alice != bob


async def test_too_early_by_the_labs_clock(
    aiohttp_client: ClientFactory, settings: Settings, clock: Clock, tmp_path: Path
) -> None:
    """The lab's clock runs 31 s behind: past the 30 s leeway, the grant is not yet valid."""
    behind = await start(
        aiohttp_client, settings, clock, tmp_path, lab_offset=timedelta(seconds=-31)
    )
    clock.advance(minutes=25)
    _, grant = await behind.grant()
    assert await behind.enter(grant) == (
        403, {"detail": "Too early: this grant is valid from 2026-11-24T03:25:00+00:00"},
    )  # fmt: skip
    clock.advance(seconds=1)
    assert (await behind.enter(grant))[0] == 200


def signed_by(path: str, issuer: str, booking: int, clock: Clock) -> str:
    """A grant as rero would sign it with the key at ``path``."""
    start = datetime.fromisoformat(f"{TODAY}T03:30:00+00:00")
    claims = GrantClaims("arm-1", ALICE_SRN, "Alice Rao", booking, clock(),
                         start - timedelta(minutes=5), start + timedelta(hours=1))  # fmt: skip
    return Signer([load_key(path)], issuer).sign(claims)


async def test_a_retired_key_is_refused(
    aiohttp_client: ClientFactory, settings: Settings, clock: Clock, tmp_path: Path
) -> None:
    """rero publishes only the new key: a grant the old one signed is refused; while both
    are listed, it is accepted."""
    retired = await start(aiohttp_client, settings, clock, tmp_path / "a", published=1)
    clock.advance(minutes=25)
    old = signed_by(retired.keys[1], retired.url, 1, clock)
    assert await retired.enter(old) == (
        403, {"detail": "This grant is signed by a key rero does not publish"},
    )  # fmt: skip
    both = await start(aiohttp_client, settings, clock, tmp_path / "b")
    old = signed_by(both.keys[1], both.url, 1, clock)
    assert (await both.enter(old))[0] == 200


async def test_rero_s_events_end_a_session(hour: Hour, clock: Clock) -> None:
    """What the events WebSocket delivers, handed to the lab directly."""
    clock.advance(minutes=25)
    booking, grant = await hour.grant()
    assert (await hour.enter(grant))[0] == 200
    lab = hour.lab.server.app[example.LAB]
    lab.on_event({"type": "session_started", "resource": "arm-1", "booking_id": booking})
    lab.on_event({"type": "released_early", "resource": "arm-2", "booking_id": booking})
    assert await hour.status() is not None
    lab.on_event({"type": "released_early", "resource": "arm-1", "booking_id": booking})
    assert await hour.status() is None
    assert await hour.enter(grant) == (403, {"detail": "This booking's session has ended"})
    # A booking cancelled before its student came: the grant fetched earlier is no good.
    lab.on_event({"type": "cancelled", "resource": "arm-1", "booking_id": 77,
                  "end": "2026-11-24T04:30:00+00:00"})  # fmt: skip
    late = signed_by(hour.keys[0], hour.url, 77, clock)
    assert await hour.enter(late) == (403, {"detail": "This booking's session has ended"})


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (b"not json", 400, 'Send {"grant": "<JWS>"}'),
        (b'{"grant": 5}', 400, 'Send {"grant": "<JWS>"}'),
        (b'{"grant": "a.b.c"}', 403, "This is not a grant"),
    ],
)
async def test_what_is_no_grant(hour: Hour, body: bytes, status: int, detail: str) -> None:
    resp = await hour.lab.post("/session", data=body)
    assert (resp.status, await resp.json()) == (status, {"detail": detail})


LAB_KEY = "lab-key-for-arm-1"


@pytest.mark.parametrize("ending", ["release", "cancel"])
async def test_rero_s_events_end_a_session_end_to_end(
    aiohttp_client: ClientFactory, settings: Settings, clock: Clock, tmp_path: Path, ending: str
) -> None:
    """Book, fetch the grant, the lab admits; the student is done early (or an admin
    cancels the booking): rero's events WebSocket tells the lab, which ends the session and
    refuses the same grant from then on."""
    digest = hashlib.sha256(LAB_KEY.encode()).hexdigest()
    keyed = replace(with_lab(ARM), lab=replace(with_lab(ARM).lab, api_key_sha256=(digest,)))
    keys = key_files(tmp_path, "new")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    changed = replace(
        settings, resources=(keyed,), public_url=url, grant_signing_keys=keys,
        session_minutes=600.0, admins=(BOB_SRN,),
    )  # fmt: skip
    rero = await aiohttp_client(
        create_app(changed, clock=clock, timer=clock.timer), server_kwargs={"port": port}
    )
    lab_app = example.make_app(url, "arm-1", clock=lambda: clock().timestamp())
    hour = Hour(rero, await aiohttp_client(lab_app), url, keys)
    lab = hour.lab.server.app[example.LAB]
    async with aiohttp.ClientSession() as http:
        following = asyncio.create_task(
            example.follow_events(lab, http, url + "/labs/arm-1/events", LAB_KEY)
        )
        try:
            clock.advance(minutes=30)  # 09:00: the slot is under way
            booking, grant = await hour.grant()
            assert (await hour.enter(grant))[0] == 200
            if ending == "release":
                token = await login(rero)
                done = await rero.post(f"/bookings/{booking}/release", headers=bearer(token))
            else:
                token = await login(rero, BOB)
                done = await rero.delete(f"/bookings/{booking}", headers=bearer(token))
            assert done.status == 200, await done.text()
            await eventually(lambda: lab.session is None, what="the lab ending the session")
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
    assert await hour.enter(grant) == (403, {"detail": "This booking's session has ended"})
