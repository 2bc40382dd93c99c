"""HTTP transport: parse, call the slot service, render. No rules live here."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from aiohttp import web
from marshmallow import Schema, ValidationError

from rero import schemas
from rero.errors import InvalidRequest
from rero.keys import HUB, SERVICE, SETTINGS, STORAGE
from rero.middlewares import RequestInvalid
from rero.slots import Credentials

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


def credentials(data: dict[str, Any]) -> Credentials:
    return Credentials(data["username"], data["password"])


def active_connections(app: web.Application) -> int:
    return len(app[HUB].clients)


async def database_counts(app: web.Application) -> dict[str, Any]:
    """Counts read from the database itself: the proof that it answers."""
    counts = await app[STORAGE].counts()
    return {
        "total_slots": counts.total,
        "booked_slots": counts.booked,
        "available_slots": counts.total - counts.booked,
        "database_path": app[SETTINGS].database_path,
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
    try:
        body["database"] = await database_counts(request.app)
    except Exception as e:  # any failure to read means unhealthy, never a 500
        body.update(status="unhealthy", database={"error": type(e).__name__})
        return web.json_response(body, status=503)
    return web.json_response(body)


async def get_slots(request: web.Request) -> web.Response:
    """Served from the board's cached JSON: no database, no serialization per request."""
    return web.Response(text=request.app[SERVICE].board.json, content_type="application/json")


async def login(request: web.Request) -> web.Response:
    data = await parse(request, schemas.LOGIN)
    user = await request.app[SERVICE].authenticate(credentials(data))
    return web.json_response(
        {"success": True, "message": "Login successful", "user": user.to_dict()}
    )


async def book_slot(request: web.Request) -> web.Response:
    data = await parse(request, schemas.SLOT)
    slot_id = data["slot_id"]
    await request.app[SERVICE].book(credentials(data), slot_id)
    return web.json_response(
        {"success": True, "message": f"Slot {slot_id} booked successfully", "slot_id": slot_id}
    )


async def cancel_slot(request: web.Request) -> web.Response:
    data = await parse(request, schemas.SLOT)
    slot_id = data["slot_id"]
    await request.app[SERVICE].cancel(credentials(data), slot_id)
    return web.json_response(
        {
            "success": True,
            "message": f"Slot {slot_id} booking cancelled successfully",
            "slot_id": slot_id,
        }
    )


async def my_bookings(request: web.Request) -> web.Response:
    data = await parse(request, schemas.LOGIN)
    rows = await request.app[SERVICE].bookings(credentials(data))
    bookings = [
        {"id": s.id, "start_time": s.start_time, "end_time": s.end_time, "booked_at": s.booked_at}
        for s in rows
    ]
    return web.json_response(
        {"success": True, "bookings": bookings, "total_bookings": len(bookings)}
    )


async def stats(request: web.Request) -> web.Response:
    board = request.app[SERVICE].board
    return web.json_response(
        {
            "database": await database_counts(request.app),
            "websocket": {"active_connections": active_connections(request.app)},
            "slots": {
                "total": len(board.slots),
                "booked": len(board.booked),
                "available": len(board.available),
            },
        }
    )


def setup_routes(app: web.Application) -> None:
    """Every route of the service; CORS is added to these HTTP routes afterwards."""
    app.router.add_get("/", index)
    app.router.add_get("/health", health)
    app.router.add_get("/slots", get_slots)
    app.router.add_get("/stats", stats)
    app.router.add_post("/auth/login", login)
    app.router.add_post("/book-slot", book_slot)
    app.router.add_post("/cancel-slot", cancel_slot)
    app.router.add_post("/my-bookings", my_bookings)
