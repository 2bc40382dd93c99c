"""Shared fixtures: the real app through create_app, a fake PESU upstream, a PostgreSQL
cluster, a server process. Helpers live in ``tests/helpers.py``."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from rero.app import create_app
from rero.settings import Settings, load_settings
from rero.storage import Storage
from rero.storage.backends import open_storage
from tests.helpers import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    ROOT,
    UPGRADE,
    ClientFactory,
    Clock,
    FakePesu,
    Inbox,
    PgCluster,
    Server,
    free_port,
    new_database,
    pg_bin,
    smtp_server,
    start_server,
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    base = load_settings(str(ROOT / "config" / "test.toml"), environ={})
    return replace(base, database_path=str(tmp_path / "db" / "rero.db"))


@pytest.fixture
async def client(
    aiohttp_client: ClientFactory, settings: Settings
) -> TestClient[web.Request, web.Application]:
    return await aiohttp_client(create_app(settings))


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    """A real SMTP server (aiosmtpd) for the test, and what it accepted."""
    with smtp_server() as server:
        yield server


@pytest.fixture
def clock() -> Clock:
    """A clock tests move by hand, at 08:30 in Kolkata."""
    return Clock(datetime(2026, 11, 24, 3, 0, tzinfo=timezone.utc))


@pytest.fixture
def make(
    aiohttp_client: ClientFactory, settings: Settings, clock: Clock
) -> Callable[..., Awaitable[Any]]:
    """Builds the app with ``settings`` changed as asked, on the hand-moved clock."""

    async def factory(**changes: Any) -> Any:
        app = create_app(replace(settings, **changes), clock=clock, timer=clock.timer)
        return await aiohttp_client(app)

    return factory


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Headless Chromium for the page tests (Playwright is imported only by them)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        await launched.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where the page tests put screenshots: ``RERO_SCREENSHOTS``, else a temporary folder."""
    folder = Path(os.environ.get("RERO_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
async def pesu(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> FakePesu:
    fake = FakePesu()
    app = web.Application()
    app.router.add_post("/authenticate", fake.handle)
    server = await aiohttp_server(app)
    fake.url = str(server.make_url("/authenticate"))
    return fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session with no connection limit: the rushes open hundreds at once."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        yield s


# ---- PostgreSQL: a throwaway cluster, found or made --------------------------------------


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """``RERO_TEST_DATABASE_URL`` (+ ``RERO_TEST_PGDATA``) from CI, else a cluster of our own."""
    bindir = pg_bin()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if os.environ.get("RERO_TEST_DATABASE_URL"):
        data = os.environ.get("RERO_TEST_PGDATA", "")
        ctl = [*as_postgres, str(bindir / "pg_ctl"), "-D", data] if bindir and data else []
        yield PgCluster(os.environ["RERO_TEST_DATABASE_URL"], ctl)
        return
    if bindir is None:
        pytest.skip(
            "no PostgreSQL found: install Debian's postgresql or set RERO_TEST_DATABASE_URL"
        )
    # Not under pytest's own temp folder: that is private to root, and the server is not.
    root = Path(tempfile.mkdtemp(prefix="rero-pg-"))
    if as_postgres:
        shutil.chown(root, "postgres")
    data, port = root / "data", free_port()
    subprocess.run(
        [
            *as_postgres,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    ctl = [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"),
           "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1"]  # fmt: skip
    subprocess.run([*ctl, "start", "-w"], check=True, capture_output=True, timeout=60)
    try:
        yield PgCluster(f"postgresql://postgres@127.0.0.1:{port}/postgres", ctl)
    finally:
        subprocess.run([*ctl, "stop", "-m", "immediate"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest) -> dict[str, str]:
    """The store a test runs on, as settings: the SQLite file of ``settings``, or a fresh
    database on the PostgreSQL cluster. A test (or fixture) that takes it runs on both."""
    if request.param == "sqlite":
        return {}
    pytest.importorskip("asyncpg")
    return {"database_url": await new_database(request.getfixturevalue("pg_cluster").url)}


@pytest.fixture
async def store(database: dict[str, str], tmp_path: Path) -> AsyncIterator[Storage]:
    """A store opened directly (no app), once per store."""
    url = database.get("database_url", "")
    async with open_storage(str(tmp_path / "rero.db"), url, UPGRADE) as opened:
        yield opened


@pytest.fixture
async def pg_url(pg_cluster: PgCluster) -> str:
    """A fresh, empty database on the cluster for one test."""
    return await new_database(pg_cluster.url)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """``python -m rero`` on the test profile in a real process, stopped afterwards."""
    srv = start_server(tmp_path)
    yield srv
    srv.stop()
