"""The application factory: every resource opens and closes in its own cleanup context."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import aiohttp_cors
from aiohttp import hdrs, web

from rero.auth import AuthBackend
from rero.auth.cache import CachedAuth
from rero.auth.fake import FakeAuth
from rero.auth.pesu import PesuAuth
from rero.auth.throttle import Throttle
from rero.board import setup_board
from rero.keys import AUTH, HUB, METRICS, SERVICE, SETTINGS, STORAGE
from rero.logs import setup_logging
from rero.metrics import Metrics
from rero.middlewares import MAX_BODY, error_middleware
from rero.openapi import setup_docs
from rero.realtime import Hub, slot_booking
from rero.settings import Settings, load_settings
from rero.slots import Clock, Schedule, SlotService, utcnow
from rero.storage.sqlite import open_sqlite
from rero.views import setup_routes

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    clock: Clock = utcnow,
    timer: Callable[[], float] = time.monotonic,
) -> web.Application:
    """Build the service; ``clock`` and ``timer`` let tests move time instead of sleeping."""
    app = web.Application(client_max_size=MAX_BODY, middlewares=[error_middleware])
    app[SETTINGS] = settings
    app[HUB] = hub = Hub(settings.ws_send_timeout_seconds)
    app[METRICS] = Metrics(app)
    schedule = Schedule(settings.first_hour, settings.last_hour)

    async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
        if settings.database_url:  # any number of hosts
            from rero.storage.postgres import open_postgres  # the optional extra

            async with open_postgres(settings.database_url, schedule.rows()) as pg:
                app[STORAGE] = pg
                yield
            return
        async with open_sqlite(settings.database_path, schedule.rows()) as storage:
            app[STORAGE] = storage
            yield

    async def auth_ctx(app: web.Application) -> AsyncIterator[None]:
        ttl = settings.cache_duration_minutes * 60
        if settings.auth_backend == "fake":
            app[AUTH] = CachedAuth(FakeAuth(settings.fake_users), ttl, timer)
            yield
            return
        async with aiohttp.ClientSession() as session:
            backend: AuthBackend = PesuAuth(
                session,
                settings.pesu_auth_url,
                settings.pesu_auth_timeout_seconds,
                app[METRICS].upstream.observe,
            )
            app[AUTH] = CachedAuth(backend, ttl, timer)
            yield

    async def service_ctx(app: web.Application) -> AsyncIterator[None]:
        throttle = Throttle(
            app[STORAGE],
            settings.max_failed_logins_per_user,
            settings.max_failed_logins_per_address,
            settings.failed_login_window_minutes * 60,
            lambda: clock().timestamp(),  # wall time: shared by every worker
        )
        service = SlotService(app[STORAGE], app[AUTH], settings, clock, throttle)
        await service.load()
        hub.publish(service.board)
        service.subscribe(hub.publish)
        app[SERVICE] = service
        # Commits by other processes (workers, hosts, operator tools) reach this hub too.
        tasks = [asyncio.create_task(app[STORAGE].watch(service.refresh))]
        if settings.release_after_slot_end:
            tasks.append(asyncio.create_task(expire_bookings(service)))
        yield
        for task in tasks:
            task.cancel()
        _, stuck = await asyncio.wait(tasks, timeout=5)
        if stuck:
            log.warning("background tasks did not stop: %d", len(stuck))

    async def close_websockets(app: web.Application) -> None:
        await hub.close_all()

    app.cleanup_ctx.extend([storage_ctx, auth_ctx, service_ctx])
    app.on_shutdown.append(close_websockets)
    setup_routes(app)
    setup_docs(app)
    setup_board(app)
    setup_response_headers(app, settings.cors_origins)
    # After CORS, which does not cover WebSockets: the handler checks Origin itself.
    app.router.add_get("/slot-booking", slot_booking)
    return app


EXPIRY_INTERVAL = 30.0


async def expire_bookings(service: SlotService) -> None:
    """Release ended bookings now and every ``EXPIRY_INTERVAL`` seconds."""
    while True:
        try:
            await service.expire_due()
        except Exception:  # a storage hiccup must not end the loop
            log.exception("releasing ended bookings failed")
        await asyncio.sleep(EXPIRY_INTERVAL)


def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every response; no caching of anything that may carry a token or a user."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if request.method != "GET" or request.path.startswith("/admin"):
        response.headers["Cache-Control"] = "no-store"
    if request.app[SETTINGS].workers > 1:
        response.headers["X-Rero-Worker"] = str(os.getpid())


def setup_response_headers(app: web.Application, origins: tuple[str, ...]) -> None:
    """Security headers on every response; CORS for every HTTP route, from the configured
    origins, without credentials.

    One response hook does both, and runs aiohttp-cors (which looks up the route's
    configuration per response) only for requests with an Origin header: each hook
    costs ``GET /slots`` throughput (docs/performance.md).
    """
    options = aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
        allow_credentials=False, expose_headers="*", allow_headers="*", allow_methods="*"
    )
    hooks = len(app.on_response_prepare)
    cors = aiohttp_cors.setup(app, defaults=dict.fromkeys(origins, options))
    for route in list(app.router.routes()):
        cors.add(route)
    cors_hooks = app.on_response_prepare[hooks:]
    del app.on_response_prepare[hooks:]

    async def response_headers(request: web.Request, response: web.StreamResponse) -> None:
        security_headers(request, response)
        if hdrs.ORIGIN in request.headers:
            for hook in cors_hooks:
                await hook(request, response)

    app.on_response_prepare.append(response_headers)


async def app_factory() -> web.Application:
    """For gunicorn: ``gunicorn 'rero.app:app_factory' --worker-class aiohttp.GunicornWebWorker``.

    Settings come from ``RERO_CONFIG`` and the environment, as for ``python -m rero``.
    """
    settings = load_settings()
    setup_logging(settings.log_level)
    return create_app(settings)
