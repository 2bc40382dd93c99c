"""The /admin console over HTTP: its CSP, its files (the vendored chart library pinned by
hash), no inline script or style, and a student refused on every staff route (the
browser side is in test_browser_console.py)."""

from __future__ import annotations

import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from rero.admin_page import UPLOT_VERSION
from rero.routes import ROUTES
from tests.helpers import ALICE, ALICE_SRN, BOB, BOB_SRN, bearer, login

STATIC = Path(__file__).resolve().parent.parent / "rero" / "static"
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
#: uPlot 1.6.32 from the npm registry (``npm pack uplot@1.6.32``): dist/ and its LICENSE.
VENDORED = {
    "uPlot.iife.min.js": "19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f",
    "uPlot.min.css": "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04",
    "uPlot.LICENSE": "8f989229699b4fe2f1a0432d0e9edc338a8a911e250e2d1b01ecd770a5f5b1bd",
}


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text inside each <script>/<style>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline: list[str] = []
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._open = tag if tag in ("script", "style") else None

    def handle_data(self, data: str) -> None:
        if self._open and data.strip():
            self.inline.append(data)


async def test_the_page_and_its_policy(client: Any) -> None:
    resp = await client.get("/admin")
    assert (resp.status, resp.content_type, resp.charset) == (200, "text/html", "utf-8")
    assert resp.headers["Content-Security-Policy"] == POLICY
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert await resp.read() == (STATIC / "admin.html").read_bytes()


async def test_no_inline_script_or_style_and_nothing_from_elsewhere(client: Any) -> None:
    tags = Tags()
    tags.feed(await (await client.get("/admin")).text())
    scripts = [a["src"] for t, a in tags.tags if t == "script"]
    sheets = [a["href"] for t, a in tags.tags if t == "link" and a.get("rel") == "stylesheet"]
    assert scripts == [
        "/admin/static/vendor/uPlot.iife.min.js", "/admin/static/session.js",
        "/admin/static/admin.js",
    ]  # fmt: skip
    assert sheets == ["/admin/static/vendor/uPlot.min.css", "/admin/static/admin.css"]
    assert tags.inline == []
    assert not [t for t, _ in tags.tags if t == "style"]
    handlers = [(t, k) for t, a in tags.tags for k in a if k == "style" or k.startswith("on")]
    assert handlers == []
    # Every form field has a label (or is a button).
    labelled = {a["for"] for t, a in tags.tags if t == "label"}
    fields = {a["id"] for t, a in tags.tags if t in ("input", "select", "textarea")}
    assert fields <= labelled, fields - labelled


async def test_the_static_files_are_served(client: Any) -> None:
    # Python's mimetypes names JavaScript text/javascript (RFC 9239) from 3.12 on.
    script = {"application/javascript", "text/javascript"}
    for path, kinds in (
        ("admin.js", script),
        ("session.js", script),
        ("admin.css", {"text/css"}),
        ("vendor/uPlot.iife.min.js", script),
        ("vendor/uPlot.min.css", {"text/css"}),
    ):
        resp = await client.get(f"/admin/static/{path}")
        assert (resp.status, resp.content_type in kinds) == (200, True), (path, resp.content_type)
        assert await resp.read() == (STATIC / path).read_bytes()
    assert (await client.get("/admin/static/nope.js")).status == 404
    assert (await client.get("/admin/static/../app.py")).status in (403, 404)


async def test_the_vendored_chart_library_is_the_pinned_one(client: Any) -> None:
    for name, digest in VENDORED.items():
        assert hashlib.sha256((STATIC / "vendor" / name).read_bytes()).hexdigest() == digest, name
    served = await (await client.get("/admin/static/vendor/uPlot.iife.min.js")).read()
    assert hashlib.sha256(served).hexdigest() == VENDORED["uPlot.iife.min.js"]
    banner = f"/*! https://github.com/leeoniya/uPlot (v{UPLOT_VERSION}) */"
    assert served.startswith(banner.encode())
    assert (STATIC / "vendor" / "uPlot.LICENSE").read_text().startswith("The MIT License (MIT)")


def test_the_script_builds_the_page_without_html_strings() -> None:
    """Names and reasons come from students and staff: set as text, never parsed."""
    script = (STATIC / "admin.js").read_text()
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", script)
    assert not re.search(r"https?://", script)


def request_for(path: str, method: str) -> tuple[str, dict[str, Any]]:
    """A path with its parameters filled in, and a body the route's schema accepts: the
    role is what a student is refused for, not the request."""
    filled = re.sub(r"\{booking_id[^}]*\}|\{blackout_id[^}]*\}", "1", path)
    filled = filled.replace("{srn}", BOB_SRN).replace("{resource}", "lab")
    bodies: dict[tuple[str, str], Any] = {
        ("POST", "/admin/reset"): {"confirm": True},
        ("POST", "/admin/blackouts"): {
            "resource": "lab", "start": "2026-11-25T09:00:00+05:30",
            "end": "2026-11-25T12:00:00+05:30", "reason": "Maintenance",
        },
        ("PUT", "/admin/roles/{srn}"): {"role": "admin"},
        ("POST", r"/admin/bookings/{booking_id:\d+}/cancel"): {"reason": "Maintenance"},
    }  # fmt: skip
    if filled == "/admin/bookings":
        filled += "?resource=lab"
    body = bodies.get((method, path))
    return filled, {} if body is None else {"json": body}


async def test_a_student_is_refused_on_every_admin_route(make: Any) -> None:
    lab = await make(admins=(ALICE_SRN,))
    bob, alice = await login(lab, BOB), await login(lab, ALICE)
    admin_routes = [r for r in ROUTES if r.path.startswith("/admin")]
    assert len(admin_routes) >= 14
    for route in admin_routes:
        path, body = request_for(route.path, route.method)
        resp = await lab.request(route.method, path, headers=bearer(bob), **body)
        got = (resp.status, await resp.json())
        assert got in (
            (403, {"detail": "Staff access required"}), (403, {"detail": "Admin access required"}),
        ), (route.method, route.path, got)  # fmt: skip
    # The same requests from an admin are not refused: they were well formed.
    for route in admin_routes:
        path, body = request_for(route.path, route.method)
        resp = await lab.request(route.method, path, headers=bearer(alice), **body)
        assert resp.status != 403, (route.method, route.path, resp.status)
