"""Email notifications' wiring: the mailer (SMTP, or the log without ``smtp_host``) and
its loop in their own cleanup context, after the services it reads."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import AsyncIterator
from typing import Final

from aiohttp import web

from rero.clock import Clock
from rero.keys import FEEDS, IDENTITY, LABS, MAILER, METRICS, NOTIFY, SETTINGS, STORAGE
from rero.mail_render import Renderer
from rero.mailer import LogOnly, Mailer, Smtp, Transport
from rero.notifications import NotificationService
from rero.resources import Lab
from rero.setting_checks import SMTP_PASSWORD_ENV
from rero.settings import Settings
from rero.storage.notify_programs import key

log: Final = logging.getLogger(__name__)

#: Seconds the mail loop gets to stop at shutdown.
STOP_GRACE: Final = 5.0


def transport(settings: Settings) -> Transport:
    """SMTP when a host is set (its password read once from the environment, never
    logged), else the log."""
    if not settings.smtp_host:
        return LogOnly()
    password = os.environ.get(SMTP_PASSWORD_ENV, "")  # present: the settings checked it
    return Smtp(
        settings.smtp_host, settings.smtp_port, settings.smtp_starttls,
        settings.smtp_username, password, tls=settings.smtp_tls,
    )  # fmt: skip


def setup_mail(app: web.Application, lab: Lab, clock: Clock) -> None:
    """Add the mailer's cleanup context (after the services': it reads them)."""

    async def mail_ctx(app: web.Application) -> AsyncIterator[None]:
        settings, store = app[SETTINGS], app[STORAGE]
        render = Renderer(lab, settings.public_url, settings.mail_from, app[FEEDS].booking_ics)
        secret = await store.perform(key(secrets.token_hex(32)))
        mailer = app[MAILER] = Mailer(
            store, transport(settings), render, clock, app[METRICS].outcomes, secret,
            skip_locked=store.description == "postgresql",
        )  # fmt: skip
        app[LABS].on_commit(mailer.poke)  # a booking's mail goes now, not at the next poll
        app[NOTIFY] = NotificationService(app[IDENTITY], store, mailer, clock)
        gauge = app[METRICS].mail

        def counted(found: dict[str, int]) -> None:
            for state, n in found.items():
                gauge.labels(state).set(n)

        mailer.on_counts = counted
        task = asyncio.create_task(mailer.run_forever())
        yield
        task.cancel()
        _, stuck = await asyncio.wait([task], timeout=STOP_GRACE)
        if stuck:
            log.warning("the mail loop did not stop")

    app.cleanup_ctx.append(mail_ctx)
