"""Mail survives a crash: a booking committed, then SIGKILL before the server sent its
confirmation, and the confirmation reaches a real SMTP server once another server runs
on the same database."""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import Inbox, code_in, eventually, start_server

ADDRESS = "user0@students.example.edu"


def profile(smtp_port: int) -> str:
    """One resource, ``rig``, open all day in UTC; mail through the test's SMTP server."""
    return (
        f'smtp_host = "127.0.0.1"\nsmtp_port = {smtp_port}\nsmtp_starttls = false\n'
        'mail_from = "rero@lab.example.edu"\npublic_url = "http://127.0.0.1"\n'
        'resources = [{id = "rig", timezone = "UTC", opens = "00:00", closes = "24:00"}]\n'
    )


def queue(path: Path) -> list[tuple[str, str, int]]:
    """(kind, state, attempts) of each message, read as an operator would."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT kind, state, attempts FROM mail_queue ORDER BY id").fetchall()
    return [(str(k), str(s), int(n)) for k, s, n in rows]


@pytest.mark.stress
async def test_a_confirmation_outlives_a_crash(tmp_path: Path, inbox: Inbox) -> None:
    server = start_server(tmp_path, profile(inbox.port))
    try:
        async with aiohttp.ClientSession(server.url) as http:
            login = await http.post("/auth/login", json={"username": "user0", "password": "pw-0"})
            auth = {"Authorization": f"Bearer {(await login.json())['token']}"}
            put = await http.put("/me/notifications", json={"email": ADDRESS}, headers=auth)
            assert put.status == 200, await put.text()
            code = code_in(inbox.to(ADDRESS)[-1])
            done = await http.post("/me/notifications/verify", json={"code": code}, headers=auth)
            assert done.status == 200, await done.text()
            tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).date().isoformat()
            body = {"resource": "rig", "date": tomorrow, "slot_id": 10}
            # The server cannot hand the confirmation over before the kill: any try it
            # makes is refused (451) and waits for its back-off.
            inbox.refusing = True
            made = await http.post("/bookings", json=body, headers=auth)
            server.proc.kill()  # SIGKILL
            assert made.status == 201, await made.text()
        server.proc.wait(10)
    except BaseException:
        server.stop()
        raise
    assert len(inbox.to(ADDRESS)) == 1  # the code only
    inbox.refusing = False
    again = start_server(tmp_path, profile(inbox.port))
    try:
        # A message tried before the crash waits for its back-off (up to 30 s).
        await eventually(lambda: len(inbox.to(ADDRESS)) == 2, 45, what="the confirmation")
        await eventually(
            lambda: (
                [(k, s) for k, s, _ in queue(tmp_path / "rero.db")][:1]
                == [("confirmation", "sent")]
            ),
            10,
            what="recorded as sent",
        )
    finally:
        again.stop()
    subjects = [str(m["Subject"]).strip() for m in inbox.to(ADDRESS)]
    assert (
        subjects[1]
        == f"Booked: rig, {datetime.fromisoformat(tomorrow):%a %Y-%m-%d}, 10:00-11:00 (UTC)"
    )
    assert len(subjects) == 2  # once
