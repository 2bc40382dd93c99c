"""Operator commands through the real console entry point."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import select
import sqlite3
import subprocess
import sys
import urllib.request
from contextlib import closing
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers import ROOT, UPGRADE, book, cancel, eventually, free_port, start_server

TEST_PROFILE = str(ROOT / "config" / "test.toml")


def rero(*args: str, db: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, **env}
    environ.pop("RERO_CONFIG", None)
    if db is not None:
        environ["DATABASE_PATH"] = str(db)
    return subprocess.run(
        [sys.executable, "-m", "rero", "--config", TEST_PROFILE, *args],
        env=environ, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("command", [[], ["serve"], ["check-config"], ["backup"], ["export"]])
def test_help(command: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rero", *command, "--help"], capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0
    assert "usage: rero" in proc.stdout


def test_check_config_masks_secrets() -> None:
    proc = rero("check-config")
    assert proc.returncode == 0
    data = json.loads(proc.stdout)
    assert data["auth_backend"] == "fake"
    assert {u["password"] for u in data["fake_users"]} == {"***"}
    assert "alice-pw" not in proc.stdout


def test_check_config_bad_setting() -> None:
    proc = rero("check-config", PORT="abc")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "rero: invalid setting PORT='abc' (from environment PORT): Not a valid integer."
    ]


@pytest.mark.parametrize("command", [["backup", "x.db"], ["export"]])
def test_missing_database_is_one_line(tmp_path: Path, command: list[str]) -> None:
    proc = rero(*command, db=tmp_path / "none.db")
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "no database at" in proc.stderr
    assert not (tmp_path / "none.db").exists()


async def test_backup_during_a_write_storm(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    stop = asyncio.Event()
    storming: set[int] = set()  # writers with a round behind them
    try:
        async with aiohttp.ClientSession() as http:

            async def storm(i: int) -> None:
                who = {"username": f"user{i}", "password": f"pw-{i}"}
                while not stop.is_set():
                    slot = 3 + i % 12
                    await http.post(server.url + "/book-slot", json={"slot_id": slot, **who})
                    await http.post(server.url + "/cancel-slot", json={"slot_id": slot, **who})
                    storming.add(i)

            writers = [asyncio.create_task(storm(i)) for i in range(24)]
            await eventually(lambda: len(storming) == 24, 30, what="every writer under way")
            loop = asyncio.get_running_loop()
            for n in range(3):
                dest = tmp_path / f"copy{n}.db"
                proc = await loop.run_in_executor(
                    None, lambda d=dest: rero("backup", str(d), db=tmp_path / "rero.db")
                )
                assert proc.returncode == 0, proc.stderr
                assert "integrity ok" in proc.stdout
                with closing(sqlite3.connect(dest)) as db:
                    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
                    assert db.execute("SELECT COUNT(*) FROM bookings").fetchone()[0] > 0
                    assert db.execute("SELECT COUNT(*) FROM booking_events").fetchone()[0] > 0
            stop.set()
            await asyncio.gather(*writers)
    finally:
        server.proc.terminate()
        server.proc.wait(10)


async def test_export_round_trips(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            for i, slot in enumerate((4, 9, 11)):
                body = {"slot_id": slot, "username": f"user{i}", "password": f"pw-{i}"}
                await http.post(server.url + "/book-slot", json=body)
            await http.post(
                server.url + "/cancel-slot",
                json={"slot_id": 9, "username": "user1", "password": "pw-1"},
            )
    finally:
        server.proc.terminate()
        server.proc.wait(10)
    db_path = tmp_path / "rero.db"
    with closing(sqlite3.connect(db_path)) as db:
        db.row_factory = sqlite3.Row
        bookings = [dict(r) for r in db.execute("SELECT * FROM bookings ORDER BY id")]
        events = [dict(r) for r in db.execute("SELECT * FROM booking_events ORDER BY id")]

    exported = json.loads(rero("export", db=db_path).stdout)
    assert exported == {
        "bookings": bookings, "blackouts": [], "waitlist": [], "suspensions": [], "events": events,
    }  # fmt: skip
    assert [e["action"] for e in events] == ["booked", "booked", "booked", "cancelled"]
    assert [(b["slot_id"], b["status"]) for b in bookings] == [
        (4, "booked"), (9, "cancelled"), (11, "booked"),
    ]  # fmt: skip

    text = rero("export", "--format", "csv", db=db_path).stdout
    sections = text.split("\n\n")  # bookings, then the empty ones (no lines), events
    bookings_csv, events_csv = sections[0], sections[-1].lstrip("\n")

    def rows(block: str) -> list[dict[str, Any]]:
        return list(csv.DictReader(io.StringIO(block)))

    def as_text(row: dict[str, Any]) -> dict[str, str]:
        return {k: "" if v is None else str(v) for k, v in row.items()}

    assert rows(bookings_csv) == [as_text(b) for b in bookings]
    assert rows(events_csv) == [as_text(e) for e in events]


async def test_gunicorn_factory_builds_the_app(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, aiohttp_client: Any
) -> None:
    import logging

    from rero.app import app_factory

    monkeypatch.setenv("RERO_CONFIG", TEST_PROFILE)
    monkeypatch.setenv("DATABASE_PATH", str(tmp_path / "g.db"))
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        client = await aiohttp_client(await app_factory())
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    assert (await client.get("/health")).status == 200


# ---- PostgreSQL: export through the storage layer; backup names the tool to use -----------


async def test_export_reads_postgresql(pg_url: str) -> None:
    from rero.storage.postgres import open_postgres

    async with open_postgres(pg_url, UPGRADE) as storage:
        await storage.apply([book(5, "A", "t1"), book(6, "B", "t2")])
        await storage.apply([cancel(6, "B", "B", "t3")])
    loop = asyncio.get_running_loop()
    proc = await loop.run_in_executor(None, lambda: rero("export", DATABASE_URL=pg_url))
    assert proc.returncode == 0, proc.stderr
    exported = json.loads(proc.stdout)
    assert list(exported) == ["bookings", "blackouts", "waitlist", "suspensions", "events"]
    assert [(b["slot_id"], b["srn"], b["status"]) for b in exported["bookings"]] == [
        (5, "A", "booked"), (6, "B", "cancelled"),
    ]  # fmt: skip
    assert [(e["id"], e["slot_id"], e["holder_srn"], e["actor_srn"], e["action"], e["at"])
            for e in exported["events"]] == [
        (1, 5, "A", "A", "booked", "t1"),
        (2, 6, "B", "B", "booked", "t2"),
        (3, 6, "B", "B", "cancelled", "t3"),
    ]  # fmt: skip


async def test_export_of_an_empty_postgresql_database_is_one_line(pg_url: str) -> None:
    loop = asyncio.get_running_loop()
    proc = await loop.run_in_executor(None, lambda: rero("export", DATABASE_URL=pg_url))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["rero: export: no rero database at DATABASE_URL"]


def test_an_unreachable_postgresql_is_one_line_without_the_password() -> None:
    url = f"postgresql://rero:Sekr1t-pw@127.0.0.1:{free_port()}/rero"
    proc = rero("export", DATABASE_URL=url)
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("rero: export: cannot reach DATABASE_URL (")
    assert "Sekr1t" not in proc.stderr + proc.stdout


def test_backup_of_postgresql_names_pg_dump(tmp_path: Path) -> None:
    url = "postgresql://rero:Sekr1t-pw@127.0.0.1:5432/rero"
    proc = rero("backup", str(tmp_path / "copy"), DATABASE_URL=url)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "rero: backup: backup copies a SQLite file; back up PostgreSQL with pg_dump"
        ' (pg_dump --format=custom --file=DEST "$DATABASE_URL")'
    ]
    assert not (tmp_path / "copy").exists()


def test_check_config_masks_the_database_password() -> None:
    url = "postgresql://rero:Sekr1t-pw@db.example:5432/rero?sslmode=require"
    proc = rero("check-config", DATABASE_URL=url)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["database_url"] == (
        "postgresql://rero:***@db.example:5432/rero?sslmode=require"
    )
    assert "Sekr1t" not in proc.stdout + proc.stderr


def test_a_bad_database_url_is_not_echoed_with_its_password() -> None:
    proc = rero("check-config", DATABASE_URL="mysql://rero:Sekr1t-pw@db.example/rero")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "rero: invalid setting DATABASE_URL='mysql://rero:***@db.example/rero'"
        " (from environment DATABASE_URL): Must be a postgresql:// URL."
    ]
    assert "Sekr1t" not in proc.stdout + proc.stderr


def test_serve_prints_the_url_once_listening(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "DATABASE_PATH": str(tmp_path / "u.db")}
    env.pop("RERO_CONFIG", None)
    with subprocess.Popen(
        [sys.executable, "-m", "rero", "--config", TEST_PROFILE],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    ) as proc:  # fmt: skip
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            assert ready, "no line on stdout within 30 s"
            assert proc.stdout.readline() == (
                f"rero is serving on http://127.0.0.1:{port}"
                f" - the board: http://127.0.0.1:{port}/board\n"
            )
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
                assert resp.status == 200  # printed once it listens
        finally:
            proc.terminate()
            proc.wait(10)


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("0.0.0.0", "http://127.0.0.1:8000"),
        ("127.0.0.1", "http://127.0.0.1:8000"),
        ("lab.example", "http://lab.example:8000"),
        ("::", "http://[::1]:8000"),
        ("::1", "http://[::1]:8000"),
    ],
)
def test_url_of(host: str, url: str) -> None:
    from rero.cli import url_of
    from rero.settings import Settings

    assert url_of(Settings(host=host)) == url


def test_fake_auth_on_a_network_address_is_refused_in_one_line() -> None:
    # The test profile has fake users; one variable must not put them on the network. (The
    # settings are checked before any command runs; check-config never binds a port.)
    proc = rero("check-config", HOST="0.0.0.0")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"rero: auth_backend='fake' (from {TEST_PROFILE}) with HOST='0.0.0.0' (from environment"
        " HOST) would let anyone on the network sign in as a fake user: listen on a loopback"
        " address (HOST=127.0.0.1) or set allow_fake_auth_on_network = true in the profile"
    ]


@pytest.mark.parametrize("command", ["serve", "export", "check-config"])
def test_database_url_without_the_postgres_extra_is_one_line(command: str) -> None:
    # asyncpg unimportable, as after `pip install rero` without the postgres extra.
    code = "import sys; sys.modules['asyncpg'] = None; from rero.cli import main; sys.exit(main())"
    environ = {**os.environ, "DATABASE_URL": "postgresql://rero:Sekr1t-pw@127.0.0.1:9/rero"}
    environ.pop("RERO_CONFIG", None)
    proc = subprocess.run(
        [sys.executable, "-c", code, "--config", TEST_PROFILE, command],
        env=environ, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "rero: DATABASE_URL needs the postgres extra: pip install 'rero[postgres]'"
    ]
    assert "Sekr1t" not in proc.stdout + proc.stderr


# ---- rero keys -------------------------------------------------------------------------------


def test_keys_generate_writes_a_private_key_once(tmp_path: Path) -> None:
    from rero.grants import load_key

    path = tmp_path / "grant.pem"
    made = rero("keys", "generate", str(path))
    assert made.returncode == 0, made.stderr
    kid = load_key(str(path)).kid
    assert made.stdout.splitlines() == [f"wrote {path}: kid {kid}"]
    assert path.stat().st_mode & 0o777 == 0o600
    before = path.read_bytes()
    again = rero("keys", "generate", str(path))
    assert again.returncode == 1
    assert again.stderr.splitlines() == [f"rero: keys generate: {path}: File exists"]
    assert path.read_bytes() == before


def test_keys_lab_prints_a_key_and_its_hash() -> None:
    import hashlib

    made = rero("keys", "lab")
    assert made.returncode == 0, made.stderr
    first, second = made.stdout.splitlines()
    key = first.rsplit(" ", 1)[1]
    assert len(key) == 43
    digest = hashlib.sha256(key.encode()).hexdigest()
    assert second == f'for its [resources.lab] table: api_key_sha256 = ["{digest}"]'


def test_keys_need_no_valid_profile() -> None:
    assert rero("keys", "lab", PORT="abc").returncode == 0


def test_a_bad_grant_key_is_one_line(tmp_path: Path) -> None:
    profile = tmp_path / "profile.toml"
    missing = tmp_path / "none.pem"
    keys = f"grant_signing_keys = [{str(missing)!r}]\n"
    profile.write_text(keys + Path(TEST_PROFILE).read_text())  # before the tables
    for command in ("check-config", "serve"):
        proc = rero(command, "--config", str(profile))
        assert proc.returncode == 2
        assert proc.stderr.splitlines() == [
            f"rero: grant_signing_keys: {str(missing)!r}: cannot read: No such file or directory"
        ]
