"""Every HTTP route in one table: its handler and what the OpenAPI document says of it."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler
from marshmallow import Schema

from rero import operator, schemas, views


@dataclass(frozen=True)
class Route:
    """One HTTP route and its documentation: one table, no drift."""

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


_CREDENTIALED = (400, 401, 408, 413, 422, 429, 503)

ROUTES: tuple[Route, ...] = (
    Route("GET", "/", operator.index, "Service status", schemas.Index),
    Route("GET", "/health", operator.health, "Health, with counts read from the database",
          schemas.Health, errors=(503,)),
    Route("GET", "/slots", views.get_slots, "The board", schemas.BoardSchema),
    Route("GET", "/stats", operator.stats, "Statistics", schemas.Stats, errors=(503,)),
    Route("POST", "/auth/login", views.login, "Sign in; returns a session token",
          schemas.LoginResponse, schemas.LoginRequest, _CREDENTIALED),
    Route("POST", "/auth/logout", views.logout, "Revoke a session token", None, errors=(401,),
          bearer=True, status=204),
    Route("POST", "/auth/logout-all", views.logout_all,
          "Revoke every session of the caller (a stolen token among them)",
          schemas.LogoutAllResponse, schemas.LoginRequest, _CREDENTIALED, bearer=True),
    Route("POST", "/book-slot", views.book_slot, "Book a slot", schemas.SlotResponse,
          schemas.SlotRequest, _CREDENTIALED, bearer=True),
    Route("POST", "/cancel-slot", views.cancel_slot, "Cancel a booking", schemas.SlotResponse,
          schemas.SlotRequest, (*_CREDENTIALED, 403), bearer=True),
    Route("POST", "/my-bookings", views.my_bookings, "The caller's bookings", schemas.MyBookings,
          schemas.LoginRequest, _CREDENTIALED, bearer=True),
    Route("POST", "/admin/reset", views.admin_reset, "Admin: release every booking",
          schemas.ResetResponse, schemas.ResetRequest, (*_CREDENTIALED, 403), bearer=True),
    Route("GET", "/admin/audit", views.admin_audit, "Admin: the audit trail, newest first",
          schemas.Audit, errors=(401, 403, 422), bearer=True, query=schemas.AuditQuery),
    Route("GET", "/metrics", operator.metrics, "Prometheus metrics"),
)  # fmt: skip


def setup_routes(app: web.Application) -> None:
    """Every HTTP route of the table; CORS is added to these afterwards."""
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
