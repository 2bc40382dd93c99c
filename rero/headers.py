"""Security headers on every response, and CORS for the HTTP routes."""

from __future__ import annotations

import os

import aiohttp_cors
from aiohttp import hdrs, web

from rero.compat import cors_hooks


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

    async def response_headers(request: web.Request, response: web.StreamResponse) -> None:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("X-Frame-Options", "DENY")
        # No caching of anything that may carry a token or a user.
        if request.method != "GET" or request.path.startswith("/admin"):
            headers["Cache-Control"] = "no-store"
        if worker is not None:
            headers["X-Rero-Worker"] = worker
        if hdrs.ORIGIN in request.headers:
            for hook in hooks:
                await hook(request, response)

    app.on_response_prepare.append(response_headers)
