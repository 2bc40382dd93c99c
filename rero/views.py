"""HTTP transport: parse, call the slot service, render. No rules live here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from marshmallow import Schema, ValidationError

from rero import schemas
from rero.errors import InvalidRequest, InvalidSession
from rero.keys import HUB, METRICS, SERVICE, SETTINGS, STORAGE
from rero.metrics import metrics_view
from rero.middlewares import RequestInvalid
from rero.slots import Credentials, Identity, Token

JSON_ERROR = "Request body must be valid JSON"


async def parse(request: web.Request, schema: Schema) -> dict[str, Any]:
    """Decode and validate a JSON body: 400 if it is not JSON, 422 if it breaks the schema."""
    try:
        body = await request.json()
    except ValueError:
        raise InvalidRequest(JSON_ERROR) from None
    try:
        data: dict[str, Any] = schema.load(body)
    except ValidationError as e:
        raise RequestInvalid(e.messages) from None
    return data


def client_address(request: web.Request, trusted: tuple[str, ...]) -> str:
    """The peer, or behind a trusted proxy the nearest untrusted X-Forwarded-For hop."""
    address = request.remote or ""
    if address not in trusted:
        return address
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop
    return address


def bearer(request: web.Request) -> Token | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return Token(value.strip()) if scheme.lower() == "bearer" and value.strip() else None


def credentials(request: web.Request, data: dict[str, Any]) -> Credentials:
    trusted = request.app[SETTINGS].trusted_proxies
    return Credentials(data["username"], data["password"], client_address(request, trusted))


async def identify(
    request: web.Request, with_token: Schema | None, with_password: Schema
) -> tuple[Identity, dict[str, Any]]:
    """A bearer token if one is sent (the body then needs no credentials), else the body's."""
    token = bearer(request)
    if token is not None:
        return token, (await parse(request, with_token) if with_token else {})
    data = await parse(request, with_password)
    return credentials(request, data), data


def active_connections(app: web.Application) -> int:
    return len(app[HUB].clients)


async def database_counts(app: web.Application) -> dict[str, Any]:
    """Counts read from the database itself: the proof that it answers."""
    counts = await app[STORAGE].counts()
    return {
        "total_slots": counts.total,
        "booked_slots": counts.booked,
        "available_slots": counts.total - counts.booked,
        "database_path": app[SETTINGS].database_path if not app[SETTINGS].database_url else "",
    }


async def index(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "message": "Slot Booking API is running",
            "websocket_endpoint": "/slot-booking",
            "active_connections": active_connections(request.app),
            "booked_slots": request.app[SERVICE].board.booked,
        }
    )


async def health(request: web.Request) -> web.Response:
    board = request.app[SERVICE].board
    body: dict[str, Any] = {
        "status": "healthy",
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "active_connections": active_connections(request.app),
        "total_slots": len(board.slots),
        "booked_slots_count": len(board.booked),
        "available_slots_count": len(board.available),
    }
    store = {"kind": request.app[STORAGE].description, "reachable": True}
    body["store"] = store
    body["bus"] = {"kind": request.app[STORAGE].bus, "reachable": request.app[STORAGE].listening}
    try:
        body["database"] = await database_counts(request.app)
    except Exception as e:  # any failure to read means unhealthy, never a 500
        store["reachable"] = body["bus"]["reachable"] = False
        body.update(status="unhealthy", database={"error": type(e).__name__})
        return web.json_response(body, status=503)
    return web.json_response(body)


async def get_slots(request: web.Request) -> web.Response:
    """Served from the board's cached JSON: no database, no serialization per request."""
    return web.Response(text=request.app[SERVICE].board.json, content_type="application/json")


async def login(request: web.Request) -> web.Response:
    data = await parse(request, schemas.LOGIN)
    session = await request.app[SERVICE].login(credentials(request, data))
    return web.json_response(
        {
            "success": True,
            "message": "Login successful",
            "user": session.user.to_dict(),
            "token": session.token,
            "expires_at": session.expires_at,
        }
    )


async def logout(request: web.Request) -> web.Response:
    token = bearer(request)
    if token is None:
        raise InvalidSession()
    await request.app[SERVICE].logout(token)
    return web.Response(status=204)


async def book_slot(request: web.Request) -> web.Response:
    who, data = await identify(request, schemas.SLOT_ONLY, schemas.SLOT)
    slot_id = data["slot_id"]
    await request.app[SERVICE].book(who, slot_id)
    return web.json_response(
        {"success": True, "message": f"Slot {slot_id} booked successfully", "slot_id": slot_id}
    )


async def cancel_slot(request: web.Request) -> web.Response:
    who, data = await identify(request, schemas.SLOT_ONLY, schemas.SLOT)
    slot_id = data["slot_id"]
    await request.app[SERVICE].cancel(who, slot_id)
    return web.json_response(
        {
            "success": True,
            "message": f"Slot {slot_id} booking cancelled successfully",
            "slot_id": slot_id,
        }
    )


async def my_bookings(request: web.Request) -> web.Response:
    who, _ = await identify(request, None, schemas.LOGIN)
    rows = await request.app[SERVICE].bookings(who)
    bookings = [
        {"id": s.id, "start_time": s.start_time, "end_time": s.end_time, "booked_at": s.booked_at}
        for s in rows
    ]
    return web.json_response(
        {"success": True, "bookings": bookings, "total_bookings": len(bookings)}
    )


async def stats(request: web.Request) -> web.Response:
    board = request.app[SERVICE].board
    operations: dict[str, dict[str, int]] = {}
    for (action, outcome), count in sorted(request.app[SERVICE].outcomes.items()):
        operations.setdefault(action, {})[outcome] = count
    return web.json_response(
        {
            "database": await database_counts(request.app),
            "websocket": {"active_connections": active_connections(request.app)},
            "slots": {
                "total": len(board.slots),
                "booked": len(board.booked),
                "available": len(board.available),
            },
            "operations": operations,
            "response_times_ms": request.app[METRICS].percentiles(),
        }
    )


async def admin_reset(request: web.Request) -> web.Response:
    who, _ = await identify(request, schemas.RESET, schemas.LOGIN)
    if not isinstance(who, Token):
        await parse(request, schemas.RESET)
    released = await request.app[SERVICE].reset(who)
    return web.json_response(
        {"success": True, "message": f"Released {released} bookings", "released": released}
    )


async def admin_audit(request: web.Request) -> web.Response:
    token = bearer(request)
    if token is None:
        raise InvalidSession()
    try:
        query = schemas.AUDIT.load(dict(request.query))
    except ValidationError as e:
        raise RequestInvalid(e.messages) from None
    events = await request.app[SERVICE].audit(token, query["limit"], query["before"])
    next_before = events[-1]["id"] if len(events) == query["limit"] else None
    return web.json_response({"events": events, "next_before": next_before})


@dataclass(frozen=True)
class Route:
    """One HTTP route and what the OpenAPI document says of it: one table, no drift."""

    method: str
    path: str
    handler: Handler
    summary: str
    response: type[Schema] | None = None
    request: type[Schema] | None = None
    errors: tuple[int, ...] = ()
    bearer: bool = False
    query: type[Schema] | None = None
    status: int = 200


_CREDENTIALED = (400, 401, 413, 422, 429, 503)

ROUTES: tuple[Route, ...] = (
    Route("GET", "/", index, "Service status", schemas.Index),
    Route("GET", "/health", health, "Health, with counts read from the database",
          schemas.Health, errors=(503,)),
    Route("GET", "/slots", get_slots, "The board", schemas.Board),
    Route("GET", "/stats", stats, "Statistics", schemas.Stats, errors=(503,)),
    Route("POST", "/auth/login", login, "Sign in; returns a session token",
          schemas.LoginResponse, schemas.LoginRequest, _CREDENTIALED),
    Route("POST", "/auth/logout", logout, "Revoke a session token", None, errors=(401,),
          bearer=True, status=204),
    Route("POST", "/book-slot", book_slot, "Book a slot", schemas.SlotResponse,
          schemas.SlotRequest, _CREDENTIALED, bearer=True),
    Route("POST", "/cancel-slot", cancel_slot, "Cancel a booking", schemas.SlotResponse,
          schemas.SlotRequest, (*_CREDENTIALED, 403), bearer=True),
    Route("POST", "/my-bookings", my_bookings, "The caller's bookings", schemas.MyBookings,
          schemas.LoginRequest, _CREDENTIALED, bearer=True),
    Route("POST", "/admin/reset", admin_reset, "Admin: release every booking",
          schemas.ResetResponse, schemas.ResetRequest, (*_CREDENTIALED, 403), bearer=True),
    Route("GET", "/admin/audit", admin_audit, "Admin: the audit trail, newest first",
          schemas.Audit, errors=(401, 403, 422), bearer=True, query=schemas.AuditQuery),
    Route("GET", "/metrics", metrics_view, "Prometheus metrics"),
)  # fmt: skip


def setup_routes(app: web.Application) -> None:
    """Every HTTP route of the service; CORS is added to these afterwards."""
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
