"""Fuzzing the HTTP routes: hostile bodies, headers and queries never get a 5xx.

Each request goes over a raw socket, so that bytes no client library would send (an
``Authorization`` that is not UTF-8, a body that lies about its charset) reach the
server as they are. Every answer must be a 4xx with a JSON ``{"detail": ...}`` (or a
success), and nothing may be logged at ERROR. The short form (12 batches of 10
requests) runs in CI; ``FUZZ_EXAMPLES=100`` is the long form:

    FUZZ_EXAMPLES=100 pytest tests/test_http_fuzz.py
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_from_bytes

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rero.app import create_app
from rero.settings import load_settings
from tests.helpers import ALICE, ALICE_SRN, Errors, exchange, serve

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
TOKEN = b"<token>"  # stands for a live admin session's token, known only at run time

ROUTES = [
    ("POST", "/auth/login"),
    ("POST", "/auth/logout"),
    ("POST", "/book-slot"),
    ("POST", "/cancel-slot"),
    ("POST", "/my-bookings"),
    ("POST", "/admin/reset"),
    ("GET", "/admin/audit"),
    ("GET", "/slots"),
]

surrogates = st.integers(0xD800, 0xDFFF).map(chr)
texts = st.lists(st.characters() | surrogates, max_size=20).map("".join)
huge = st.sampled_from([2**63 - 1, 2**63, 2**64, 10**30, -(2**63) - 1]) | st.integers()
scalars = st.one_of(st.none(), st.booleans(), huge, st.floats(), texts)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=10,
)
nearly_valid = st.fixed_dictionaries(
    {},
    optional={
        "username": st.sampled_from(["alice", "bob"]) | values,
        "password": st.just(ALICE["password"]) | values,
        "slot_id": st.integers(2, 15) | values,
        "confirm": st.just(True) | values,
    },
).map(json.dumps)  # ensure_ascii: a lone surrogate becomes "\ud800", which is valid JSON


def nested(n: int, field: bool) -> str:
    inner = "[" * n + "]" * n
    return '{"slot_id": ' + inner + "}" if field else inner


bodies = st.one_of(
    nearly_valid.map(str.encode),
    values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
    st.builds(nested, st.integers(1, 30_000), st.booleans()).map(str.encode),
    st.integers(4300, 6000).map(lambda n: b"9" * n),  # over int's digit limit
    st.sampled_from([b"1e999", b"-1e999", b"NaN", b"Infinity", b'{"slot_id": 1e999}']),
)
content_types = st.sampled_from(
    [
        None,
        b"application/json",
        b"text/plain",
        b"application/json; charset=utf-16",
        b"application/json; charset=latin-1",
        b"application/json; charset=klingon",
        b"multipart/form-data; boundary=x",
    ]
)
# What an HTTP parser lets through in a header value: visible ASCII, space, tab, obs-text.
header_bytes = st.binary(max_size=60).map(
    lambda b: bytes(c for c in b if c == 9 or 32 <= c <= 126 or c >= 128).strip()
)
authorizations = st.one_of(
    st.none(),
    st.just(b"Bearer " + TOKEN),
    header_bytes.map(lambda b: b"Bearer " + b),
    header_bytes.map(lambda b: b"bearer " + TOKEN + b),
    header_bytes,
    st.sampled_from([b"Bearer", b"Bearer ", b"Basic YWxpY2U6eA==", "Bearer é".encode()]),
)
query_values = st.one_of(
    huge.map(str), st.text(max_size=20), st.binary(max_size=10).map(quote_from_bytes)
)
over_digit_limit = st.just("9" * 4301)  # one of these and the line stays under 8 KiB
queries = st.fixed_dictionaries(
    {}, optional={"limit": query_values, "before": query_values | over_digit_limit}
)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: bytes
    content_type: bytes | None
    authorization: bytes | None

    def raw(self, token: bytes) -> bytes:
        target = self.path
        if self.query:
            target += "?" + "&".join(f"{k}={quote(v, safe='%')}" for k, v in self.query.items())
        head = [f"{self.method} {target} HTTP/1.1".encode(), b"Host: x", b"Connection: close"]
        if self.content_type is not None:
            head.append(b"Content-Type: " + self.content_type)
        if self.authorization is not None:
            head.append(b"Authorization: " + self.authorization.replace(TOKEN, token))
        head.append(f"Content-Length: {len(self.body)}".encode())
        return b"\r\n".join(head) + b"\r\n\r\n" + self.body


requests = st.builds(
    lambda route, query, body, content_type, authorization: Request(
        route[0], route[1], query, body, content_type, authorization
    ),
    st.sampled_from(ROUTES),
    queries,
    bodies,
    content_types,
    authorizations,
)


async def _run(batch: list[Request], folder: Path) -> None:
    base = load_settings(str(Path(__file__).parent.parent / "config" / "test.toml"), environ={})
    app = create_app(replace(base, database_path=str(folder / "fuzz.db"), admins=(ALICE_SRN,)))
    errors = Errors()
    logging.getLogger().addHandler(errors)
    try:
        async with serve(app) as port:
            body = json.dumps(ALICE).encode()
            login = await exchange(
                port,
                b"POST /auth/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body,
            )
            token = login.json()["token"].encode()
            for request in batch:
                resp = await exchange(port, request.raw(token))
                assert resp.status < 500, (request, resp)
                if resp.status == 204:
                    assert resp.body == b"", (request, resp)
                    continue
                assert resp.headers["content-type"].startswith("application/json"), (request, resp)
                answer: Any = json.loads(resp.body)
                if resp.status >= 400:
                    assert isinstance(answer, dict), (request, resp)
                    assert isinstance(answer.get("detail"), str), (request, resp)
    finally:
        logging.getLogger().removeHandler(errors)
    assert [r.getMessage() for r in errors.records] == []


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batch=st.lists(requests, min_size=10, max_size=10))
def test_fuzzed_http_requests(batch: list[Request], tmp_path_factory: Any) -> None:
    asyncio.run(_run(batch, tmp_path_factory.mktemp("http-fuzz")))
