"""The HTTP contract, to the letter: bodies, status codes and every error path."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import aiohttp
import pytest

from rero.app import create_app
from rero.keys import AUTH, IDENTITY, SERVICE, STORAGE
from tests.helpers import (
    ALICE,
    ALICE_SRN,
    BOB,
    BOB_SRN,
    ROOT,
    ClientFactory,
    exchange,
    parse_response,
)

pytestmark = pytest.mark.usefixtures("settings")

ALL_IDS = list(range(3, 15))


def slot_json(i: int, by: str | None = None, at: str | None = None) -> dict[str, Any]:
    return {
        "id": i,
        "start_time": f"{i:02d}:00",
        "end_time": f"{i + 1:02d}:00",
        "is_booked": by is not None,
        "booked_by": by,
        "booked_at": at,
    }


async def book(client: Any, slot_id: Any, who: dict[str, str] = ALICE) -> Any:
    return await client.post("/book-slot", json={"slot_id": slot_id, **who})


async def test_index(client: Any) -> None:
    await book(client, 7)
    resp = await client.get("/")
    assert resp.status == 200
    assert await resp.json() == {
        "message": "Slot Booking API is running",
        "websocket_endpoint": "/slot-booking",
        "active_connections": 0,
        "booked_slots": [7],
    }


async def test_slots_fresh_board(client: Any) -> None:
    resp = await client.get("/slots")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert await resp.json() == {
        "slots": [slot_json(i) for i in ALL_IDS],
        "available_slots": ALL_IDS,
        "booked_slots": [],
    }


async def test_book_then_board_names_srn(client: Any) -> None:
    resp = await book(client, 5)
    assert resp.status == 200
    assert await resp.json() == {
        "success": True,
        "message": "Slot 5 booked successfully",
        "slot_id": 5,
    }
    board = await (await client.get("/slots")).json()
    slot = board["slots"][2]
    assert slot["id"] == 5
    assert slot["is_booked"] is True
    assert slot["booked_by"] == ALICE_SRN
    assert slot["booked_at"].endswith("+00:00")
    assert board["booked_slots"] == [5]
    assert board["available_slots"] == [i for i in ALL_IDS if i != 5]


async def test_book_taken_slot(client: Any) -> None:
    await book(client, 5)
    resp = await book(client, 5, BOB)
    assert resp.status == 400
    assert await resp.json() == {"detail": "Slot 5 is not available"}


@pytest.mark.parametrize("slot_id", [2, 15, 0, -1, 10**12])
async def test_book_out_of_range(client: Any, slot_id: int) -> None:
    resp = await book(client, slot_id)
    assert resp.status == 400
    assert await resp.json() == {
        "detail": f"Slot {slot_id} does not exist: valid slots are 3 to 14"
    }


async def test_book_bad_credentials(client: Any) -> None:
    resp = await book(client, 5, {"username": "alice", "password": "wrong"})
    assert resp.status == 401
    assert await resp.json() == {"detail": "Invalid credentials"}
    assert (await (await client.get("/slots")).json())["booked_slots"] == []


async def test_cancel_own(client: Any) -> None:
    await book(client, 6)
    resp = await client.post("/cancel-slot", json={"slot_id": 6, **ALICE})
    assert resp.status == 200
    assert await resp.json() == {
        "success": True,
        "message": "Slot 6 booking cancelled successfully",
        "slot_id": 6,
    }
    assert (await (await client.get("/slots")).json())["slots"][3] == slot_json(6)


async def test_cancel_someone_elses(client: Any) -> None:
    await book(client, 6, BOB)
    resp = await client.post("/cancel-slot", json={"slot_id": 6, **ALICE})
    assert resp.status == 403
    assert await resp.json() == {"detail": "You can only cancel your own bookings"}
    assert (await (await client.get("/slots")).json())["slots"][3]["booked_by"] == BOB_SRN


async def test_cancel_not_booked(client: Any) -> None:
    resp = await client.post("/cancel-slot", json={"slot_id": 6, **ALICE})
    assert resp.status == 400
    assert await resp.json() == {"detail": "Slot 6 is not booked"}


async def test_cancel_out_of_range(client: Any) -> None:
    resp = await client.post("/cancel-slot", json={"slot_id": 99, **ALICE})
    assert resp.status == 400
    assert await resp.json() == {"detail": "Slot 99 does not exist: valid slots are 3 to 14"}


async def test_cancel_bad_credentials(client: Any) -> None:
    await book(client, 6)
    resp = await client.post("/cancel-slot", json={"slot_id": 6, **ALICE, "password": "x"})
    assert resp.status == 401
    assert await resp.json() == {"detail": "Invalid credentials"}


async def test_login(client: Any) -> None:
    resp = await client.post("/auth/login", json=ALICE)
    assert resp.status == 200
    body = await resp.json()
    assert len(body.pop("token")) >= 43  # 256 random bits, URL-safe
    assert datetime.fromisoformat(body.pop("expires_at")) > datetime.now(timezone.utc)
    assert body == {
        "success": True,
        "message": "Login successful",
        "user": {
            "name": "Alice Rao",
            "srn": ALICE_SRN,
            "prn": "PES12022000001",
            "program": "Bachelor of Technology",
            "branch": "Computer Science and Engineering",
            "campus": "RR",
        },
    }


@pytest.mark.parametrize(
    "who", [{"username": "alice", "password": "nope"}, {"username": "mallory", "password": "x"}]
)
async def test_login_invalid(client: Any, who: dict[str, str]) -> None:
    resp = await client.post("/auth/login", json=who)
    assert resp.status == 401
    assert await resp.json() == {"detail": "Invalid credentials"}


async def test_my_bookings(client: Any) -> None:
    await book(client, 9)
    await book(client, 4)
    await book(client, 11, BOB)
    resp = await client.post("/my-bookings", json=ALICE)
    assert resp.status == 200
    body = await resp.json()
    assert body["success"] is True
    assert body["total_bookings"] == 2
    assert [(b["id"], b["start_time"], b["end_time"]) for b in body["bookings"]] == [
        (4, "04:00", "05:00"),
        (9, "09:00", "10:00"),
    ]
    assert all(set(b) == {"id", "start_time", "end_time", "booked_at"} for b in body["bookings"])
    assert all(b["booked_at"] for b in body["bookings"])


async def test_my_bookings_none_and_invalid(client: Any) -> None:
    resp = await client.post("/my-bookings", json=BOB)
    assert await resp.json() == {"success": True, "bookings": [], "total_bookings": 0}
    resp = await client.post("/my-bookings", json={**BOB, "password": "no"})
    assert resp.status == 401


async def test_health(client: Any, settings: Any) -> None:
    await book(client, 3)
    resp = await client.get("/health")
    assert resp.status == 200
    body = await resp.json()
    assert body.pop("timestamp").endswith("+00:00")
    assert body == {
        "status": "healthy",
        "active_connections": 0,
        "total_slots": 12,
        "booked_slots_count": 1,
        "available_slots_count": 11,
        "store": {"kind": "sqlite", "reachable": True},
        "bus": {"kind": "sqlite-data-version", "reachable": True},
        "database": {
            "total_slots": 12,
            "booked_slots": 1,
            "available_slots": 11,
            "database_path": settings.database_path,
        },
        "mail": {"configured": False, "pending": 0, "dead": 0},
    }


async def test_health_unhealthy_when_database_unreadable(client: Any) -> None:
    await client.server.app[STORAGE]._db.close()
    resp = await client.get("/health")
    assert resp.status == 503
    body = await resp.json()
    assert body["status"] == "unhealthy"
    assert body["total_slots"] == 12
    assert body["store"] == {"kind": "sqlite", "reachable": False}


async def test_stats(client: Any, settings: Any) -> None:
    await book(client, 3)
    await book(client, 4, BOB)
    await book(client, 4, BOB)
    await book(client, 5, {"username": "bob", "password": "no"})
    resp = await client.get("/stats")
    assert resp.status == 200
    body = await resp.json()
    times = body.pop("response_times_ms")
    assert set(times) == {"p50", "p90", "p99"}
    assert 0 < times["p50"] <= times["p90"] <= times["p99"]
    assert body.pop("operations") == {
        "book": {"success": 2, "slot_unavailable": 1, "invalid_credentials": 1},
        "login": {"success": 3, "invalid_credentials": 1},
    }
    assert body == {
        "database": {
            "total_slots": 12,
            "booked_slots": 2,
            "available_slots": 10,
            "database_path": settings.database_path,
        },
        "websocket": {"active_connections": 0},
        "slots": {"total": 12, "booked": 2, "available": 10},
    }


# ---- bad input: never reaches the database or the auth backend ----------------------------


@pytest.fixture
def untouched(client: Any) -> Any:
    """Fail the test if a bad request reaches auth or the database."""
    app = client.server.app

    class Boom:
        async def authenticate(self, *_: Any) -> Any:
            raise AssertionError("reached auth")

    app[IDENTITY]._auth = Boom()
    app[IDENTITY]._sessions = app[IDENTITY]._throttle._store = None
    app[SERVICE]._store = app[SERVICE]._commit._store = None
    return app


@pytest.mark.parametrize("path", ["/book-slot", "/cancel-slot", "/my-bookings", "/auth/login"])
@pytest.mark.parametrize("body", [b"", b"{", b"not json", b"\xff\xfe", b'{"slot_id": 1,}'])
async def test_non_json_body(client: Any, untouched: Any, path: str, body: bytes) -> None:
    resp = await client.post(path, data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert await resp.json() == {"detail": "Request body must be valid JSON"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "Not a valid integer."),
        ("5", "Not a valid integer."),
        (None, "Field may not be null."),
        (3.5, "Not a valid integer."),
        (5.0, "Not a valid integer."),
        (True, "Not a valid integer."),
        ([5], "Not a valid integer."),
    ],
)
@pytest.mark.parametrize("path", ["/book-slot", "/cancel-slot"])
async def test_slot_id_wrong_type(
    client: Any, untouched: Any, path: str, value: Any, message: str
) -> None:
    resp = await client.post(path, json={"slot_id": value, **ALICE})
    assert resp.status == 422
    assert await resp.json() == {
        "detail": "Request validation failed",
        "errors": {"slot_id": [message]},
    }


@pytest.mark.parametrize("path", ["/book-slot", "/cancel-slot"])
async def test_missing_fields(client: Any, untouched: Any, path: str) -> None:
    resp = await client.post(path, json={})
    assert resp.status == 422
    assert await resp.json() == {
        "detail": "Request validation failed",
        "errors": {
            "slot_id": ["Missing data for required field."],
            "username": ["Missing data for required field."],
            "password": ["Missing data for required field."],
        },
    }


@pytest.mark.parametrize("body", [[], "x", 5, None])
async def test_body_not_an_object(client: Any, untouched: Any, body: Any) -> None:
    resp = await client.post("/auth/login", data=json.dumps(body))
    assert resp.status == 422
    assert (await resp.json())["errors"] == {"_schema": ["Invalid input type."]}


@pytest.mark.parametrize(
    ("field", "value"), [("username", ""), ("password", ""), ("username", 5), ("password", None)]
)
async def test_bad_credentials_shape(client: Any, untouched: Any, field: str, value: Any) -> None:
    resp = await client.post("/auth/login", json={**ALICE, field: value})
    assert resp.status == 422
    assert list((await resp.json())["errors"]) == [field]


async def test_body_too_large(client: Any, untouched: Any) -> None:
    body = json.dumps({**ALICE, "slot_id": 5, "pad": "x" * 70_000})
    resp = await client.post("/book-slot", data=body)
    assert resp.status == 413
    assert await resp.json() == {"detail": "Request body too large: at most 65536 bytes"}


NESTED = "[" * 30_000 + "]" * 30_000  # under the size limit, far over any decoder's depth


@pytest.mark.parametrize("path", ["/book-slot", "/auth/login"])
@pytest.mark.parametrize(
    "body",
    [
        NESTED,
        '{"slot_id": ' + NESTED + "}",
        '{"username": ' + '{"a":' * 10_000 + "1" + "}" * 10_001,
    ],
    ids=["array", "in-a-field", "objects"],
)
@pytest.mark.parametrize("token", [False, True])
async def test_nesting_too_deep_is_400(
    client: Any, untouched: Any, path: str, body: str, token: bool
) -> None:
    headers = {"Authorization": "Bearer abc"} if token else {}
    resp = await client.post(path, data=body, headers=headers)
    assert resp.status == 400
    assert await resp.json() == {"detail": "Request body must be valid JSON"}


async def test_unknown_charset_is_400(client: Any, untouched: Any) -> None:
    headers = {"Content-Type": "application/json; charset=klingon"}
    resp = await client.post("/auth/login", data=json.dumps(ALICE), headers=headers)
    assert resp.status == 400
    assert await resp.json() == {"detail": "Request body must be valid JSON"}


@pytest.mark.parametrize("value", ["\ud800", "al\udfffice", "\udc80\ud800"])
@pytest.mark.parametrize("field", ["username", "password"])
@pytest.mark.parametrize("path", ["/auth/login", "/book-slot", "/my-bookings"])
async def test_lone_surrogate_is_422(
    client: Any, untouched: Any, path: str, field: str, value: str
) -> None:
    """Valid JSON (``"\\ud800"``) but no text: it could never be encoded to be checked."""
    body = json.dumps({"slot_id": 5, **ALICE, field: value})
    assert "\\ud" in body or "\\udc" in body
    resp = await client.post(path, data=body)
    assert resp.status == 422
    assert await resp.json() == {
        "detail": "Request validation failed",
        "errors": {field: ["Not valid Unicode text."]},
    }


@pytest.mark.parametrize(
    "value", [b"Bearer \xff\xfe", b"Bearer ab\xed\xa0\x80cd", b"bearer \xc3\xa9t\xc3\xa9"]
)
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/auth/logout", b""),
        ("POST", "/book-slot", b'{"slot_id": 5}'),
        ("POST", "/my-bookings", b""),
        ("POST", "/admin/reset", b'{"confirm": true}'),
        ("GET", "/admin/audit", b""),
    ],
)
async def test_authorization_that_is_no_token_is_401(
    client: Any, untouched: Any, value: bytes, method: str, path: str, body: bytes
) -> None:
    """Bytes that are not UTF-8 (or not ASCII) cannot be one of our tokens."""
    request = (
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
        + b"Authorization: " + value + b"\r\n"
        + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )  # fmt: skip
    resp = await exchange(client.port, request)
    assert resp.status == 401
    assert resp.json() == {"detail": "Invalid or expired session"}


@pytest.mark.parametrize(
    ("before", "message"),
    [
        (
            2**63,
            "Must be greater than or equal to 1 and less than or equal to 9223372036854775807.",
        ),
        (
            10**30,
            "Must be greater than or equal to 1 and less than or equal to 9223372036854775807.",
        ),
        ("9" * 5000, "Not a valid integer."),
    ],
)
async def test_audit_before_beyond_any_id_is_422(
    aiohttp_client: ClientFactory, settings: Any, before: Any, message: str
) -> None:
    client = await aiohttp_client(create_app(replace(settings, admins=(ALICE_SRN,))))
    token = (await (await client.post("/auth/login", json=ALICE)).json())["token"]
    headers = {"Authorization": f"Bearer {token}"}
    resp = await client.get(f"/admin/audit?before={before}", headers=headers)
    assert resp.status == 422
    assert await resp.json() == {
        "detail": "Request validation failed",
        "errors": {"before": [message]},
    }
    resp = await client.get(f"/admin/audit?before={2**63 - 1}", headers=headers)
    assert (resp.status, await resp.json()) == (200, {"events": [], "next_before": None})


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/book-slot"), ("POST", "/auth/logout"), ("GET", "/slots")]
)
async def test_a_stalled_body_gets_408_and_the_connection_closes(
    aiohttp_client: ClientFactory, settings: Any, method: str, path: str
) -> None:
    """Headers promise 100 bytes, a few come, then nothing: the socket is not held."""
    client = await aiohttp_client(create_app(replace(settings, body_timeout_seconds=0.3)))
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n".encode()
        + b'Content-Length: 100\r\n\r\n{"slot_id": '
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        data = await asyncio.wait_for(reader.read(), 5)  # to the end: the server closed
    finally:
        writer.close()
    assert loop.time() - started < 3
    resp = parse_response(data)
    assert resp.status == 408
    assert resp.json() == {"detail": "Request body not received within 0.3 seconds"}


async def test_a_body_in_time_is_read_as_usual(
    aiohttp_client: ClientFactory, settings: Any
) -> None:
    client = await aiohttp_client(create_app(replace(settings, body_timeout_seconds=0.3)))
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    body = json.dumps({"slot_id": 6, **ALICE}).encode()
    writer.write(
        b"POST /book-slot HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[:10]
    )
    await writer.drain()
    writer.write(body[10:])
    try:
        resp = parse_response(await asyncio.wait_for(reader.read(), 5))
    finally:
        writer.close()
    assert resp.status == 200
    assert resp.json()["message"] == "Slot 6 booked successfully"


async def test_unknown_path(client: Any) -> None:
    resp = await client.get("/no-such-thing")
    assert resp.status == 404
    assert await resp.json() == {"detail": "Not Found"}


@pytest.mark.parametrize(("method", "path"), [("GET", "/book-slot"), ("DELETE", "/slots")])
async def test_wrong_method(client: Any, method: str, path: str) -> None:
    resp = await client.request(method, path)
    assert resp.status == 405
    assert await resp.json() == {"detail": "Method Not Allowed"}
    assert "Allow" in resp.headers


async def test_extra_keys_are_ignored(client: Any) -> None:
    resp = await client.post("/book-slot", json={"slot_id": 8, **ALICE, "type": "book_slot"})
    assert resp.status == 200


# ---- upstream unavailable, CORS -----------------------------------------------------------


async def test_auth_unavailable_is_503_with_retry_after(
    aiohttp_client: ClientFactory, settings: Any, pesu: Any
) -> None:
    pesu.mode = "500"
    app = create_app(replace(settings, auth_backend="pesu", pesu_auth_url=pesu.url))
    client = await aiohttp_client(app)
    for resp in [
        await client.post("/auth/login", json={"username": "u", "password": "right"}),
        await client.post("/book-slot", json={"slot_id": 5, "username": "u", "password": "p"}),
    ]:
        assert resp.status == 503
        assert await resp.json() == {"detail": "Authentication service unavailable"}
        assert int(resp.headers["Retry-After"]) > 0
    assert app[AUTH].hits == 0


async def test_cors_preflight_and_simple(client: Any) -> None:
    origin = "http://frontend.example"
    resp = await client.options(
        "/book-slot",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] in ("*", origin)
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in resp.headers
    resp = await client.get("/slots", headers={"Origin": origin})
    assert resp.headers["Access-Control-Allow-Origin"] in ("*", origin)
    assert resp.headers["Access-Control-Expose-Headers"]
    resp = await client.get("/slots")  # same origin: no CORS headers at all
    assert not [h for h in resp.headers if h.startswith("Access-Control-")]


async def test_cors_restricted_origins(aiohttp_client: ClientFactory, settings: Any) -> None:
    app = create_app(replace(settings, cors_origins=("http://ok.example",)))
    client = await aiohttp_client(app)
    resp = await client.get("/slots", headers={"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in resp.headers
    resp = await client.get("/slots", headers={"Origin": "http://ok.example"})
    assert resp.headers["Access-Control-Allow-Origin"] == "http://ok.example"


@pytest.mark.parametrize("fault", ["500", "html", "slow", "down"])
async def test_upstream_fault_spares_cached_users(
    aiohttp_client: ClientFactory, settings: Any, pesu: Any, fault: str
) -> None:
    """An outage fails new logins with 503 at once, and cached students keep booking."""
    app = create_app(
        replace(
            settings, auth_backend="pesu", pesu_auth_url=pesu.url, pesu_auth_timeout_seconds=0.3
        )
    )
    client = await aiohttp_client(app)
    cached = {"username": "cached", "password": "right"}
    assert (await client.post("/auth/login", json=cached)).status == 200
    if fault == "slow":
        pesu.delay = 2.0
    elif fault == "down":
        app[IDENTITY]._auth._backend._url = "http://127.0.0.1:9/authenticate"  # type: ignore[attr-defined]
    else:
        pesu.mode = "500" if fault == "500" else "html"
    resp = await client.post("/auth/login", json={"username": "new", "password": "right"})
    assert (resp.status, await resp.json()) == (
        503,
        {"detail": "Authentication service unavailable"},
    )
    resp = await client.post("/book-slot", json={"slot_id": 4, **cached})
    assert resp.status == 200
    health = await (await client.get("/health")).json()
    assert health["status"] == "healthy"


# ---- production defaults: no stranger's origin, no versions, docs offline ---------------


async def test_cors_varies_by_origin_and_never_answers_null(client: Any) -> None:
    resp = await client.get("/slots")
    assert resp.headers.getall("Vary") == ["Origin"]
    assert "Access-Control-Allow-Origin" not in resp.headers
    resp = await client.get("/slots", headers={"Origin": "https://lab.example"})
    assert resp.headers["Access-Control-Allow-Origin"] in ("*", "https://lab.example")
    resp = await client.get("/slots", headers={"Origin": "null"})
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert resp.headers.getall("Vary") == ["Origin"]


async def test_production_allows_only_the_servers_own_origin(
    aiohttp_client: ClientFactory, settings: Any
) -> None:
    from rero.settings import load_settings

    prod = load_settings(str(ROOT / "config" / "production.toml"), environ={})
    assert (prod.cors_origins, prod.ws_allowed_origins) == ((), ())
    app = create_app(replace(settings, cors_origins=(), ws_allowed_origins=()))
    client = await aiohttp_client(app)
    resp = await client.get("/slots", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert "Vary" not in resp.headers  # nothing depends on the origin
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/slot-booking", headers={"Origin": "https://evil.example"})
    assert refused.value.status == 403
    own = f"http://{client.server.host}:{client.server.port}"
    ws = await client.ws_connect("/slot-booking", headers={"Origin": own})
    await ws.close()


@pytest.mark.parametrize("path", ["/slots", "/docs", "/nope", "/openapi.json"])
async def test_no_version_in_the_server_header(client: Any, path: str) -> None:
    resp = await client.get(path)
    assert resp.headers["Server"] == "rero"


async def test_docs_work_offline_without_the_bundles_demo_page(client: Any) -> None:
    init = await (await client.get("/docs/init.js")).text()
    assert "validatorUrl: null" in init
    for name in ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"):
        assert (await client.get(f"/docs/static/{name}")).status == 200
    for name in ("index.html", "swagger-initializer.js", "oauth2-redirect.html", ""):
        assert (await client.get(f"/docs/static/{name}")).status == 404
