"""PESU backend: one POST to the PESU auth API per (uncached) login."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Final

import aiohttp

from rero.auth import User
from rero.errors import AuthUnavailable, InvalidCredentials

log: Final = logging.getLogger(__name__)

#: Statuses that mean "these credentials are wrong" rather than "try later".
_REJECTED: Final = frozenset({400, 401})


class PesuAuth:
    """Talks to the PESU auth API over a shared client session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        timeout: float,
        observe: Callable[[float], None] = lambda _: None,
    ) -> None:
        self._session = session
        self._url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._observe = observe

    async def authenticate(self, username: str, password: str) -> User:
        """Map the upstream's answers onto the two failure kinds users must tell apart.

        Redirects are never followed: a 307 would re-post the credentials to wherever
        the ``Location`` points. Any 3xx is an upstream failure like any other non-200.
        """
        payload = {"username": username, "password": password, "profile": True}
        started = time.perf_counter()
        try:
            async with self._session.post(
                self._url, json=payload, timeout=self._timeout, allow_redirects=False
            ) as resp:
                if resp.status in _REJECTED:
                    raise InvalidCredentials()
                if resp.status != 200:
                    log.warning("PESU auth upstream answered HTTP %d", resp.status)
                    raise AuthUnavailable()
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, RecursionError) as e:
            log.warning("PESU auth upstream unreachable: %s", type(e).__name__)
            raise AuthUnavailable() from None
        finally:
            self._observe(time.perf_counter() - started)
        return _user_from(body)


def _user_from(body: Any) -> User:
    """Accept only ``{"status": true, "profile": {...srn...}}``; legacy 200/false is a reject.

    A blank SRN is no identity: every such login would share one user (and its bookings).
    """
    if not isinstance(body, dict) or not isinstance(body.get("status"), bool):
        log.warning("PESU auth upstream sent an unexpected body")
        raise AuthUnavailable()
    if body["status"] is False:
        raise InvalidCredentials()
    profile = body.get("profile")
    if not isinstance(profile, dict):
        profile = {}
    srn = profile.get("srn")
    if not isinstance(srn, str) or not srn.strip():
        log.warning("PESU auth upstream sent no usable profile")
        raise AuthUnavailable()

    def text(key: str) -> str:
        value = profile.get(key)
        return "" if value is None else str(value)

    return User(
        name=text("name"),
        srn=srn,
        prn=text("prn"),
        program=text("program"),
        branch=text("branch"),
        campus=text("campus"),
    )
