"""Fuzzing the WebSocket: valid, nearly valid and garbage messages never break the handler.

The short form (12 batches of 100 messages) runs in CI; ``FUZZ_EXAMPLES=100`` (10,000)
is the long form:

    FUZZ_EXAMPLES=100 pytest tests/test_fuzz.py
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rero.app import create_app
from rero.settings import load_settings
from tests.helpers import ROOT, Errors

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
TYPES = ["book_slot", "cancel_slot", "get_slots", "authenticate", "logout"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False),
    st.text(max_size=40),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
nearly_valid = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES) | st.text(max_size=12)},
    optional={
        "slot_id": st.integers(min_value=-5, max_value=40) | values,
        "username": st.text(max_size=30) | values,
        "password": st.text(max_size=30) | values,
        "token": st.text(max_size=50) | values,
    },
).map(json.dumps)
garbage = st.one_of(
    st.text(max_size=200),
    values.map(json.dumps),
    st.integers(min_value=1, max_value=3000).map(lambda n: "[" * n + "]" * n),
    st.integers(min_value=1, max_value=3000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.integers(min_value=4300, max_value=6000).map(lambda n: "9" * n),  # over int's digit limit
)
binary = st.binary(max_size=200)
messages = st.lists(st.one_of(nearly_valid, garbage, binary), min_size=100, max_size=100)

REPLY_TYPES = {
    "error",
    "slots_update",
    "booking_response",
    "cancellation_response",
    "auth_response",
    "logout_response",
}


async def _run(batch: list[str | bytes], folder: Path) -> None:
    base = load_settings(str(ROOT / "config" / "test.toml"), environ={})
    app = create_app(replace(base, database_path=str(folder / "fuzz.db")))
    errors = Errors()
    logging.getLogger("rero").addHandler(errors)
    async with TestClient(TestServer(app)) as client:
        before = await (await client.get("/slots")).json()
        ws = await client.ws_connect("/slot-booking")
        assert json.loads((await ws.receive(timeout=5)).data)["type"] == "slots_update"
        for message in batch:
            if isinstance(message, bytes):
                await ws.send_bytes(message)
            else:
                await ws.send_str(message)
            reply = await ws.receive(timeout=10)
            assert reply.type == aiohttp.WSMsgType.TEXT, (message, reply)
            answer: dict[str, Any] = json.loads(reply.data)
            assert answer["type"] in REPLY_TYPES
            if isinstance(message, bytes):
                assert answer["type"] == "error"
            else:
                try:
                    parsed = json.loads(message)
                except (ValueError, RecursionError):
                    parsed = None
                if not isinstance(parsed, dict) or parsed.get("type") not in TYPES:
                    assert answer["type"] == "error", (message, answer)
            if answer.get("success") is True:
                assert answer["type"] in ("logout_response",), (message, answer)
        await ws.send_json({"type": "get_slots"})
        assert json.loads((await ws.receive(timeout=5)).data)["type"] == "slots_update"
        assert await (await client.get("/slots")).json() == before
        await ws.close()
    logging.getLogger("rero").removeHandler(errors)
    assert [r for r in errors.records if r.name == "rero.realtime"] == []


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batch=messages)
def test_fuzzed_websocket_messages(batch: list[str | bytes], tmp_path_factory: Any) -> None:
    asyncio.run(_run(batch, tmp_path_factory.mktemp("fuzz")))
