"""HTTP transport for email notifications: the caller's settings, entering the code, and
the unsubscribe link (its token is the credential: no session). Parse, call, render."""

from __future__ import annotations

import html
from typing import Final
from urllib.parse import quote

from aiohttp import web

from rero import notification_schemas as schemas
from rero.keys import NOTIFY
from rero.request_info import parse, query, require_bearer

#: The unsubscribe pages: no script, no style, nothing from elsewhere, never framed; the
#: one form posts back here. Never cached, as every private path (``headers.PRIVATE``).
PAGE_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; form-action 'self';"
    " frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
}
_PAGE: Final = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport"
content="width=device-width, initial-scale=1"><title>rero notifications</title></head>
<body>{}</body></html>"""


async def mine(request: web.Request) -> web.Response:
    found = await request.app[NOTIFY].mine(require_bearer(request))
    return web.json_response(found.as_json())


async def change(request: web.Request) -> web.Response:
    token = require_bearer(request)
    data = await parse(request, schemas.NOTIFY)
    found, sent = await request.app[NOTIFY].change(
        token, data["email"], data.get("reminder_minutes"), data["events"]
    )
    return web.json_response({**found.as_json(), "code_sent": sent})


async def verify(request: web.Request) -> web.Response:
    token = require_bearer(request)
    code = (await parse(request, schemas.VERIFY))["code"]
    found = await request.app[NOTIFY].verify(token, code)
    return web.json_response(found.as_json())


def _page(body: str) -> web.Response:
    return web.Response(
        text=_PAGE.format(body), content_type="text/html", charset="utf-8", headers=PAGE_HEADERS
    )


async def unsubscribe_page(request: web.Request) -> web.Response:
    """A button, not the change itself: mail scanners follow links, people press buttons."""
    token = query(request, schemas.UNSUBSCRIBE)["token"]
    return _page(
        "<h1>Turn notifications off</h1><p>rero will mail you nothing more until you turn"
        ' notifications on again.</p><form method="post" action="/notifications/unsubscribe'
        f'?token={html.escape(quote(token, safe=""))}"><button type="submit">'
        "Turn every notification off</button></form>"
    )


async def unsubscribe(request: web.Request) -> web.Response:
    """The change (also the one-click POST of ``List-Unsubscribe-Post``)."""
    token = query(request, schemas.UNSUBSCRIBE)["token"]
    await request.app[NOTIFY].unsubscribe(token)
    return _page(
        "<h1>Notifications off</h1><p>rero will mail you nothing more. Sign in and turn"
        " them on again with your notification settings whenever you like.</p>"
    )
