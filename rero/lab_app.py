"""The lab API's wiring: the outbox's sender and the events' follower run in their own
cleanup context with their own HTTP client session; lab sockets close at shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from typing import Final

import aiohttp
from aiohttp import web

from rero import lab_views
from rero.clock import Clock
from rero.keys import LAB_EVENTS, LABS, METRICS, OUTBOX, STORAGE
from rero.lab_events import LabEvents
from rero.outbox import OutboxSender, webhooks

log: Final = logging.getLogger(__name__)

#: Seconds the background tasks, and the lab sockets, get to stop at shutdown.
STOP_GRACE: Final = 5.0


def setup_labs(app: web.Application, clock: Clock) -> None:
    """Add the lab's background tasks and its socket route (after CORS: no browser)."""

    async def outbox_ctx(app: web.Application) -> AsyncIterator[None]:
        store, labs = app[STORAGE], app[LABS]
        hooks = webhooks(labs.configs, os.environ)
        follower = app[LAB_EVENTS] = LabEvents(store)
        async with aiohttp.ClientSession() as session:
            sender = app[OUTBOX] = OutboxSender(
                store, hooks, session, clock, app[METRICS].outcomes,
                skip_locked=store.description == "postgresql",
            )  # fmt: skip
            labs.on_commit(sender.poke)
            labs.on_commit(follower.poke)
            tasks = [
                asyncio.create_task(sender.run_forever()),
                asyncio.create_task(follower.run_forever()),
            ]
            yield
            for task in tasks:
                task.cancel()
            _, stuck = await asyncio.wait(tasks, timeout=STOP_GRACE)
            if stuck:
                log.warning("outbox tasks did not stop: %d", len(stuck))

    async def close_lab_sockets(app: web.Application) -> None:
        if LAB_EVENTS in app:
            await app[LAB_EVENTS].close_all(STOP_GRACE)

    app.cleanup_ctx.append(outbox_ctx)
    app.on_shutdown.append(close_lab_sockets)
    app.router.add_get("/labs/{resource}/events", lab_views.events)
