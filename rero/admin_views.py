"""HTTP transport for the staff's reads: the audit trail (JSON and CSV, filtered) and a
student's record. Parse, call the service, render."""

from __future__ import annotations

import csv
import io
from typing import Any

from aiohttp import web

from rero import role_schemas, schemas
from rero.admin import AUDIT_KEYS, AuditAsk
from rero.keys import ADMIN, CALENDAR, HOUR, STAFF
from rero.request_info import number, parse, query, require_bearer, srn


async def _audit(request: web.Request, schema: Any) -> tuple[list[dict[str, Any]], int]:
    token = require_bearer(request)
    asked = query(request, schema)
    ask = AuditAsk(asked["srn"], asked["resource"], asked["action"], asked["first"],
                   asked["last"])  # fmt: skip
    found = await request.app[ADMIN].audit(token, ask, asked["limit"], asked["before"])
    return found, int(asked["limit"])


async def audit(request: web.Request) -> web.Response:
    """``GET /admin/audit``: a page, and the ``before`` of the next one (if any)."""
    found, limit = await _audit(request, schemas.AUDIT)
    next_before = found[-1]["id"] if len(found) == limit else None
    return web.json_response({"events": found, "next_before": next_before})


def _cell(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula (a reason typed by staff) is quoted
    with a leading apostrophe, as OWASP advises for CSV exports."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


async def audit_csv(request: web.Request) -> web.Response:
    """``GET /admin/audit.csv``: the same events as CSV, one row each, newest first."""
    found, _ = await _audit(request, schemas.AUDIT_EXPORT)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=AUDIT_KEYS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _cell(v) for k, v in row.items()} for row in found)
    return web.Response(
        text=out.getvalue(), content_type="text/csv", charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="rero-audit.csv"'},
    )  # fmt: skip


async def student(request: web.Request) -> web.Response:
    body = await request.app[ADMIN].student(require_bearer(request), srn(request))
    return web.json_response(body)


async def lift_suspension(request: web.Request) -> web.Response:
    student = srn(request)
    await request.app[HOUR].lift_suspension(require_bearer(request), student)
    return web.json_response({"srn": student, "suspended_until": None})


async def board(request: web.Request) -> web.Response:
    """``GET /admin/bookings?resource=&date=``: the board with who, check-in, waitlist."""
    asked = query(request, schemas.ADMIN_BOARD)
    body = await request.app[ADMIN].board(require_bearer(request), asked["resource"], asked["date"])
    return web.json_response(body)


async def analytics(request: web.Request) -> web.Response:
    asked = query(request, schemas.ANALYTICS)
    body = await request.app[ADMIN].analytics(
        require_bearer(request), asked["first"], asked["last"], asked["resource"]
    )
    return web.json_response(body)


async def cancel(request: web.Request) -> web.Response:
    """``POST /admin/bookings/{booking_id}/cancel``: staff cancel with a reason."""
    token = require_bearer(request)
    reason = (await parse(request, role_schemas.STAFF_CANCEL))["reason"]
    gone = await request.app[STAFF].cancel(token, number(request, "booking_id"), reason)
    return web.json_response({"success": True, "booking": request.app[CALENDAR].as_json(gone)})
