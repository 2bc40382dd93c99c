"""Group commit: changes that arrive while a commit is in flight share the next one.

In a rush, N bookings cost one transaction and one fsync rather than N, and each is
still answered only after its own commit. One lock orders commits and publishing, so
boards go out in commit order, and every commit publishes before it answers: a client
never sees a state the database does not hold.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Final

from rero.feed import BoardFeed
from rero.storage import Applied, Change, DayKey, SlotStore, Write

log: Final = logging.getLogger(__name__)

#: Refuses a change from the committed boards, without asking the database.
Skip = Callable[[], bool]


class GroupCommit:
    """The only writer of slots: queues changes, commits them in groups, publishes."""

    def __init__(self, store: SlotStore, feed: BoardFeed) -> None:
        self._store = store
        self._feed = feed
        self._lock = asyncio.Lock()
        self._queue: list[tuple[Change, Skip | None, asyncio.Future[Write | None]]] = []
        self._committing: set[asyncio.Task[None]] = set()
        #: Told of every committed write that changed a waitlist (after its boards).
        self.waitlist_listeners: list[Callable[[Write], None]] = []

    async def load(self) -> None:
        """Read the boards once at start-up."""
        async with self._lock:
            await self._feed.start()

    async def write(self, change: Change, skip: Skip | None = None) -> Write | None:
        """Queue ``change`` for the next commit; its :class:`Write`, or None if ``skip``
        refused it from the committed board (read under the lock, so exact within this
        process; the store still decides between processes)."""
        done: asyncio.Future[Write | None] = asyncio.get_running_loop().create_future()
        self._queue.append((change, skip, done))
        if len(self._queue) == 1:  # the first since the last group was taken
            task = asyncio.create_task(self._commit_queued())
            self._committing.add(task)
            task.add_done_callback(self._committing.discard)
        return await done

    async def refresh(self, followed: Iterable[DayKey] = ()) -> None:
        """Another process committed: re-read the boards, publish those that changed."""
        async with self._lock:
            await self._feed.refresh(followed)

    async def tick(self) -> None:
        """Time moved: publish the boards it changed, in order with commits."""
        async with self._lock:
            await self._feed.tick()

    async def _commit_queued(self) -> None:
        """Commit every queued change in one storage call, then publish and answer."""
        try:
            await self._lock.acquire()
        except asyncio.CancelledError:  # cancelled before taking its group: no task else would
            queued, self._queue = self._queue, []
            for _, _, done in queued:
                done.cancel()
            raise
        try:
            queued, self._queue = self._queue, []
            todo: list[tuple[Change, asyncio.Future[Write | None]]] = []
            for change, skip, done in queued:
                if skip is not None and skip():
                    _settle(done, None)
                else:
                    todo.append((change, done))
            if todo:
                await self._commit(todo)
        finally:
            self._lock.release()

    async def _commit(self, todo: list[tuple[Change, asyncio.Future[Write | None]]]) -> None:
        try:
            applied: Applied = await self._store.apply([change for change, _ in todo])
        except Exception as e:
            for _, done in todo:
                if not done.done():
                    done.set_exception(e)
            return
        except BaseException:
            for _, done in todo:
                done.cancel()
            raise
        if any(w.changed or w.bookings for w in applied.writes):
            self._feed.committed(applied)
        for write in applied.writes:
            if write.waitlisted:
                for listener in self.waitlist_listeners:
                    listener(write)
        for (_, done), write in zip(todo, applied.writes, strict=True):
            _settle(done, write)


def _settle(done: asyncio.Future[Write | None], write: Write | None) -> None:
    if not done.done():  # its requester may have gone away; the change stands
        done.set_result(write)
