"""The one scheduler: the time-driven work of every service, in one loop. Boards the
clock changes are published as it changes them; no-shows, lapsed holds and the lab's
session events are swept every second; ended bookings are marked now and then. Each step
is idempotent, so several workers or hosts running it is harmless."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from rero.bookings import BookingService
from rero.clock import Clock
from rero.hour import HourService

log: Final = logging.getLogger(__name__)

#: The longest wait between two looks at the clock for boards it changed.
TICK_CEILING: Final = 30.0
#: How often what time decides (no-shows, lapsed holds) is swept.
SWEEP_INTERVAL: Final = 1.0


async def run_forever(bookings: BookingService, hour: HourService, clock: Clock) -> None:
    """Until cancelled; a storage hiccup costs one round, not the loop."""
    loop = asyncio.get_running_loop()
    last_complete, last_sweep = -TICK_CEILING, loop.time()
    while True:
        try:
            await bookings.tick()
            if loop.time() - last_sweep >= SWEEP_INTERVAL:
                last_sweep = loop.time()
                await hour.sweep()
            if loop.time() - last_complete >= TICK_CEILING:
                last_complete = loop.time()
                await bookings.complete()
        except Exception:
            log.exception("the scheduler's round failed")
        wait = bookings.next_change() - clock().timestamp()
        await asyncio.sleep(min(max(wait, 0.05), SWEEP_INTERVAL))
