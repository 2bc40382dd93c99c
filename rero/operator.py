"""Operator endpoints: index, health, stats, metrics and the API docs.

The only HTTP handlers that read the store (health's counts) and the hub's
figures; the booking transports stay on the services.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final

import swagger_ui_bundle
from aiohttp import web

from rero.calendar import utc
from rero.keys import CALENDAR, HUB, MAILER, METRICS, SERVICE, SETTINGS, STORAGE

DOCS_ASSETS: Final = ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js")
METRICS_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

DOCS_PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8"><title>rero API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/static/swagger-ui-standalone-preset.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
"""

DOCS_INIT: Final = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: "StandaloneLayout",
  validatorUrl: null,
});
"""


async def database_counts(app: web.Application) -> dict[str, Any]:
    """Counts read from the database itself: the proof that it answers."""
    now = app[CALENDAR].now()
    resource = app[SERVICE].resource
    # The rolling board's bookings: each slot's next occurrence ends within a day.
    counts = await app[STORAGE].counts(utc(now), resource.id, utc(now + timedelta(days=1)))
    settings = app[SETTINGS]
    total = len(resource.slot_ids)
    return {
        "total_slots": total,
        "booked_slots": counts.ending_soon,
        "available_slots": total - counts.ending_soon,
        "database_path": settings.database_path if not settings.database_url else "",
    }


async def index(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "message": "Slot Booking API is running",
            "websocket_endpoint": "/slot-booking",
            "active_connections": request.app[HUB].connections,
            "booked_slots": (await request.app[SERVICE].board()).booked,
        }
    )


async def health(request: web.Request) -> web.Response:
    app = request.app
    board = await app[SERVICE].board()
    body: dict[str, Any] = {
        "status": "healthy",
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "active_connections": app[HUB].connections,
        "total_slots": len(board.cells),
        "booked_slots_count": len(board.booked),
        "available_slots_count": len(board.available),
    }
    store = {"kind": app[STORAGE].description, "reachable": True}
    body["store"] = store
    body["bus"] = {"kind": app[STORAGE].bus, "reachable": app[STORAGE].listening}
    try:
        body["database"] = await database_counts(app)
        body["mail"] = await app[MAILER].health()
    except Exception as e:  # any failure to read means unhealthy, never a 500
        store["reachable"] = body["bus"]["reachable"] = False
        body.update(status="unhealthy", database={"error": type(e).__name__})
        return web.json_response(body, status=503)
    return web.json_response(body)


async def stats(request: web.Request) -> web.Response:
    app = request.app
    board = await app[SERVICE].board()
    operations: dict[str, dict[str, int]] = {}
    for (action, outcome), count in sorted(app[METRICS].outcomes.items()):
        operations.setdefault(action, {})[outcome] = count
    return web.json_response(
        {
            "database": await database_counts(app),
            "websocket": {"active_connections": app[HUB].connections},
            "slots": {
                "total": len(board.cells),
                "booked": len(board.booked),
                "available": len(board.available),
            },
            "operations": operations,
            "response_times_ms": app[METRICS].percentiles(),
        }
    )


async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].exposition()  # every worker's, with several
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


def setup_docs(app: web.Application, document: str) -> None:
    """``/openapi.json`` (``document``, built once), ``/docs`` and its packaged assets;
    the page asks no outside validator (``validatorUrl: null``), so it works offline."""

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(text=document, content_type="application/json")

    async def docs(request: web.Request) -> web.Response:
        return web.Response(text=DOCS_PAGE, content_type="text/html")

    async def init(request: web.Request) -> web.Response:
        return web.Response(text=DOCS_INIT, content_type="application/javascript")

    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/docs", docs)
    app.router.add_get("/docs/init.js", init)
    # The three files the page uses, not the bundle's folder (its demo page among them).
    folder = Path(swagger_ui_bundle.swagger_ui_path)
    for name in DOCS_ASSETS:

        async def asset(request: web.Request, path: Path = folder / name) -> web.FileResponse:
            return web.FileResponse(path)

        app.router.add_get(f"/docs/static/{name}", asset)
