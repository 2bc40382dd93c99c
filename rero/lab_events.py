"""The lab's live events: one follower per process reads new outbox rows by id and hands
each to the sockets of its resource, so events written by any worker or host arrive.

Row ids are the order: on SQLite commits take them in order; on PostgreSQL a transaction
may commit after a later id did, so at a gap the follower waits (``grace``) for the
missing row before it moves past. Each socket has a bounded queue: a lab too far behind
is cut off and reconnects with ``?after=<the last event id it got>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Final

from rero.errors import ReroError
from rero.storage import Programs
from rero.storage.outbox_programs import after, event_row, newest

log: Final = logging.getLogger(__name__)

#: Why a subscription ended.
BEHIND: Final = "behind"
SHUTDOWN: Final = "shutdown"


class EventGone(ReroError):
    """``?after=`` names an event this resource does not keep (purged, or never sent)."""

    status = 410


class Subscription:
    """One socket's events: those of ``resource`` with row ids above ``start``, queued up
    to ``limit``; catching up first on those after ``after_row`` up to ``start``."""

    def __init__(self, resource: str, start: int, after_row: int | None, limit: int) -> None:
        self.resource = resource
        self.start = start
        self.after_row = after_row
        self.limit = limit
        self.pending: deque[str] = deque()
        self.ended: str | None = None
        self._ready = asyncio.Event()

    def offer(self, payload: str) -> None:
        if self.ended is not None:
            return
        if len(self.pending) >= self.limit:
            self.end(BEHIND)
            return
        self.pending.append(payload)
        self._ready.set()

    def end(self, why: str) -> None:
        if self.ended is None:
            self.ended = why
            self.pending.clear()
        self._ready.set()

    async def next(self) -> str | None:
        """The next event's payload; None once the subscription ended (see ``ended``)."""
        while not self.pending:
            if self.ended is not None:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self.pending.popleft()


class LabEvents:
    """Follows the outbox while any lab listens; fans each event out by resource."""

    def __init__(
        self,
        store: Programs,
        *,
        poll: float = 0.25,
        limit: int = 1000,
        page: int = 500,
        grace: float = 2.0,
        timer: Callable[[], float] | None = None,
    ) -> None:
        self._store = store
        self.poll = poll
        self.limit = limit
        self.page = page
        self.grace = grace
        self._timer = timer
        self.subscriptions: set[Subscription] = set()
        self._floor: int | None = None  # the last row handed on (None: nobody listens)
        self._gap_since: float | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()

    def poke(self) -> None:
        """Something committed here: read the outbox now rather than at the next poll."""
        self._wake.set()

    def _now(self) -> float:
        return self._timer() if self._timer else asyncio.get_running_loop().time()

    async def subscribe(self, resource: str, after_event: str | None) -> Subscription:
        """Listen from now on; with ``after_event``, catch up on what followed it first."""
        async with self._lock:
            after_row = None
            if after_event is not None:
                after_row = await self._store.perform(event_row(after_event, resource))
                if after_row is None:
                    raise EventGone(
                        f"Event {after_event} of {resource} is not kept: connect without"
                        f" after and read GET /labs/{resource}/current"
                    )
            if self._floor is None:
                self._floor = await self._store.perform(newest())
                self._gap_since = None
            sub = Subscription(resource, self._floor, after_row, self.limit)
            self.subscriptions.add(sub)
            self._empty.clear()
        return sub

    async def backlog(self, sub: Subscription) -> AsyncIterator[list[str]]:
        """The events a reconnecting lab missed, page by page, up to where live ones start."""
        floor = sub.after_row
        while floor is not None:
            rows = await self._store.perform(after(floor, self.page, sub.resource, sub.start))
            if rows:
                yield [payload for _, _, payload in rows]
            floor = rows[-1][0] if len(rows) == self.page else None

    def leave(self, sub: Subscription) -> None:
        sub.end(SHUTDOWN)
        self.subscriptions.discard(sub)
        if not self.subscriptions:
            self._empty.set()

    async def close_all(self, timeout: float) -> None:
        """Shutdown: end every subscription and wait (bounded) for their sockets to go."""
        for sub in list(self.subscriptions):
            sub.end(SHUTDOWN)
        try:
            await asyncio.wait_for(self._empty.wait(), timeout)
        except asyncio.TimeoutError:
            log.warning("lab sockets did not close in time: %d", len(self.subscriptions))

    async def poll_once(self) -> int:
        """Hand on the rows committed since the last look; how many were passed."""
        async with self._lock:
            if not self.subscriptions:
                self._floor = None  # nobody listens: start afresh with the next one
                return 0
            assert self._floor is not None
            rows = await self._store.perform(after(self._floor, self.page))
            passed = 0
            for row_id, resource, payload in rows:
                if row_id > self._floor + 1 and not self._gap_passed():
                    break  # a row below may still commit: wait for it a little
                self._gap_since = None
                self._floor = row_id
                passed += 1
                for sub in self.subscriptions:
                    if sub.resource == resource and row_id > sub.start:
                        sub.offer(payload)
            for sub in [s for s in self.subscriptions if s.ended == BEHIND]:
                log.warning("lab socket too far behind: cut off", extra={"resource": sub.resource})
                self.subscriptions.discard(sub)
            if not self.subscriptions:
                self._empty.set()
            return passed

    def _gap_passed(self) -> bool:
        now = self._now()
        if self._gap_since is None:
            self._gap_since = now
        return now - self._gap_since >= self.grace

    async def run_forever(self) -> None:
        while True:
            self._wake.clear()
            read = 0
            try:
                read = await self.poll_once()
            except Exception:  # a storage hiccup must not end the follower
                log.exception("following the outbox failed")
            if read < self.page:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll)
