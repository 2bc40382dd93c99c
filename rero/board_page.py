"""The /board page: static HTML, its stylesheet and script, shipped in the package.

The page talks to this server and to the servers the operator lists in ``board_servers``,
never to one named by a link: a crafted ``?server=`` must not receive the password or
the token. The list reaches the page in one ``<meta>`` tag filled in at start-up, and the
CSP allows exactly those servers.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from aiohttp import web

from rero.keys import SETTINGS

STATIC: Final = Path(__file__).with_name("static")
PAGE: Final = (STATIC / "board.html").read_bytes()
#: The tag in board.html that lists the configured servers (none, as shipped).
LISTING: Final = b'<meta name="rero-board-servers" content="[]">'
#: Scripts, styles and connections only from this server, plus those configured.
POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src {connect}; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
SOCKET_SCHEME: Final = {"http": "ws", "https": "wss"}


def page_listing(servers: Sequence[str]) -> bytes:
    """board.html with ``servers`` in its listing tag, as JSON escaped for an attribute."""
    content = html.escape(json.dumps(list(servers)), quote=True)
    listing = f'<meta name="rero-board-servers" content="{content}">'.encode()
    return PAGE.replace(LISTING, listing, 1)


def policy(servers: Sequence[str]) -> str:
    """Each configured origin in its http(s) form (fetch) and its ws(s) form (socket)."""
    sources = ["'self'"]
    for origin in servers:
        scheme, rest = origin.split("://", 1)
        sources += [origin, f"{SOCKET_SCHEME[scheme]}://{rest}"]
    return POLICY.format(connect=" ".join(sources))


def setup_board_page(app: web.Application) -> None:
    """``/board`` and ``/board/static/``: no build step, no CDN, works offline."""
    servers = app[SETTINGS].board_servers
    body = page_listing(servers)
    headers = {"Content-Security-Policy": policy(servers), "Cache-Control": "no-cache"}

    async def board_page(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="text/html", charset="utf-8", headers=headers)

    app.router.add_get("/board", board_page)
    app.router.add_static("/board/static", STATIC)
