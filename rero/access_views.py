"""HTTP transport for the hour: the public keys labs verify grants with, a student's grant
for their booking's lab, and checking in. Parse, call the access service, render."""

from __future__ import annotations

from aiohttp import web

from rero.keys import ACCESS, CALENDAR
from rero.request_info import number, require_bearer

#: Labs may keep the key set this long; a new key is published before it signs (rotation).
JWKS_CACHE = "public, max-age=300"


async def jwks(request: web.Request) -> web.Response:
    return web.json_response(request.app[ACCESS].jwks(), headers={"Cache-Control": JWKS_CACHE})


async def access(request: web.Request) -> web.Response:
    granted = await request.app[ACCESS].access(
        require_bearer(request), number(request, "booking_id")
    )
    body = {
        "grant": granted.grant,
        "launch_url": granted.launch_url,
        "expires_at": granted.expires_at,
    }
    return web.json_response(body)


async def check_in(request: web.Request) -> web.Response:
    row = await request.app[ACCESS].check_in(require_bearer(request), number(request, "booking_id"))
    return web.json_response({"booking": request.app[CALENDAR].as_json(row)})
