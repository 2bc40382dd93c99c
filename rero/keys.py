"""Every typed key of the application's state, in one place."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from rero.access import AccessService
from rero.admin import AdminService
from rero.auth.cache import CachedAuth
from rero.bookings import BookingService
from rero.feeds import FeedService
from rero.hour import HourService
from rero.hub import Hub
from rero.identity import IdentityService
from rero.lab_events import LabEvents
from rero.labs import LabService
from rero.mailer import Mailer
from rero.metrics import Metrics
from rero.notifications import NotificationService
from rero.outbox import OutboxSender
from rero.settings import Settings
from rero.slots import SlotService
from rero.staff import StaffService
from rero.storage import Storage

SETTINGS: Final = web.AppKey("settings", Settings)
STORAGE: Final = web.AppKey("storage", Storage)
AUTH: Final = web.AppKey("auth", CachedAuth)
IDENTITY: Final = web.AppKey("identity", IdentityService)
SERVICE: Final = web.AppKey("service", SlotService)
CALENDAR: Final = web.AppKey("calendar", BookingService)
STAFF: Final = web.AppKey("staff", StaffService)
HOUR: Final = web.AppKey("hour", HourService)
HUB: Final = web.AppKey("hub", Hub)
ADMIN: Final = web.AppKey("admin", AdminService)
METRICS: Final = web.AppKey("metrics", Metrics)
ACCESS: Final = web.AppKey("access", AccessService)
FEEDS: Final = web.AppKey("feeds", FeedService)
LABS: Final = web.AppKey("labs", LabService)
LAB_EVENTS: Final = web.AppKey("lab_events", LabEvents)
OUTBOX: Final = web.AppKey("outbox", OutboxSender)
MAILER: Final = web.AppKey("mailer", Mailer)
NOTIFY: Final = web.AppKey("notify", NotificationService)
