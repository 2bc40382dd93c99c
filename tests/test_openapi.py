"""The OpenAPI document and the offline Swagger UI."""

from __future__ import annotations

import re
from typing import Any

from openapi_spec_validator import validate

SKIP = {
    "/slot-booking",
    "/labs/{resource}/events",
    "/openapi.json",
    "/docs",
    "/docs/init.js",
    "/board",
    "/admin",
}


async def document(client: Any) -> dict[str, Any]:
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    doc: dict[str, Any] = await resp.json()
    return doc


async def test_document_is_valid_openapi_3(client: Any) -> None:
    doc = await document(client)
    validate(doc)
    assert doc["openapi"].startswith("3.")


async def test_every_route_is_documented(client: Any) -> None:
    doc = await document(client)
    routes = {
        (r.method.lower(), r.resource.canonical)
        for r in client.server.app.router.routes()
        if r.resource is not None
        and r.method not in ("HEAD", "OPTIONS")
        and r.resource.canonical not in SKIP
        and not r.resource.canonical.startswith(("/docs/static", "/board/static", "/admin/static"))
    }
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert routes == documented
    assert len(routes) == 55


async def test_bodies_and_errors_are_documented(client: Any) -> None:
    doc = await document(client)
    book = doc["paths"]["/book-slot"]["post"]
    assert set(book["responses"]) >= {"200", "400", "401", "413", "422", "429", "503"}
    assert book["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SlotRequest"
    }
    request = doc["components"]["schemas"]["SlotRequest"]
    assert request["properties"]["slot_id"]["type"] == "integer"
    assert set(request["required"]) == {"slot_id", "username", "password"}
    assert "403" in doc["paths"]["/cancel-slot"]["post"]["responses"]
    board = doc["components"]["schemas"]["Board"]
    assert set(board["properties"]) == {"slots", "available_slots", "booked_slots"}
    assert doc["paths"]["/auth/logout"]["post"]["responses"]["204"]
    audit = doc["paths"]["/admin/audit"]["get"]
    assert {p["name"] for p in audit["parameters"]} == {
        "limit",
        "before",
        "srn",
        "resource",
        "action",
        "from",
        "to",
    }


async def test_docs_page_loads_its_assets_locally(client: Any) -> None:
    resp = await client.get("/docs")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    page = await resp.text()
    assert "//" not in page.replace("<!doctype html>", "")  # no external address
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert len(assets) == 4
    for asset in assets:
        got = await client.get(asset)
        assert got.status == 200, asset
        assert len(await got.read()) > 100
