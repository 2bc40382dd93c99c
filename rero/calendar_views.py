"""HTTP transport for the calendar: resources, their boards by date, bookings, series and
blackouts. Parse, call the services, render; no rules live here."""

from __future__ import annotations

from datetime import date
from typing import Any

from aiohttp import web

from rero import calendar_schemas as schemas
from rero.keys import CALENDAR, STAFF
from rero.request_info import identify, number, query, require_bearer


async def resources(request: web.Request) -> web.Response:
    return web.json_response({"resources": request.app[CALENDAR].resources()})


async def resource_slots(request: web.Request) -> web.Response:
    """Served from the board's cached JSON, like ``GET /slots``; a plain ``?date=`` is
    read without the schema (the hot path), anything else goes through it."""
    raw = request.query.get("date")
    day = _plain_date(raw) if raw is not None and len(request.query) == 1 else None
    if day is None and request.query:
        day = query(request, schemas.DATE)["date"]
    board = await request.app[CALENDAR].board(request.match_info["resource"], day)
    return web.Response(body=board.body, content_type="application/json", charset="utf-8")


def _plain_date(text: str) -> date | None:
    """``YYYY-MM-DD`` within the calendar's years, or None (the schema then says why)."""
    if len(text) != 10 or text[4] != "-" or text[7] != "-" or not text[5:7].isdigit():
        return None  # (3.11 would also read "2026-W48-3", which the schema refuses)
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return None
    return day if 2000 <= day.year <= 2999 else None


async def create_booking(request: web.Request) -> web.Response:
    who, data = await identify(request, schemas.BOOKING_ONLY, schemas.BOOKING)
    calendar = request.app[CALENDAR]
    where = (data["resource"], data["date"], data["slot_id"])
    weeks = data.get("repeat_weeks")
    if weeks is None:
        made = await calendar.book(who, *where, srn=data.get("srn"))
        return web.json_response({"success": True, "booking": calendar.as_json(made)}, status=201)
    series = await request.app[STAFF].book_series(who, *where, weeks, srn=data.get("srn"))
    refused = [{"date": d.isoformat(), "reason": why} for d, why in series.refused]
    if not series.bookings:
        nothing = {"detail": "No date of the series could be booked", "refused": refused}
        return web.json_response(nothing, status=409)
    body: dict[str, Any] = {
        "success": True,
        "series_id": series.series_id,
        "bookings": [calendar.as_json(b) for b in series.bookings],
        "refused": refused,
    }
    return web.json_response(body, status=201)


async def cancel_booking(request: web.Request) -> web.Response:
    calendar = request.app[CALENDAR]
    gone = await calendar.cancel(require_bearer(request), number(request, "booking_id"))
    return web.json_response({"success": True, "booking": calendar.as_json(gone)})


async def my_bookings(request: web.Request) -> web.Response:
    span = query(request, schemas.RANGE)
    calendar = request.app[CALENDAR]
    rows = await calendar.mine(require_bearer(request), span["first"], span["last"])
    return web.json_response({"bookings": [calendar.as_json(b) for b in rows]})


async def cancel_series(request: web.Request) -> web.Response:
    first = query(request, schemas.FROM)["first"]
    gone = await request.app[STAFF].cancel_series(
        require_bearer(request), request.match_info["series_id"], first
    )
    calendar = request.app[CALENDAR]
    return web.json_response({"success": True, "cancelled": [calendar.as_json(b) for b in gone]})


async def add_blackout(request: web.Request) -> web.Response:
    token = require_bearer(request)
    _, data = await identify(request, schemas.BLACKOUT, schemas.BLACKOUT)
    staff, calendar = request.app[STAFF], request.app[CALENDAR]
    blackout, cancelled = await staff.add_blackout(
        token, data["resource"], data["start"], data["end"], data["reason"]
    )
    body = {"blackout": calendar.blackout_json(blackout), "cancelled": [b.id for b in cancelled]}
    return web.json_response(body, status=201)


async def list_blackouts(request: web.Request) -> web.Response:
    span = query(request, schemas.BLACKOUTS)
    rows = await request.app[STAFF].blackouts(
        require_bearer(request), span["resource"], span["first"], span["last"]
    )
    calendar = request.app[CALENDAR]
    return web.json_response({"blackouts": [calendar.blackout_json(b) for b in rows]})


async def lift_blackout(request: web.Request) -> web.Response:
    token = require_bearer(request)
    lifted = await request.app[STAFF].lift_blackout(token, number(request, "blackout_id"))
    return web.json_response({"blackout": request.app[CALENDAR].blackout_json(lifted)})
