"""The one place errors become responses: always ``{"detail": ...}`` JSON."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler

from rero.errors import AuthUnavailable, RequestInvalid, ReroError, TooManyAttempts
from rero.keys import METRICS, SETTINGS
from rero.logs import loggable
from rero.metrics import observe

log: Final = logging.getLogger(__name__)

MAX_BODY: Final = 64 * 1024
#: nginx's status for "the client closed the request": only the access log and metrics see it.
CLIENT_GONE: Final = 499


class _BodyLate(Exception):
    """The body a request promised did not arrive in time."""


def error_response(
    status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    return web.json_response({"detail": detail, **extra}, status=status, headers=headers)


def _http_detail(e: web.HTTPException) -> str:
    if e.status == 413:
        return f"Request body too large: at most {MAX_BODY} bytes"
    return e.reason


async def _receive_body(request: web.Request) -> None:
    """Read the whole body before the handler runs, within the deadline: a client that
    promises a body and stalls would otherwise hold its socket (and shutdown) forever.
    Handlers then read it from memory."""
    deadline = request.app[SETTINGS].body_timeout_seconds
    try:
        if sys.version_info >= (3, 11):  # no task per request, unlike wait_for
            async with asyncio.timeout(deadline):
                await request.read()
        else:  # pragma: no cover - exercised on 3.10 only
            await asyncio.wait_for(request.read(), deadline)
    except asyncio.TimeoutError:
        raise _BodyLate() from None


async def _answer_and_hang_up(request: web.Request, response: web.Response) -> None:
    """Send the response now, then close: aiohttp would otherwise linger, reading the
    rest of the body (for up to 10 s) before it closes the connection."""
    response.force_close()
    with contextlib.suppress(ConnectionResetError):  # or nobody is left to tell
        await response.prepare(request)
        await response.write_eof()
    request.protocol.force_close()


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map domain errors, aiohttp's HTTP errors and surprises to JSON; never a traceback.

    It also times the request, with the status the client got: one middleware rather
    than two, as each layer costs ``GET /slots`` throughput (docs/performance.md).
    """
    started = time.perf_counter()
    metrics = request.app[METRICS]
    try:
        if request.can_read_body:
            await _receive_body(request)
        response = await handler(request)
    except RequestInvalid as e:
        response = error_response(e.status, e.detail, errors=e.errors)
    except (AuthUnavailable, TooManyAttempts) as e:
        response = error_response(e.status, e.detail, {"Retry-After": str(e.retry_after)})
    except ReroError as e:
        response = error_response(e.status, e.detail)
    except _BodyLate:
        timeout = request.app[SETTINGS].body_timeout_seconds
        response = error_response(408, f"Request body not received within {timeout:g} seconds")
        await _answer_and_hang_up(request, response)
    except web.HTTPException as e:
        if e.status < 400:
            observe(metrics, request, e.status, started)
            raise
        headers = {k: v for k, v in e.headers.items() if k in ("Allow", "Retry-After")}
        response = error_response(e.status, _http_detail(e), headers)
    except Exception as e:
        if isinstance(e, ConnectionResetError) and _client_gone(request):
            # Not an error of ours: nobody is left to answer.
            log.debug("client went away during %s %s", request.method, loggable(request.path))
            response = error_response(CLIENT_GONE, "Client closed the request")
        else:
            log.exception("unhandled error on %s %s", request.method, loggable(request.path))
            response = error_response(500, "Internal server error")
    observe(metrics, request, response.status, started)
    return response
