"""The OpenAPI 3 document, generated from the route table and the marshmallow schemas
that validate requests (``rero.operator`` serves it, with Swagger UI)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from rero import __version__, schemas
from rero.routes import Route

_REASONS: Final = {
    400: "Not JSON, or a request the rules refuse (slot taken, not booked, unknown slot)",
    401: "Invalid credentials, or an invalid or expired session",
    403: "Not allowed (someone else's booking, not an admin, another campus's resource)",
    404: "No such resource, booking, series, blackout or calendar feed",
    408: "The body did not arrive within body_timeout_seconds",
    409: "The calendar refuses: taken, closed, or a booking limit reached",
    413: "Body over 64 KiB",
    422: "A field is missing or has the wrong type",
    429: "Too many failed attempts (Retry-After)",
    503: "Authentication service or database unavailable (Retry-After)",
}


#: ``{name}`` or ``{name:pattern}`` in an aiohttp path (a pattern means digits here).
_PATH_PARAMETER: Final = re.compile(r"{(\w+)(?::([^}]+))?}")


def build_spec(routes: Iterable[Route]) -> dict[str, Any]:
    """Every route of ``routes``, its body, its answer and its error statuses."""
    spec = APISpec(
        title="rero",
        version=__version__,
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": "Slot booking for the ReRo lab. WebSocket: see docs/websocket.md."},
    )
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Error", schema=schemas.Error)
    for route in routes:
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
        elif route.text is not None:
            responses[route.status] = {
                "description": "Success",
                "content": {route.text: {"schema": {"type": "string"}}},
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
        parameters: list[dict[str, Any]] = [
            {"in": "path", "name": name, "required": True,
             "schema": {"type": "integer" if pattern else "string"}}
            for name, pattern in _PATH_PARAMETER.findall(route.path)
        ]  # fmt: skip
        if route.query is not None:
            parameters.append({"in": "query", "schema": route.query})
        if parameters:
            operation["parameters"] = parameters
        if route.bearer:
            operation["security"] = [{"bearer": []}, {}]
            operation["description"] = (
                "With `Authorization: Bearer <token>`, username and password may be left out."
            )
        path = _PATH_PARAMETER.sub(r"{\1}", route.path)
        spec.path(path=path, operations={route.method.lower(): operation})
    return spec.to_dict()
