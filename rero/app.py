"""The application factory: wiring only. Every resource opens and closes in its own
cleanup context; the rules live in the services."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from rero.access import AccessService
from rero.admin import AdminService
from rero.admin_page import setup_admin_page
from rero.auth import AuthBackend
from rero.auth.cache import CachedAuth
from rero.auth.fake import FakeAuth
from rero.auth.pesu import PesuAuth
from rero.board_page import setup_board_page
from rero.bookings import BookingService
from rero.clock import Clock, utcnow
from rero.commit import GroupCommit
from rero.feed import BoardFeed
from rero.feeds import FeedService
from rero.grants import Signer
from rero.headers import setup_response_headers
from rero.hour import HourService
from rero.hub import Hub
from rero.identity import IdentityService
from rero.keys import (
    ACCESS,
    ADMIN,
    AUTH,
    CALENDAR,
    FEEDS,
    HOUR,
    HUB,
    IDENTITY,
    LABS,
    METRICS,
    SERVICE,
    SETTINGS,
    STAFF,
    STORAGE,
)
from rero.lab_app import setup_labs
from rero.labs import LabService
from rero.logs import setup_logging
from rero.mail_app import setup_mail
from rero.metrics import Metrics
from rero.middlewares import MAX_BODY, error_middleware
from rero.openapi import build_spec
from rero.operator import setup_docs
from rero.outcomes import Outcomes
from rero.realtime import slot_booking
from rero.resources import NextOccurrence, build_lab
from rero.roles import Roles
from rero.routes import ROUTES, setup_routes
from rero.scheduler import run_forever
from rero.settings import Settings, load_settings
from rero.slots import SlotService
from rero.staff import StaffService
from rero.storage.backends import open_storage

log = logging.getLogger(__name__)

#: Seconds background tasks get to stop at shutdown.
STOP_GRACE = 5.0


def create_app(
    settings: Settings,
    *,
    clock: Clock = utcnow,
    timer: Callable[[], float] = time.monotonic,
) -> web.Application:
    """Build the service; ``clock`` and ``timer`` let tests move time instead of sleeping."""
    app = web.Application(client_max_size=MAX_BODY, middlewares=[error_middleware])
    app[SETTINGS] = settings
    if settings.release_after_slot_end is not None:
        log.warning("release_after_slot_end is ignored: a booking always ends with its slot now")
    app[HUB] = hub = Hub(settings.ws_send_timeout_seconds)
    outcomes = Outcomes()
    app[METRICS] = metrics = Metrics(hub, outcomes)

    lab = build_lab(settings)
    signer = Signer.load(settings)  # a bad key file stops the start, with one line

    async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
        upgrade = NextOccurrence(lab.default, clock())
        async with open_storage(settings.database_path, settings.database_url, upgrade) as store:
            app[STORAGE] = store
            yield

    async def auth_ctx(app: web.Application) -> AsyncIterator[None]:
        ttl = settings.cache_duration_minutes * 60
        if settings.auth_backend == "fake":
            app[AUTH] = metrics.auth_cache = CachedAuth(FakeAuth(settings.fake_users), ttl, timer)
            yield
            return
        async with aiohttp.ClientSession() as session:
            backend: AuthBackend = PesuAuth(
                session,
                settings.pesu_auth_url,
                settings.pesu_auth_timeout_seconds,
                metrics.upstream.observe,
            )
            app[AUTH] = metrics.auth_cache = CachedAuth(backend, ttl, timer)
            yield

    async def services_ctx(app: web.Application) -> AsyncIterator[None]:
        store = app[STORAGE]
        identity = IdentityService(app[AUTH], store, store, settings, clock, outcomes)
        identity.roles = Roles(settings, store)
        await identity.roles.load()
        identity.on_revoked(hub.end_sessions)
        await identity.follow_revocations()
        feed = BoardFeed(lab, store, clock, settings.show_booked_by)
        feed.on_rolling(hub.publish)
        feed.on_day(hub.publish_day)
        commit = GroupCommit(store, feed)
        await commit.load()
        calendar = BookingService(lab, identity, commit, feed, store, settings, clock, outcomes)
        service = SlotService(calendar, identity, commit, feed, store, clock, outcomes)
        app[IDENTITY], app[SERVICE], app[CALENDAR] = identity, service, calendar
        app[STAFF] = StaffService(calendar, identity, commit, feed, store, clock)
        app[HOUR] = hour = HourService(calendar, identity, commit, store, settings, clock)
        hour.connected, hour.tell = hub.connected, hub.tell
        app[ADMIN] = AdminService(calendar, hour, identity, store, settings, clock)
        await hour.follow_offers()  # from the newest event on
        app[ACCESS] = AccessService(calendar, identity, commit, signer)
        app[FEEDS] = FeedService(calendar, identity, store, clock, settings.public_url)
        app[LABS] = LabService(lab, commit, feed, store, clock, settings.waitlist_hold_seconds)

        async def other_process_committed() -> None:
            await commit.refresh(list(hub.followers))
            await identity.sync_revocations()
            await identity.roles.load()
            await hour.follow_offers()

        # Commits by other processes (workers, hosts, operator tools) reach this hub too:
        # their boards, the sessions they revoked, the waitlist offers they made.
        tasks = [
            asyncio.create_task(store.watch(other_process_committed)),
            asyncio.create_task(run_forever(calendar, hour, clock)),
        ]
        yield
        for task in tasks:
            task.cancel()
        _, stuck = await asyncio.wait(tasks, timeout=STOP_GRACE)
        if stuck:
            log.warning("background tasks did not stop: %d", len(stuck))

    async def close_websockets(app: web.Application) -> None:
        await hub.close_all()

    app.cleanup_ctx.extend([metrics.publishing, storage_ctx, auth_ctx, services_ctx])
    app.on_shutdown.append(close_websockets)
    setup_routes(app)
    setup_docs(app, json.dumps(build_spec(ROUTES)))
    setup_board_page(app)
    setup_admin_page(app)
    setup_response_headers(app, settings.cors_origins, settings.workers)
    # After CORS, which does not cover WebSockets: the handler checks Origin itself.
    app.router.add_get("/slot-booking", slot_booking)
    setup_labs(app, clock)
    setup_mail(app, lab, clock)
    return app


async def app_factory() -> web.Application:
    """For gunicorn: ``gunicorn 'rero.app:app_factory' --worker-class aiohttp.GunicornWebWorker``.

    Settings come from ``RERO_CONFIG`` and the environment, as for ``python -m rero``.
    """
    settings = load_settings()
    setup_logging(settings.log_level)
    return create_app(settings)
