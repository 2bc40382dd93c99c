"""The OpenAPI 3 document, generated from the route table and the marshmallow schemas
that validate requests, and Swagger UI served from the packaged assets (no CDN)."""

from __future__ import annotations

import json
from typing import Any, Final

import swagger_ui_bundle
from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from rero import __version__, schemas
from rero.views import ROUTES

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
});
"""

_REASONS: Final = {
    400: "Not JSON, or a request the rules refuse (slot taken, not booked, unknown slot)",
    401: "Invalid credentials, or an invalid or expired session",
    403: "Not allowed (someone else's booking, not an admin)",
    413: "Body over 64 KiB",
    422: "A field is missing or has the wrong type",
    429: "Too many failed attempts (Retry-After)",
    503: "Authentication service or database unavailable (Retry-After)",
}


def build_spec() -> dict[str, Any]:
    """Every route in ``ROUTES``, its body, its answer and its error statuses."""
    spec = APISpec(
        title="rero",
        version=__version__,
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": "Slot booking for the ReRo lab. WebSocket: see docs/websocket.md."},
    )
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Error", schema=schemas.Error)
    for route in ROUTES:
        responses: dict[Any, Any] = {}
        if route.response is not None:
            responses[route.status] = {
                "description": "Success",
                "content": {"application/json": {"schema": route.response}},
            }
        elif route.path == "/metrics":
            responses[200] = {
                "description": "Prometheus text format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        else:
            responses[route.status] = {"description": "Done"}
        for status in route.errors:
            responses[status] = {
                "description": _REASONS[status],
                "content": {"application/json": {"schema": "Error"}},
            }
        operation: dict[str, Any] = {"summary": route.summary, "responses": responses}
        if route.request is not None:
            operation["requestBody"] = {
                "required": not route.bearer,
                "content": {"application/json": {"schema": route.request}},
            }
        if route.query is not None:
            operation["parameters"] = [{"in": "query", "schema": route.query}]
        if route.bearer:
            operation["security"] = [{"bearer": []}, {}]
            operation["description"] = (
                "With `Authorization: Bearer <token>`, username and password may be left out."
            )
        spec.path(path=route.path, operations={route.method.lower(): operation})
    return spec.to_dict()


def setup_docs(app: web.Application) -> None:
    """``/openapi.json`` (built once), ``/docs`` and its packaged assets."""
    document = json.dumps(build_spec())

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(text=document, content_type="application/json")

    async def docs(request: web.Request) -> web.Response:
        return web.Response(text=DOCS_PAGE, content_type="text/html")

    async def init(request: web.Request) -> web.Response:
        return web.Response(text=DOCS_INIT, content_type="application/javascript")

    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/docs", docs)
    app.router.add_get("/docs/init.js", init)
    app.router.add_static("/docs/static", swagger_ui_bundle.swagger_ui_path)
