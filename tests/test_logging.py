"""Log lines are JSON, and no password ever reaches one, at any level."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from pythonjsonlogger.json import JsonFormatter

from rero.app import create_app
from rero.logs import FORMAT, AccessLogger, RepeatedTracebacks, setup_logging
from tests.helpers import ALICE, ClientFactory, FakePesu, eventually, serve


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Every record of every logger, formatted as the service formats it, at DEBUG."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(FORMAT))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


async def test_no_password_in_any_log_line(
    aiohttp_client: ClientFactory,
    settings: Any,
    pesu: FakePesu,
    json_log: io.StringIO,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake = await aiohttp_client(
        create_app(settings), server_kwargs={"access_log_class": AccessLogger}
    )
    await fake.post("/auth/login", json=ALICE)
    await fake.post("/book-slot", json={"slot_id": 5, **ALICE})
    await fake.post("/cancel-slot", json={"slot_id": 5, **ALICE})
    await fake.post("/auth/login", json={"username": "alice", "password": "Wr0ng-Secret-1"})
    await fake.post(
        "/book-slot", json={"slot_id": 5, "username": "x", "password": "Wr0ng-Secret-2"}
    )

    real = await aiohttp_client(
        create_app(replace(settings, auth_backend="pesu", pesu_auth_url=pesu.url))
    )
    await real.post("/auth/login", json={"username": "student", "password": "right"})
    await real.post("/auth/login", json={"username": "student", "password": "Wr0ng-Secret-3"})
    pesu.mode = "500"
    await real.post("/auth/login", json={"username": "student", "password": "Wr0ng-Secret-4"})

    text = json_log.getvalue() + caplog.text
    assert "request" in text  # the access log was captured: the test can see lines
    for secret in [
        ALICE["password"],
        "Wr0ng-Secret-1",
        "Wr0ng-Secret-2",
        "Wr0ng-Secret-3",
        "Wr0ng-Secret-4",
        "right",
    ]:
        assert secret not in text
    for line in json_log.getvalue().splitlines():
        json.loads(line)


def test_setup_logging_writes_json(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("info")
        logging.getLogger("rero.test").info("hello", extra={"slot_id": 3})
        logging.getLogger("rero.test").debug("hidden")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert (record["level"], record["name"], record["message"], record["slot_id"]) == (
        "INFO",
        "rero.test",
        "hello",
        3,
    )


# ---- tracebacks are rate-limited, a client that goes away is no error --------------------------


def failure(kind: type[Exception] = ValueError) -> logging.LogRecord:
    """A record as ``log.exception("unhandled error on %s", path)`` makes it, raised here."""
    try:
        raise kind("boom")
    except Exception:
        return logging.getLogger("rero.test").makeRecord(
            "rero.test", logging.ERROR, __file__, 1, "unhandled error on %s", ("/x",),
            sys.exc_info(),
        )  # fmt: skip


def test_the_same_traceback_passes_once_per_interval() -> None:
    now = [0.0]
    limit = RepeatedTracebacks(interval=60, timer=lambda: now[0])
    assert limit.filter(failure())
    assert [limit.filter(failure()) for _ in range(3)] == [False, False, False]
    now[0] = 59.9
    assert not limit.filter(failure())
    now[0] = 60.0
    passed = failure()
    assert limit.filter(passed)
    assert passed.suppressed == 4  # type: ignore[attr-defined]
    now[0] = 120.0
    quiet = failure()
    assert limit.filter(quiet)  # nothing dropped since: no count
    assert not hasattr(quiet, "suppressed")


def test_a_different_traceback_is_not_held_back() -> None:
    limit = RepeatedTracebacks(interval=60, timer=lambda: 0.0)
    assert limit.filter(failure(ValueError))
    assert limit.filter(failure(KeyError))  # another exception type
    other_message = failure()
    other_message.msg = "another message"
    assert limit.filter(other_message)
    try:
        raise ValueError("raised elsewhere")
    except ValueError:
        elsewhere = failure()
        elsewhere.exc_info = sys.exc_info()
    assert limit.filter(elsewhere)  # another place it was raised
    plain = logging.LogRecord("rero.test", logging.ERROR, __file__, 1, "no traceback", (), None)
    assert all(limit.filter(plain) for _ in range(3))  # only tracebacks are limited
    assert not limit.filter(failure(KeyError))


def test_the_service_logs_a_repeated_traceback_once(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("info")
        for _ in range(100):
            try:
                raise ValueError("boom")
            except ValueError:
                logging.getLogger("rero.test").exception("unhandled error on %s", "/x")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["message"] == "unhandled error on /x"


async def test_a_client_that_goes_away_mid_request_is_no_error(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Served as in production, where the handler is not cancelled but finds no client;
    logout never reads a body, but the body is read for it first, so it notices too."""
    caplog.set_level(logging.DEBUG)
    async with serve(create_app(settings)) as port:
        for path in ("/auth/login", "/book-slot", "/auth/logout"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n".encode()
                + b"Expect: 100-continue\r\n\r\n"
            )
            # "100 Continue": the request is being handled, so it is gone mid-request.
            assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 100 ")
            writer.write(b'{"username": "ali')
            await writer.drain()
            writer.close()

        def answered() -> list[Any]:
            return [r for r in caplog.records if r.name == "aiohttp.access"]

        await eventually(lambda: len(answered()) == 3, what="the three requests in the access log")
    assert {getattr(r, "status", None) for r in answered()} == {499}
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "authentication is FAKE: 2 local users, no PESU check"
    ]
