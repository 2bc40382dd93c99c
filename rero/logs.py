"""JSON log lines for the process, the access log included.

Nothing here ever receives a request body, so no password or token can reach
a log line through it.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from typing import Final

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from pythonjsonlogger.json import JsonFormatter

FORMAT: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"
#: A path segment that is a credential: a calendar feed's token (``/calendar/<token>.ics``).
_SECRET_SEGMENT: Final = re.compile(r"^/calendar/[^/]+?(?=\.ics\Z|/|\Z)")


def loggable(path: str) -> str:
    """A request's path as log lines show it: with no credential in it."""
    return _SECRET_SEGMENT.sub("/calendar/***", path, count=1)


_Key = tuple[str, str, type, str, int]


class RepeatedTracebacks(logging.Filter):
    """The same traceback at most once per ``interval`` seconds.

    A client that finds a bug can trigger it in a loop; one traceback tells the operator
    as much as ten thousand and does not fill the disk. "The same" is the logger, the
    message before formatting, the exception type and where it was raised. The next one
    let through carries ``suppressed``: how many were dropped since the last.
    """

    def __init__(
        self,
        interval: float = 60.0,
        timer: Callable[[], float] = time.monotonic,
        max_kinds: int = 1000,
    ) -> None:
        super().__init__()
        self._interval = interval
        self._timer = timer
        self._max_kinds = max_kinds
        self._seen: dict[_Key, tuple[float, int]] = {}  # kind -> (last let through, dropped)

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or record.exc_info[0] is None:
            return True
        key = (record.name, str(record.msg), record.exc_info[0], *_raised_at(record))
        now = self._timer()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self._interval:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        if last is not None and last[1]:
            record.suppressed = last[1]
        self._seen.pop(key, None)
        if len(self._seen) >= self._max_kinds:  # bounded: forget the oldest kind
            del self._seen[next(iter(self._seen))]
        self._seen[key] = (now, 0)
        return True


def _raised_at(record: logging.LogRecord) -> tuple[str, int]:
    """The innermost frame of the record's traceback, else where it was logged."""
    tb = record.exc_info[2] if record.exc_info else None
    if tb is None:
        return record.pathname, record.lineno
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename, tb.tb_lineno


def setup_logging(level: str) -> None:
    """Send every logger's records to stderr as one JSON object per line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(FORMAT, rename_fields={"levelname": "level"}))
    handler.addFilter(RepeatedTracebacks())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiosqlite logs every statement at DEBUG: noise, and a place data could leak to.
    logging.getLogger("aiosqlite").setLevel(max(root.level, logging.INFO))


class AccessLogger(AbstractAccessLogger):
    """One structured line per request: method, path (no query), status, duration."""

    @property
    def enabled(self) -> bool:
        """Below INFO aiohttp then skips the call and the clock reads around each request."""
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "request",
            extra={
                "method": request.method,
                "path": loggable(request.path),
                "status": response.status,
                "duration_ms": round(time * 1000, 3),
                "remote": request.remote,
            },
        )
