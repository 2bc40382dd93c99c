"""Shared fixtures: the real app through create_app, a fake PESU upstream, many users."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from rero.app import create_app
from rero.settings import FakeUser, Settings, load_settings
from rero.storage import Change, Storage, Write

ROOT = Path(__file__).resolve().parent.parent
ALICE = {"username": "alice", "password": "alice-pw-Zq7"}
BOB = {"username": "bob", "password": "bob-pw-Xk4"}
ALICE_SRN = "PES1UG22CS001"
BOB_SRN = "PES1UG22EC002"

ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


async def one(storage: Storage, change: Change) -> Write:
    """Apply a single change."""
    (write,) = await storage.apply([change])
    return write


def users(n: int) -> tuple[FakeUser, ...]:
    """``n`` distinct fake users ``user0..``, password ``pw-<i>``, SRN ``SRN<i>``."""
    return tuple(FakeUser(f"user{i}", f"pw-{i}", f"User {i}", f"SRN{i:04d}") for i in range(n))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    base = load_settings(str(ROOT / "config" / "test.toml"), environ={})
    return replace(base, database_path=str(tmp_path / "db" / "rero.db"))


@pytest.fixture
async def client(
    aiohttp_client: ClientFactory, settings: Settings
) -> TestClient[web.Request, web.Application]:
    return await aiohttp_client(create_app(settings))


@dataclass
class FakePesu:
    """A local stand-in for the PESU auth API whose behaviour each test sets."""

    mode: str = "ok"
    delay: float = 0.0
    calls: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.calls.append(body)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.mode == "ok" and body.get("password") == "right":
            return web.json_response(
                {
                    "status": True,
                    "message": "Login successful.",
                    "profile": {
                        "name": "Pesu Student",
                        "prn": "PES12022000099",
                        "srn": f"PES1UG22CS{len(body['username']):03d}",
                        "program": "Bachelor of Technology",
                        "branch": "Computer Science and Engineering",
                        "branch_short_code": "CSE",
                        "campus": "RR",
                        "campus_code": 1,
                    },
                }
            )
        if self.mode == "ok":
            return web.json_response({"status": False, "message": "Invalid"}, status=401)
        if self.mode == "legacy-false":
            return web.json_response({"status": False, "message": "Invalid"})
        if self.mode == "no-profile":
            return web.json_response({"status": True})
        if self.mode == "html":
            return web.Response(text="<html>down</html>", content_type="text/html")
        return web.json_response({"error": self.mode}, status=int(self.mode))


@pytest.fixture
async def pesu(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> FakePesu:
    fake = FakePesu()
    app = web.Application()
    app.router.add_post("/authenticate", fake.handle)
    server = await aiohttp_server(app)
    fake.url = str(server.make_url("/authenticate"))
    return fake


# ---- PostgreSQL: a throwaway cluster, found or made --------------------------------------


@dataclass
class PgCluster:
    """A running cluster: its URL to the ``postgres`` database, and how to restart it."""

    url: str
    pg_ctl: list[str]

    def restart(self) -> None:
        # No pipes: the restarted server inherits them and would hold them open forever.
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        subprocess.run(
            [*self.pg_ctl, "restart", "-m", "fast", "-w"], check=True, timeout=60, **quiet
        )


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """``RERO_TEST_DATABASE_URL`` (+ ``RERO_TEST_PGDATA``) from CI, else a cluster of our own."""
    bindir = _pg_bin()
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


@pytest.fixture
async def pg_url(pg_cluster: PgCluster) -> str:
    """A fresh, empty database on the cluster for one test."""
    import asyncpg

    name = f"rero_{os.getpid()}_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(pg_cluster.url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return pg_cluster.url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Any]:
    """``python -m rero`` on the test profile in a real process (tests/test_process.py)."""
    from tests.test_process import start_server

    srv = start_server(tmp_path)
    yield srv
    srv.proc.terminate()
    try:
        srv.proc.wait(10)
    except subprocess.TimeoutExpired:
        srv.proc.kill()
