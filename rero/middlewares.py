"""The one place errors become responses: always ``{"detail": ...}`` JSON."""

from __future__ import annotations

import logging
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler

from rero.errors import AuthUnavailable, ReroError, TooManyAttempts

log: Final = logging.getLogger(__name__)

MAX_BODY: Final = 64 * 1024


class RequestInvalid(ReroError):
    """A body that failed its schema: 422 with the messages per field."""

    status = 422

    def __init__(self, errors: Any) -> None:
        super().__init__("Request validation failed")
        self.errors = errors


def error_response(
    status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    return web.json_response({"detail": detail, **extra}, status=status, headers=headers)


def _http_detail(e: web.HTTPException) -> str:
    if e.status == 413:
        return f"Request body too large: at most {MAX_BODY} bytes"
    return e.reason


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map domain errors, aiohttp's HTTP errors and surprises to JSON; never a traceback."""
    try:
        return await handler(request)
    except RequestInvalid as e:
        return error_response(e.status, e.detail, errors=e.errors)
    except (AuthUnavailable, TooManyAttempts) as e:
        return error_response(e.status, e.detail, {"Retry-After": str(e.retry_after)})
    except ReroError as e:
        return error_response(e.status, e.detail)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        headers = {k: v for k, v in e.headers.items() if k in ("Allow", "Retry-After")}
        return error_response(e.status, _http_detail(e), headers)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "Internal server error")
