"""The outbox survives a crash: an event committed while the lab's receiver was down,
then SIGKILL, reaches the receiver once the server is back (exactly once after the
receiver drops repeats by event id)."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.helpers import (
    Receiver,
    eventually,
    free_port,
    key_files,
    receiver_app,
    start_server,
)

SECRET = "whsec-crash-test"


def profile(hook_port: int, key: str) -> str:
    """One resource, ``rig``, open all day in UTC, whose lab has a webhook, its grants
    signed with ``key`` (top-level keys only: the test profile's keys follow)."""
    sha = hashlib.sha256(b"rig-key").hexdigest()
    lab = (
        f'{{launch_url = "http://127.0.0.1/rig", api_key_sha256 = ["{sha}"],'
        f' webhook_url = "http://127.0.0.1:{hook_port}/hook",'
        ' webhook_secret_env = "RERO_TEST_WEBHOOK_SECRET"}'
    )
    return (
        f'public_url = "http://127.0.0.1"\ngrant_signing_keys = ["{key}"]\n'
        'resources = [{id = "rig", timezone = "UTC", opens = "00:00", closes = "24:00",'
        f" lab = {lab}}}]\n"
    )


def outbox(path: Path) -> list[tuple[int, int, str | None, str | None]]:
    """(booking_id, attempts, lease_until, delivered_at) of each event, read as an
    operator would, beside the running server."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT booking_id, attempts, lease_until, delivered_at FROM outbox ORDER BY id"
        ).fetchall()
    return [(int(b), int(n), lease, done) for b, n, lease, done in rows]


@contextlib.asynccontextmanager
async def listening(receiver: Receiver, port: int) -> AsyncIterator[None]:
    runner = web.AppRunner(receiver_app(receiver))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


@pytest.mark.stress
async def test_an_event_outlives_a_crash(tmp_path: Path) -> None:
    port = free_port()
    (key,) = key_files(tmp_path, "grant")
    server = start_server(tmp_path, profile(port, key), RERO_TEST_WEBHOOK_SECRET=SECRET)
    try:
        async with aiohttp.ClientSession(server.url) as http:
            login = await http.post("/auth/login", json={"username": "user0", "password": "pw-0"})
            token = (await login.json())["token"]
            auth = {"Authorization": f"Bearer {token}"}
            tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).date().isoformat()
            body = {"resource": "rig", "date": tomorrow, "slot_id": 10}
            made = await http.post("/bookings", json=body, headers=auth)
            assert made.status == 201, await made.text()
            booking_id = (await made.json())["booking"]["id"]
            assert (await http.delete(f"/bookings/{booking_id}", headers=auth)).status == 200
        # Committed, tried once against a receiver that is down, and not leased any more.
        await eventually(
            lambda: (
                [(b, n >= 1, lease) for b, n, lease, _ in outbox(tmp_path / "rero.db")]
                == [(booking_id, True, None)]
            ),
            10,
            what="a failed first attempt",
        )
        server.proc.kill()  # SIGKILL: nothing gets to tidy up
        server.proc.wait(10)
    except BaseException:
        server.stop()
        raise
    receiver = Receiver(SECRET.encode())
    async with listening(receiver, port):
        again = start_server(tmp_path, profile(port, key), RERO_TEST_WEBHOOK_SECRET=SECRET)
        try:
            await eventually(
                lambda: outbox(tmp_path / "rero.db")[0][3] is not None, 15, what="delivered"
            )
        finally:
            again.stop()
    assert [(e["type"], e["booking_id"]) for e in receiver.unique] == [("cancelled", booking_id)]
    assert all(r.signed for r in receiver.requests)
    assert len(receiver.requests) >= 1
