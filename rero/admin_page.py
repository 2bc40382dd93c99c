"""The /admin page: the staff console, static HTML, its stylesheet and script, and the
charting library vendored beside them (docs/console.md). Shipped in the package.

The page is a client of the staff's JSON routes on this server only: its CSP lets it
talk to nothing else, and every answer it shows (a 403 among them) is the API's.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from rero.board_page import POLICY, STATIC

PAGE: Final = (STATIC / "admin.html").read_bytes()
#: The vendored chart library, pinned: docs/console.md says how to update it.
UPLOT_VERSION: Final = "1.6.32"
#: Scripts, styles and connections only from this server.
ADMIN_POLICY: Final = POLICY.format(connect="'self'")


def setup_admin_page(app: web.Application) -> None:
    """``/admin`` and ``/admin/static/``: no build step, no CDN, works offline."""
    headers = {"Content-Security-Policy": ADMIN_POLICY}

    async def admin_page(request: web.Request) -> web.Response:
        return web.Response(body=PAGE, content_type="text/html", charset="utf-8", headers=headers)

    app.router.add_get("/admin", admin_page)
    app.router.add_static("/admin/static", STATIC)
