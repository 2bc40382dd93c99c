"""Log lines are JSON, and no password ever reaches one, at any level."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from pythonjsonlogger.json import JsonFormatter

from rero.app import create_app
from rero.logs import FORMAT, AccessLogger, setup_logging
from tests.helpers import ALICE, ClientFactory, FakePesu


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
