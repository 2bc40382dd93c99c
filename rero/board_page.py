"""The /board page: static HTML, its stylesheet and script, shipped in the package."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aiohttp import web

STATIC: Final = Path(__file__).with_name("static")
PAGE: Final = (STATIC / "board.html").read_bytes()
# Scripts and styles only from this server; sockets and fetches may go to another rero
# server (``?server=``), which is the point of that option.
POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' http: https: ws: wss:; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'"
)


async def board_page(request: web.Request) -> web.Response:
    return web.Response(
        body=PAGE,
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": POLICY, "Cache-Control": "no-cache"},
    )


def setup_board_page(app: web.Application) -> None:
    """``/board`` and ``/board/static/``: no build step, no CDN, works offline."""
    app.router.add_get("/board", board_page)
    app.router.add_static("/board/static", STATIC)
