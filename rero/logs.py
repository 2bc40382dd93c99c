"""JSON log lines for the process, the access log included.

Nothing here ever receives a request body, so no password or token can reach
a log line through it.
"""

from __future__ import annotations

import logging
import sys
from typing import Final

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from pythonjsonlogger.json import JsonFormatter

FORMAT: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"


def setup_logging(level: str) -> None:
    """Send every logger's records to stderr as one JSON object per line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(FORMAT, rename_fields={"levelname": "level"}))
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
                "path": request.path,
                "status": response.status,
                "duration_ms": round(time * 1000, 3),
                "remote": request.remote,
            },
        )
