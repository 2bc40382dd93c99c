"""Security headers on every response, and CORS for the HTTP routes."""

from __future__ import annotations

import os
from typing import Final

import aiohttp_cors
from aiohttp import hdrs, web

from rero.compat import cors_hooks

SERVER: Final = "rero"
#: GET routes whose answers are someone's own: never cached.
PRIVATE: Final = ("/admin", "/me/", "/labs/", "/notifications/")


def setup_response_headers(app: web.Application, origins: tuple[str, ...], workers: int) -> None:
    """Security headers on every response; CORS for every route added so far, from the
    configured origins, without credentials.

    One response hook does both, and runs aiohttp-cors (which looks up the route's
    configuration per response) only for requests with an Origin header: each hook
    costs ``GET /slots`` throughput (docs/performance.md).
    """
    options = aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
        allow_credentials=False, expose_headers="*", allow_headers="*", allow_methods="*"
    )
    hooks = cors_hooks(app, dict.fromkeys(origins, options))
    worker = str(os.getpid()) if workers > 1 else None
    varies = bool(origins)

    async def response_headers(request: web.Request, response: web.StreamResponse) -> None:
        headers = response.headers
        headers["Server"] = SERVER  # no versions to look up advisories by
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("X-Frame-Options", "DENY")
        # No caching of anything that may carry a token or a user.
        if request.method != "GET" or request.path.startswith(PRIVATE):
            headers["Cache-Control"] = "no-store"
        if worker is not None:
            headers["X-Rero-Worker"] = worker
        if varies:  # a cache must not hand one origin's CORS answer to another
            headers.add(hdrs.VARY, hdrs.ORIGIN)
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is not None and origin != "null":  # sandboxed and file: pages: never
            for hook in hooks:
                await hook(request, response)

    app.on_response_prepare.append(response_headers)
