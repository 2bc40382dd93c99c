"""Shared fixtures: the real app through create_app, a fake PESU upstream, many users."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from rero.app import create_app
from rero.settings import FakeUser, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
ALICE = {"username": "alice", "password": "alice-pw-Zq7"}
BOB = {"username": "bob", "password": "bob-pw-Xk4"}
ALICE_SRN = "PES1UG22CS001"
BOB_SRN = "PES1UG22EC002"

ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


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
