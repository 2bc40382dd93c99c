"""HTTP transport for calendar feeds: make and revoke one's own feed, admins a
resource's, and serve a feed by its token (the token is the credential: no session)."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from rero.keys import FEEDS, SETTINGS
from rero.request_info import origin, require_bearer

#: Calendar apps poll; five minutes of a private cache spares the database.
CACHE: Final = "private, max-age=300"


def _origin(request: web.Request) -> str:
    return origin(request, request.app[SETTINGS].trusted_proxies)


async def open_mine(request: web.Request) -> web.Response:
    feed = await request.app[FEEDS].open_mine(require_bearer(request), _origin(request))
    return web.json_response({"url": feed.url, "created_at": feed.created_at}, status=201)


async def revoke_mine(request: web.Request) -> web.Response:
    revoked = await request.app[FEEDS].revoke_mine(require_bearer(request))
    return web.json_response({"revoked": revoked})


async def open_for_resource(request: web.Request) -> web.Response:
    feed = await request.app[FEEDS].open_for(
        require_bearer(request), request.match_info["resource"], _origin(request)
    )
    body = {"url": feed.url, "resource": feed.resource, "created_at": feed.created_at}
    return web.json_response(body, status=201)


async def revoke_for_resource(request: web.Request) -> web.Response:
    revoked = await request.app[FEEDS].revoke_for(
        require_bearer(request), request.match_info["resource"]
    )
    return web.json_response({"revoked": revoked})


async def calendar(request: web.Request) -> web.Response:
    ics = await request.app[FEEDS].render(request.match_info["token"], _origin(request))
    return web.Response(
        body=ics,
        content_type="text/calendar",
        charset="utf-8",
        headers={"Cache-Control": CACHE},
    )
