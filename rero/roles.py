"""Roles: who may do what beyond booking. ``student`` is everyone; ``assistant`` runs the
lab day to day (blackouts, check-ins, cancelling for students, the audit trail); ``admin``
may do all of that and more (roles, suspensions, bookings for anyone, reset).

A role comes from the configuration (``admins``, ``assistants``: fixed) or was set at run
time by an admin (stored, audited, and read again after any process's commit); the one
check of each level lives here."""

from __future__ import annotations

import logging
from collections.abc import Generator, Mapping
from typing import Final

from rero.auth import User
from rero.errors import AdminRequired, Conflict
from rero.settings import Settings
from rero.storage import Programs, Query, Rows
from rero.storage.rows import event

log: Final = logging.getLogger(__name__)

STUDENT: Final = "student"
ASSISTANT: Final = "assistant"
ADMIN: Final = "admin"
ROLES: Final = (STUDENT, ASSISTANT, ADMIN)
_RANK: Final = {role: n for n, role in enumerate(ROLES)}


class Roles:
    """Every student's role: the configuration's, else the one set at run time."""

    def __init__(self, settings: Settings, store: Programs | None = None) -> None:
        self.configured: dict[str, str] = dict.fromkeys(settings.assistants, ASSISTANT)
        self.configured.update(dict.fromkeys(settings.admins, ADMIN))
        self._store = store
        self._runtime: dict[str, str] = {}

    def of(self, srn: str) -> tuple[str, str]:
        """``srn``'s role and where it comes from: ``config``, ``runtime`` or ``default``."""
        if srn in self.configured:
            return self.configured[srn], "config"
        if srn in self._runtime:
            return self._runtime[srn], "runtime"
        return STUDENT, "default"

    def at_least(self, srn: str, role: str) -> bool:
        return _RANK[self.of(srn)[0]] >= _RANK[role]

    def require(self, user: User, role: str) -> User:
        """``user`` if their role is ``role`` or above; else 403 with the level's sentence."""
        if not self.at_least(user.srn, role):
            raise AdminRequired("Admin access required" if role == ADMIN else
                                "Staff access required")  # fmt: skip
        return user

    def everyone(self) -> list[tuple[str, str, str]]:
        """(srn, role, source) of every student with a role other than the default."""
        found = {srn: (role, "runtime") for srn, role in self._runtime.items()}
        found.update({srn: (role, "config") for srn, role in self.configured.items()})
        return [(srn, role, source) for srn, (role, source) in sorted(found.items())]

    async def load(self) -> None:
        """Read the roles set at run time (at start, and after another process commits)."""
        if self._store is not None:
            self._runtime = await self._store.perform(_read())

    async def set(self, admin: User, srn: str, role: str, at: str) -> None:
        """Set ``srn``'s role at run time (stored, audited); a configured one is fixed."""
        assert self._store is not None
        if srn in self.configured:
            raise Conflict(f"Role of {srn} is set in the configuration")
        self._runtime = await self._store.perform(_write(srn, role, admin.srn, at), tell=True)
        log.info("role set", extra={"srn": srn, "role": role, "by": admin.srn})


def _read() -> Generator[Query, Rows, dict[str, str]]:
    rows = yield ("SELECT srn, role FROM roles WHERE role <> 'student'", {})
    return {str(srn): str(role) for srn, role in rows}


def _write(srn: str, role: str, actor: str, at: str) -> Generator[Query, Rows, dict[str, str]]:
    params: Mapping[str, str] = {"srn": srn, "role": role, "actor": actor, "at": at}
    yield (
        "INSERT INTO roles (srn, role, set_by, set_at) VALUES (:srn, :role, :actor, :at)"
        " ON CONFLICT (srn) DO UPDATE SET role = excluded.role, set_by = excluded.set_by,"
        " set_at = excluded.set_at",
        dict(params),
    )
    yield from event("role_set", actor, at, srn, reason=role)
    return (yield from _read())
