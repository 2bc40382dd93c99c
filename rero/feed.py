"""The board feed: every board's bookings as last committed, its rendering, and the
listeners (the hub) that each new board is handed to.

Commits hand their boards over already read in their transaction; a board nobody has
asked for is read once on first use. Time changes boards too (a slot ends, a day opens):
a rendered board knows until when it holds, and :meth:`BoardFeed.tick` renders anew
whatever has expired.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable
from datetime import date, timedelta
from typing import Final, TypeVar

from rero.board import DayBoard, RollingBoard
from rero.clock import Clock
from rero.resources import Lab
from rero.storage import Applied, BlackoutRow, BookingRow, DayKey, SlotStore

log: Final = logging.getLogger(__name__)

#: Boards whose bookings stay in memory (a board is a few hundred bytes).
CAPACITY: Final = 4096

B = TypeVar("B", DayBoard, RollingBoard)
DayListener = Callable[[DayBoard], None]
RollingListener = Callable[[RollingBoard], None]


class BoardFeed:
    """Holds the newest committed boards and hands each new one to the listeners."""

    def __init__(self, lab: Lab, store: SlotStore, clock: Clock, show_booked_by: bool) -> None:
        self.lab = lab
        self._store = store
        self._clock = clock
        self._show = show_booked_by
        self._rows: OrderedDict[DayKey, tuple[BookingRow, ...]] = OrderedDict()
        self._boards: dict[DayKey, DayBoard] = {}
        self._blackouts: dict[str, tuple[BlackoutRow, ...]] = {}
        self._rolling: RollingBoard | None = None
        self._generation = 0
        self._day_listeners: list[DayListener] = []
        self._rolling_listeners: list[RollingListener] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def on_day(self, listener: DayListener) -> None:
        self._day_listeners.append(listener)

    def on_rolling(self, listener: RollingListener) -> None:
        self._rolling_listeners.append(listener)

    async def start(self) -> None:
        """Read the blackouts and the rolling board once at start-up."""
        self._set_blackouts(await self._store.blackouts())
        self._publish_rolling(await self._render_rolling())

    # ---- reading -------------------------------------------------------------------------

    @property
    def current(self) -> RollingBoard | None:
        """The rolling board as last rendered (maybe expired): for fast refusals."""
        return self._rolling

    def cached(self, key: DayKey) -> DayBoard | None:
        return self._boards.get(key)

    async def rolling(self) -> RollingBoard:
        """The rolling board now: rendered anew (and handed on) once time changed it."""
        board = self._rolling
        if board is not None and self._clock().timestamp() < board.valid_until:
            return board
        await self._rolling_changed()
        assert self._rolling is not None
        return self._rolling

    async def day(self, key: DayKey) -> DayBoard:
        """A board now; read from the database on first use."""
        board = self._boards.get(key)
        if board is not None and self._clock().timestamp() < board.valid_until:
            return board
        rows = self._rows.get(key)
        if rows is None:
            rows = await self._load(key)
        fresh = self._render(key, rows)
        if board is not None and board.json != fresh.json:
            self._publish_day(fresh)
        return fresh

    def blackouts(self, resource: str | None = None) -> list[BlackoutRow]:
        if resource is not None:
            return list(self._blackouts.get(resource, ()))
        return sorted((b for bs in self._blackouts.values() for b in bs), key=lambda b: b.start)

    # ---- changes -------------------------------------------------------------------------

    def committed(self, applied: Applied) -> None:
        """Boards a commit changed, read in its transaction: render and hand them on."""
        self._generation += 1
        resources = set()
        for write in applied.writes:
            if write.blackout is not None:
                self._blackout_changed(write.blackout)
                resources.add(write.blackout.resource)
        for key, rows in applied.days.items():
            self._remember(key, rows)
            self._publish_day(self._render(key, rows))
        for key in list(self._boards):
            if key[0] in resources and key not in applied.days:
                self._publish_day(self._render(key, self._rows[key]))
        keys = self._rolling_keys()
        if any(key in applied.days or key[0] in resources for key in keys):
            if all(key in self._rows for key in keys):  # the usual case: render it now
                before = self._rolling
                today, tomorrow = (self._held(key) for key in keys)
                rolling = self._rolling = RollingBoard(self.lab.default, today, tomorrow)
                if before is None or before.json != rolling.json:
                    self._publish_rolling(rolling)
            else:
                self._spawn(self._rolling_changed())

    async def refresh(self, followed: Iterable[DayKey] = ()) -> None:
        """Another process committed: read again the boards someone follows (and the
        rolling board's), hand on what changed, and forget the rest (read on next use)."""
        keep = {*followed, *self._rolling_keys()}
        for _ in range(3):
            generation = self._generation
            blackouts = await self._store.blackouts()
            rows = await self._store.days(sorted(keep))
            if generation == self._generation:  # no commit here meanwhile
                break
        for key in [k for k in self._rows if k not in keep]:
            del self._rows[key]
            self._boards.pop(key, None)
        self._set_blackouts(blackouts)
        for key, fresh in rows.items():
            before = self._boards.get(key)
            self._remember(key, fresh)
            board = self._render(key, fresh)
            if before is None or before.json != board.json:
                self._publish_day(board)
        await self._rolling_changed()

    async def tick(self) -> None:
        """Render anew the boards time has changed (a slot ended, a day opened)."""
        now = self._clock().timestamp()
        for key, board in list(self._boards.items()):
            if board.valid_until <= now:
                fresh = self._render(key, self._rows[key])
                if fresh.json != board.json:
                    self._publish_day(fresh)
        rolling = self._rolling
        if rolling is None or rolling.valid_until <= now:
            await self._rolling_changed()

    def next_change(self) -> float:
        """When (epoch) the earliest held board expires."""
        times = [b.valid_until for b in self._boards.values()]
        if self._rolling is not None:
            times.append(self._rolling.valid_until)
        return min(times, default=float("inf"))

    # ---- internals -----------------------------------------------------------------------

    def _rolling_keys(self) -> tuple[DayKey, DayKey]:
        default = self.lab.default
        today = default.today(self._clock())
        return (default.id, today.isoformat()), (
            default.id,
            (today + timedelta(days=1)).isoformat(),
        )

    def _held(self, key: DayKey) -> DayBoard:
        """The board of ``key`` (its bookings in memory), rendered anew if it expired."""
        board = self._boards.get(key)
        if board is not None and self._clock().timestamp() < board.valid_until:
            return board
        return self._render(key, self._rows[key])

    async def _render_rolling(self) -> RollingBoard:
        today, tomorrow = [await self.day(key) for key in self._rolling_keys()]
        self._rolling = RollingBoard(self.lab.default, today, tomorrow)
        return self._rolling

    async def _rolling_changed(self) -> None:
        before = self._rolling
        board = await self._render_rolling()
        if before is None or before.json != board.json:
            self._publish_rolling(board)

    def _render(self, key: DayKey, rows: tuple[BookingRow, ...]) -> DayBoard:
        resource = self.lab.resources[key[0]]
        board = DayBoard(
            resource,
            date.fromisoformat(key[1]),
            rows,
            self._blackouts.get(key[0], ()),
            self._clock(),
            self._show,
        )
        self._boards[key] = board
        return board

    async def _load(self, key: DayKey) -> tuple[BookingRow, ...]:
        rows = (await self._store.days([key]))[key]
        if key in self._rows:  # a commit brought it while this read ran: newer
            return self._rows[key]
        self._remember(key, rows)
        return rows

    def _remember(self, key: DayKey, rows: tuple[BookingRow, ...]) -> None:
        self._rows[key] = rows
        self._rows.move_to_end(key)
        while len(self._rows) > CAPACITY:
            old, _ = self._rows.popitem(last=False)
            self._boards.pop(old, None)

    def _set_blackouts(self, rows: Iterable[BlackoutRow]) -> None:
        grouped: dict[str, list[BlackoutRow]] = {}
        for row in rows:
            grouped.setdefault(row.resource, []).append(row)
        self._blackouts = {k: tuple(v) for k, v in grouped.items()}

    def _blackout_changed(self, row: BlackoutRow) -> None:
        others = [b for b in self._blackouts.get(row.resource, ()) if b.id != row.id]
        lifted = any(b.id == row.id for b in self._blackouts.get(row.resource, ()))
        if not lifted:
            others.append(row)
        self._blackouts[row.resource] = tuple(sorted(others, key=lambda b: b.start))

    def _publish_day(self, board: DayBoard) -> None:
        _hand_on(self._day_listeners, board)

    def _publish_rolling(self, board: RollingBoard) -> None:
        _hand_on(self._rolling_listeners, board)

    def _spawn(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _hand_on(listeners: list[Callable[[B], None]], board: B) -> None:
    for listener in listeners:
        try:
            listener(board)
        except Exception:  # a broken listener must not undo a committed booking
            log.exception("board listener failed")
