"""The slot service: every booking rule, the in-memory board, and publishing.

HTTP views and WebSocket handlers call this and nothing below it. A change is
published here, after its commit, so it reaches every client whichever
transport made it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from functools import cache, cached_property
from typing import Any, Final
from zoneinfo import ZoneInfo

from rero.auth import AuthBackend, User
from rero.auth.throttle import Throttle
from rero.errors import (
    AdminRequired,
    InvalidCredentials,
    InvalidRequest,
    InvalidSession,
    NotYourBooking,
    QuotaReached,
    ReroError,
    SlotNotBooked,
    SlotUnavailable,
)
from rero.settings import Settings
from rero.storage import Book, Cancel, Change, Release, SlotRow, Storage, Write

log: Final = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Listener = Callable[["Board"], None]
#: Refuses a change from the committed board, without asking the database.
Refusal = Callable[["Board"], bool]


@cache
def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def utcnow() -> datetime:
    """The default clock."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Schedule:
    """One-hour slots from ``first_hour`` to ``last_hour``; a slot's id is its start hour."""

    first_hour: int = 3
    last_hour: int = 15

    def rows(self) -> list[tuple[int, str, str]]:
        """``(id, start_time, end_time)`` for every slot, times as HH:MM."""
        return [(h, f"{h:02d}:00", f"{h + 1:02d}:00") for h in self.ids]

    @property
    def ids(self) -> range:
        return range(self.first_hour, self.last_hour)

    def check(self, slot_id: int) -> None:
        """Refuse an id outside the schedule, naming the valid range."""
        if slot_id not in self.ids:
            raise InvalidRequest(
                f"Slot {slot_id} does not exist: valid slots are "
                f"{self.first_hour} to {self.last_hour - 1}"
            )


@dataclass(frozen=True)
class Credentials:
    """A username and password as a client sent them; never stored or logged."""

    username: str
    password: str = ""
    address: str = ""

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=***)"


@dataclass(frozen=True)
class Token:
    """A session token from ``Authorization: Bearer`` or a WebSocket message."""

    value: str

    def __repr__(self) -> str:
        return "Token(***)"

    @property
    def digest(self) -> str:
        """What the database holds instead of the token."""
        return hashlib.sha256(self.value.encode()).hexdigest()


#: Who a request says it is: credentials, a session token, or an already-known user.
Identity = Credentials | Token | User


@dataclass(frozen=True)
class Session:
    user: User
    token: str
    expires_at: str


class Board:
    """An immutable snapshot of every slot; built once per commit, serialized once."""

    def __init__(self, slots: tuple[SlotRow, ...], show_booked_by: bool = True) -> None:
        self.slots = slots
        self._show_booked_by = show_booked_by
        self.by_id = {s.id: s for s in slots}
        self.booked = [s.id for s in slots if s.is_booked]
        self.available = [s.id for s in slots if not s.is_booked]

    @cached_property
    def data(self) -> dict[str, Any]:
        """The body of ``GET /slots`` and the ``data`` of a ``slots_update``."""
        return {
            "slots": [
                {
                    "id": s.id,
                    "start_time": s.start_time,
                    "end_time": s.end_time,
                    "is_booked": s.is_booked,
                    "booked_by": s.booked_by if self._show_booked_by else None,
                    "booked_at": s.booked_at,
                }
                for s in self.slots
            ],
            "available_slots": self.available,
            "booked_slots": self.booked,
        }

    @cached_property
    def json(self) -> str:
        return json.dumps(self.data, separators=(",", ":"))

    def held_by(self, srn: str) -> list[SlotRow]:
        return [s for s in self.slots if s.is_booked and s.booked_by == srn]


def release_time(slot: SlotRow, tz: ZoneInfo) -> datetime | None:
    """When a booking ends: the slot's first end time after it was made, in ``tz``.

    Without dates in the protocol a booking means the slot's next occurrence; one
    made during the slot keeps the rest of it.
    """
    if not slot.is_booked or not slot.booked_at:
        return None
    try:
        booked = datetime.fromisoformat(slot.booked_at)
    except ValueError:
        return None
    if booked.tzinfo is None:
        booked = booked.replace(tzinfo=timezone.utc)
    local = booked.astimezone(tz)
    hours, minutes = (int(part) for part in slot.end_time.split(":"))
    midnight = datetime.combine(local.date(), time(0), tz)
    end = midnight + timedelta(hours=hours, minutes=minutes)
    return end if end > local else end + timedelta(days=1)


class SlotService:
    """Owns the rules of booking; the only writer of slots and the only publisher."""

    def __init__(
        self,
        storage: Storage,
        auth: AuthBackend,
        settings: Settings,
        clock: Clock,
        throttle: Throttle,
    ) -> None:
        self._storage = storage
        self._auth = auth
        self._settings = settings
        self.schedule = Schedule(settings.first_hour, settings.last_hour)
        self._admins = frozenset(settings.admins)
        self._tz = ZoneInfo(settings.timezone)
        self._clock = clock
        self._throttle = throttle
        self._lock = asyncio.Lock()
        self._queue: list[tuple[Change, Refusal | None, asyncio.Future[Write | None]]] = []
        self._committing: set[asyncio.Task[None]] = set()
        self._listeners: list[Listener] = []
        self._board = Board(())
        #: (action, outcome) -> count, for /stats and /metrics.
        self.outcomes: Counter[tuple[str, str]] = Counter()

    @contextmanager
    def _counted(self, action: str) -> Iterator[None]:
        """Count one operation's outcome: ``success`` or the domain error's name."""
        try:
            yield
        except ReroError as e:
            self.outcomes[action, _snake(type(e).__name__)] += 1
            raise
        self.outcomes[action, "success"] += 1

    @property
    def board(self) -> Board:
        """The newest committed board; reading it never touches the database."""
        return self._board

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(board)`` after every committed change; it must not block."""
        self._listeners.append(listener)

    async def load(self) -> None:
        """Read the board once at start-up."""
        self._board = Board(await self._storage.slots(), self._settings.show_booked_by)

    def _now(self) -> str:
        return self._clock().isoformat(timespec="seconds")

    # ---- who is asking --------------------------------------------------------------------

    async def authenticate(self, identity: Identity) -> User:
        """A user from credentials (throttled), a live session token, or as given."""
        if isinstance(identity, User):
            return identity
        if isinstance(identity, Token):
            srn = await self._storage.session(identity.digest, self._now())
            if srn is None:
                raise InvalidSession()
            return User(name="", srn=srn)
        with self._counted("login"):
            return await self._check_password(identity)

    async def _check_password(self, identity: Credentials) -> User:
        await self._throttle.check(identity.username, identity.address)
        try:
            user = await self._auth.authenticate(identity.username, identity.password)
        except InvalidCredentials:
            await self._throttle.failed(identity.username, identity.address)
            log.warning(
                "login failed",
                extra={"username": identity.username, "address": identity.address},
            )
            raise
        await self._throttle.succeeded(identity.username)
        return user

    async def login(self, credentials: Credentials) -> Session:
        """Check credentials and open a session: only the token's hash is stored."""
        user = await self.authenticate(credentials)
        token = Token(secrets.token_urlsafe(32))
        now = self._clock()
        expires = now + timedelta(minutes=self._settings.session_minutes)
        expires_at = expires.isoformat(timespec="seconds")
        await self._storage.create_session(
            token.digest, user.srn, expires_at, now.isoformat(timespec="seconds")
        )
        return Session(user, token.value, expires_at)

    async def logout(self, token: Token) -> None:
        if not await self._storage.delete_session(token.digest):
            raise InvalidSession()

    async def require_admin(self, identity: Identity) -> User:
        user = await self.authenticate(identity)
        if user.srn not in self._admins:
            raise AdminRequired()
        return user

    # ---- bookings -------------------------------------------------------------------------

    async def book(self, identity: Identity, slot_id: int) -> User:
        """Book ``slot_id``: checked before auth, decided by one conditional write."""
        with self._counted("book"):
            return await self._book(identity, slot_id)

    async def _book(self, identity: Identity, slot_id: int) -> User:
        self.schedule.check(slot_id)
        user = await self.authenticate(identity)
        limit = self._settings.max_bookings_per_user
        write = await self._write(
            Book(slot_id, user.srn, self._now(), limit),
            # In a rush the losers are refused from the committed board under the
            # lock, without queueing for the database; the store decides the winner.
            skip=lambda board: slot_id in board.by_id and board.by_id[slot_id].is_booked,
        )
        if write is not None and not write.changed:
            # Free, yet refused: the quota's condition in the same UPDATE said no.
            slot = next((s for s in write.slots if s.id == slot_id), None)
            if limit and slot is not None and not slot.is_booked:
                raise QuotaReached(f"Booking limit reached: at most {limit} slots per user")
        if write is None or not write.changed:
            raise SlotUnavailable(f"Slot {slot_id} is not available")
        log.info("slot booked", extra={"slot_id": slot_id, "srn": user.srn})
        return user

    async def cancel(self, identity: Identity, slot_id: int) -> User:
        """Cancel a booking: one's own, or anyone's for an admin."""
        with self._counted("cancel"):
            return await self._cancel(identity, slot_id)

    async def _cancel(self, identity: Identity, slot_id: int) -> User:
        if slot_id not in self._board.by_id:
            self.schedule.check(slot_id)
        user = await self.authenticate(identity)
        admin = user.srn in self._admins
        holder = self._board.by_id[slot_id].booked_by if slot_id in self._board.by_id else None
        action = "admin_cancelled" if admin and holder != user.srn else "cancelled"
        write = await self._write(
            Cancel(slot_id, None if admin else user.srn, user.srn, action, self._now())
        )
        assert write is not None
        if not write.changed:
            slot = next((s for s in write.slots if s.id == slot_id), None)
            if slot is None or not slot.is_booked:
                raise SlotNotBooked(f"Slot {slot_id} is not booked")
            raise NotYourBooking("You can only cancel your own bookings")
        log.info("slot cancelled", extra={"slot_id": slot_id, "srn": user.srn, "action": action})
        return user

    async def bookings(self, identity: Identity) -> list[SlotRow]:
        """The caller's bookings, from the board (whatever ``show_booked_by`` says)."""
        user = await self.authenticate(identity)
        return self._board.held_by(user.srn)

    async def reset(self, identity: Identity) -> int:
        """Admin: release every booking; returns how many were released."""
        admin = await self.require_admin(identity)
        before = len(self._board.booked)
        ids = tuple(s.id for s in self._board.slots)
        await self._write(Release(ids, admin.srn, "reset", self._now()))
        return before

    async def audit(
        self, identity: Identity, limit: int, before: int | None
    ) -> list[dict[str, object]]:
        await self.require_admin(identity)
        return await self._storage.events(limit, before)

    async def expire_due(self) -> list[int]:
        """Release bookings whose slot has ended (``release_after_slot_end``)."""
        now = self._clock()
        due = [
            s.id
            for s in self._board.slots
            if (end := release_time(s, self._tz)) is not None and end <= now
        ]
        if due:
            await self._write(Release(tuple(due), None, "expired", self._now()))
            log.info("bookings expired", extra={"slot_ids": due})
        return due

    async def refresh(self) -> None:
        """Another process committed: re-read the board, publish it if it changed."""
        async with self._lock:
            slots = await self._storage.slots()
            if slots != self._board.slots:
                self._publish(Board(slots, self._settings.show_booked_by))

    def _publish(self, board: Board) -> None:
        self._board = board
        for listener in self._listeners:
            try:
                listener(board)
            except Exception:  # a broken listener must not undo a committed booking
                log.exception("board listener failed")

    async def _write(self, change: Change, skip: Refusal | None = None) -> Write | None:
        """Queue ``change`` for the next commit; its :class:`Write`, or None if ``skip``
        refused it from the board.

        Changes that arrive while a commit is in flight are made together in the next
        one (group commit): in a rush, N bookings cost one fsync rather than N, and
        each is still answered only after its own commit.
        """
        done: asyncio.Future[Write | None] = asyncio.get_running_loop().create_future()
        self._queue.append((change, skip, done))
        if len(self._queue) == 1:  # the first since the last group was taken
            task = asyncio.create_task(self._commit_queued())
            self._committing.add(task)
            task.add_done_callback(self._committing.discard)
        return await done

    async def _commit_queued(self) -> None:
        """Commit every queued change in one storage call, then publish and answer.

        One lock orders commit and publish, so boards go out in commit order, and
        makes ``skip`` (a refusal read from the board) exact within this process.
        """
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
                if skip is not None and skip(self._board):
                    _settle(done, None)
                else:
                    todo.append((change, done))
            if not todo:
                return
            try:
                writes = await self._storage.apply([change for change, _ in todo])
            except Exception as e:
                for _, done in todo:
                    if not done.done():
                        done.set_exception(e)
                return
            except BaseException:
                for _, done in todo:
                    done.cancel()
                raise
            changed = [w for w in writes if w.changed]
            if changed:
                self._publish(Board(changed[-1].slots, self._settings.show_booked_by))
            for (_, done), write in zip(todo, writes, strict=True):
                _settle(done, write)
        finally:
            self._lock.release()


def _settle(done: asyncio.Future[Write | None], write: Write | None) -> None:
    if not done.done():  # its requester may have gone away; the change stands
        done.set_result(write)
