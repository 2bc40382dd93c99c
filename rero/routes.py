"""Every HTTP route in one table: its handler and what the OpenAPI document says of it."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler
from marshmallow import Schema

from rero import access_schemas as acs
from rero import (
    access_views,
    admin_views,
    calendar_views,
    feed_views,
    hour_views,
    lab_views,
    notification_views,
    operator,
    role_views,
    schemas,
    views,
)
from rero import calendar_schemas as cs
from rero import feed_schemas as fs
from rero import hour_schemas as hs
from rero import lab_schemas as ls
from rero import notification_schemas as ns
from rero import role_schemas as rs


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
    #: The media type of an answer that is not JSON (its body a string).
    text: str | None = None


_CREDENTIALED = (400, 401, 408, 413, 422, 429, 503)
_HOUR = (401, 403, 404, 409, 422, 503)

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
    Route("GET", "/admin/audit", admin_views.audit,
          "Staff: the audit trail, newest first, filtered by student, resource, action, dates",
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
    # ---- the hour ----
    Route("POST", "/holds", hour_views.create_hold,
          "Hold a free slot for a while (one hold at a time), then confirm it", hs.HoldMade,
          hs.TargetRequest, (*_HOUR, 400, 408, 413, 429), bearer=True, status=201),
    Route("POST", r"/holds/{hold_id:\d+}/confirm", hour_views.confirm_hold,
          "Make the caller's hold a booking (quotas counted now)", cs.BookingMade,
          errors=_HOUR, bearer=True, status=201),
    Route("DELETE", r"/holds/{hold_id:\d+}", hour_views.drop_hold,
          "Let go of the caller's hold", hs.HoldMade, errors=_HOUR, bearer=True),
    Route("POST", r"/bookings/{booking_id:\d+}/release", hour_views.release,
          "End the caller's booking early: the rest of the slot is freed", cs.BookingMade,
          errors=_HOUR, bearer=True),
    Route("POST", "/waitlist", hour_views.join_waitlist,
          "Wait for a slot somebody keeps: the first in line is offered it as a hold",
          hs.EntryMade, hs.TargetRequest, (*_HOUR, 400, 408, 413, 429), bearer=True,
          status=201),
    Route("GET", "/me/waitlist", hour_views.my_waitlist,
          "The caller's places on waitlists, with positions", hs.Waitlist,
          errors=(401, 503), bearer=True),
    Route("DELETE", r"/waitlist/{entry_id:\d+}", hour_views.leave_waitlist,
          "Leave a waitlist", None, errors=(401, 404, 503), bearer=True, status=204),
    Route("GET", "/me/suspension", hour_views.suspension,
          "Whether the caller (or, for an admin, ?srn=) is suspended for no-shows",
          hs.Suspension, errors=(401, 403, 422, 503), bearer=True, query=hs.SrnQuery),
    Route("DELETE", "/admin/suspensions/{srn}", hour_views.lift_suspension,
          "Admin: lift a student's suspension", hs.Suspension, errors=(401, 403, 404, 422, 503),
          bearer=True),
    # ---- the hour: grants and check-in (docs/lab-integration.md) ----
    Route("GET", "/.well-known/jwks.json", access_views.jwks,
          "The public keys that verify access grants (JWKS)", acs.Jwks),
    Route("POST", r"/bookings/{booking_id:\d+}/access", access_views.access,
          "The owner's signed grant for the booking's lab, during its hour (checks them in)",
          acs.AccessGrant, errors=(401, 404, 409, 503), bearer=True),
    Route("POST", r"/bookings/{booking_id:\d+}/check-in", access_views.check_in,
          "Check in to one's booking (staff: anyone's), during its hour", acs.CheckedIn,
          errors=(401, 404, 409, 503), bearer=True),
    # ---- calendar feeds ----
    Route("POST", "/me/calendar-feed", feed_views.open_mine,
          "A private calendar feed URL of the caller's bookings (revokes the previous one)",
          fs.FeedMade, errors=(401, 503), bearer=True, status=201),
    Route("DELETE", "/me/calendar-feed", feed_views.revoke_mine,
          "Revoke the caller's calendar feed", fs.FeedRevoked, errors=(401, 503), bearer=True),
    Route("GET", "/calendar/{token}.ics", feed_views.calendar,
          "A calendar feed (iCalendar): the URL's token is the credential", errors=(404, 503),
          text="text/calendar"),
    Route("POST", "/admin/calendar-feeds/{resource}", feed_views.open_for_resource,
          "Admin: a calendar feed of every booking of a resource (replacing its previous one)",
          fs.ResourceFeedMade, errors=(401, 403, 404, 503), bearer=True, status=201),
    Route("DELETE", "/admin/calendar-feeds/{resource}", feed_views.revoke_for_resource,
          "Admin: revoke a resource's calendar feed", fs.FeedRevoked,
          errors=(401, 403, 404, 503), bearer=True),
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
    # ---- running the lab ----
    Route("GET", "/admin/audit.csv", admin_views.audit_csv,
          "Staff: the audit trail as CSV, with the same filters (up to 100,000 events)",
          errors=(401, 403, 422), bearer=True, query=schemas.AuditExportQuery, text="text/csv"),
    Route("GET", "/admin/bookings", admin_views.board,
          "Staff: a resource's date with each slot's booking (who, status, check-in) and"
          " waitlist", errors=(401, 403, 404, 422, 503), bearer=True,
          query=schemas.AdminBoardQuery),
    Route("POST", r"/admin/bookings/{booking_id:\d+}/cancel", admin_views.cancel,
          "Staff: cancel anyone's booking with a reason (audited; the student is told)",
          cs.BookingMade, rs.StaffCancelRequest,
          (400, 401, 403, 404, 408, 409, 413, 422, 503), bearer=True),
    Route("GET", "/admin/analytics", admin_views.analytics,
          "Staff: usage over dates (default: the last 30 days): utilization by weekday and"
          " hour, cancellations, no-shows, students, fill times, waitlist conversion",
          errors=(401, 403, 404, 422, 503), bearer=True, query=schemas.AnalyticsQuery),
    Route("GET", "/admin/students/{srn}", admin_views.student,
          "Staff: a student's record: role, bookings, no-shows, suspension, waitlist",
          rs.StudentRecord, errors=(401, 403, 404, 422, 503), bearer=True),
    Route("DELETE", "/admin/students/{srn}/suspension", admin_views.lift_suspension,
          "Admin: lift a student's suspension", hs.Suspension, errors=(401, 403, 404, 422, 503),
          bearer=True),
    Route("PUT", "/admin/roles/{srn}", role_views.set_role,
          "Admin: give a student a role at run time (student, assistant, admin)", rs.RoleOut,
          rs.RoleRequest, (400, 401, 403, 408, 409, 413, 422, 503), bearer=True),
    Route("GET", "/admin/roles", role_views.list_roles,
          "Staff: every student with a role above student, and where it comes from",
          rs.RoleList, errors=(401, 403, 503), bearer=True),
    # ---- email notifications (docs/notifications.md) ----
    Route("GET", "/me/notifications", notification_views.mine,
          "The caller's email notifications: address, whether it is verified, which messages",
          ns.NotificationSettings, errors=(401, 503), bearer=True),
    Route("PUT", "/me/notifications", notification_views.change,
          "Set the caller's address and messages; a new address, or an unverified one with"
          " no code waiting, is mailed a code (one a minute, ten a day)",
          ns.NotificationChanged, ns.NotificationRequest,
          (400, 401, 408, 413, 422, 429, 503), bearer=True),
    Route("POST", "/me/notifications/verify", notification_views.verify,
          "Enter the code mailed to the address (15 minutes, 5 tries); then mail is sent there",
          ns.NotificationSettings, ns.VerifyRequest, (400, 401, 404, 408, 409, 413, 422, 503),
          bearer=True),
    Route("GET", "/notifications/unsubscribe", notification_views.unsubscribe_page,
          "The unsubscribe link of every message: a page with a button (no change yet)",
          errors=(422,), query=ns.UnsubscribeQuery, text="text/html"),
    Route("POST", "/notifications/unsubscribe", notification_views.unsubscribe,
          "Turn every notification off for the link's address (one-click, RFC 8058)",
          errors=(404, 408, 413, 422, 503), query=ns.UnsubscribeQuery, text="text/html"),
)  # fmt: skip


def setup_routes(app: web.Application) -> None:
    """Every HTTP route of the table; CORS is added to these afterwards."""
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
