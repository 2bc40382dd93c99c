"""Every HTTP route in one table: its handler and what the OpenAPI document says of it."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler
from marshmallow import Schema

from rero import calendar_schemas as cs
from rero import calendar_views, lab_views, operator, schemas, views
from rero import lab_schemas as ls


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
    # ---- the calendar ----
    Route("GET", "/resources", calendar_views.resources,
          "The resources, each with its booking window now", cs.Resources),
    Route("GET", "/resources/{resource}/slots", calendar_views.resource_slots,
          "A resource's board for a date (default: today in its zone)", cs.DayBoard,
          errors=(404, 422), query=cs.DateQuery),
    Route("POST", "/bookings", calendar_views.create_booking,
          "Book a resource's slot on a date (admins: for a student, or weekly)", cs.BookingMade,
          cs.BookingRequest, (*_CREDENTIALED, 403, 404, 409), bearer=True, status=201),
    Route("DELETE", r"/bookings/{booking_id:\d+}", calendar_views.cancel_booking,
          "Cancel a booking (its owner, or an admin)", cs.BookingMade,
          errors=(400, 401, 403, 404, 409, 503), bearer=True),
    Route("DELETE", "/bookings/series/{series_id}", calendar_views.cancel_series,
          "Cancel a series from a date on (default: all that has not ended)",
          cs.SeriesCancelled, errors=(401, 404, 422, 503), bearer=True, query=cs.FromQuery),
    Route("GET", "/me/bookings", calendar_views.my_bookings,
          "The caller's bookings on dates from..to (default: upcoming)", cs.BookingList,
          errors=(401, 422, 503), bearer=True, query=cs.RangeQuery),
    Route("POST", "/admin/blackouts", calendar_views.add_blackout,
          "Admin: close a resource for a while, cancelling the bookings inside",
          cs.BlackoutMade, cs.BlackoutRequest, (400, 401, 403, 404, 408, 413, 422, 503),
          bearer=True, status=201),
    Route("GET", "/admin/blackouts", calendar_views.list_blackouts,
          "Admin: the blackouts not lifted", cs.BlackoutList, errors=(401, 403, 404, 422),
          bearer=True, query=cs.BlackoutQuery),
    Route("DELETE", r"/admin/blackouts/{blackout_id:\d+}", calendar_views.lift_blackout,
          "Admin: lift a blackout", cs.BlackoutMade, errors=(401, 403, 404, 503), bearer=True),
    # ---- the lab's own API (a lab key as the bearer; docs/lab-integration.md) ----
    Route("GET", "/labs/{resource}/current", lab_views.current,
          "Lab: the booked session under way (204: none)", ls.LabSession,
          errors=(401, 403, 404, 503), bearer=True),
    Route("POST", "/labs/{resource}/status", lab_views.status,
          "Lab: out of service (a blackout until it reports back) or back", ls.LabStatus,
          ls.LabStatusRequest, (400, 401, 403, 404, 408, 413, 422, 503), bearer=True),
    Route("POST", r"/labs/{resource}/sessions/{booking_id:\d+}/started", lab_views.started,
          "Lab: the student started (checks the booking in)", ls.LabStarted,
          errors=(401, 403, 404, 409, 503), bearer=True),
)  # fmt: skip


def setup_routes(app: web.Application) -> None:
    """Every HTTP route of the table; CORS is added to these afterwards."""
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
