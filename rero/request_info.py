"""What a request says about its sender: its address behind trusted proxies, its token,
its credentials; and its JSON body, validated.

Neutral ground for the transports, so none imports another.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web
from marshmallow import Schema, ValidationError

from rero.errors import InvalidRequest, InvalidSession, RequestInvalid
from rero.identity import Credentials, Identity, Token
from rero.keys import SETTINGS


def client_address(request: web.BaseRequest, trusted: tuple[str, ...]) -> str:
    """The peer, or behind a trusted proxy the nearest untrusted X-Forwarded-For hop."""
    address = request.remote or ""
    if address not in trusted:
        return address
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop
    return address


def bearer(request: web.BaseRequest) -> Token | None:
    """The token of ``Authorization: Bearer <token>``, if one is sent.

    Tokens are URL-safe ASCII; anything else (bytes that are not UTF-8 arrive as lone
    surrogates, which cannot even be hashed) is no session of ours.
    """
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        return None
    if not value.isascii():
        raise InvalidSession()
    return Token(value)


JSON_ERROR: Final = "Request body must be valid JSON"


async def parse(request: web.Request, schema: Schema) -> dict[str, Any]:
    """Decode and validate a JSON body: 400 if it is not JSON, 422 if it breaks the schema.

    Not JSON includes bytes the charset cannot decode, an unknown charset, and nesting
    too deep for the decoder (``RecursionError``, from a 64 KiB body of ``[``).
    """
    try:
        body = await request.json()
    except (ValueError, LookupError, RecursionError):
        raise InvalidRequest(JSON_ERROR) from None
    try:
        data: dict[str, Any] = schema.load(body)
    except ValidationError as e:
        raise RequestInvalid(e.messages) from None
    return data


def credentials(request: web.Request, data: dict[str, Any]) -> Credentials:
    trusted = request.app[SETTINGS].trusted_proxies
    return Credentials(data["username"], data["password"], client_address(request, trusted))


async def identify(
    request: web.Request, with_token: Schema | None, with_password: Schema
) -> tuple[Identity, dict[str, Any]]:
    """A bearer token if one is sent (the body then needs no credentials), else the body's."""
    token = bearer(request)
    if token is not None:
        return token, (await parse(request, with_token) if with_token else {})
    data = await parse(request, with_password)
    return credentials(request, data), data


def require_bearer(request: web.Request) -> Token:
    token = bearer(request)
    if token is None:
        raise InvalidSession()
    return token


def number(request: web.Request, name: str) -> int:
    """A path's id (the route's pattern already asked for digits); too large is no id."""
    value = int(request.match_info[name])
    if value > 2**62:
        raise web.HTTPNotFound()
    return value


def srn(request: web.Request) -> str:
    """A path's SRN: 1-64 printable characters, else 422 (it is stored and logged)."""
    value = request.match_info["srn"]
    if not 1 <= len(value) <= 64 or not value.isprintable():
        raise RequestInvalid({"srn": ["Not a valid SRN."]})
    return value


def query(request: web.Request, schema: Schema) -> dict[str, Any]:
    """A validated query string: 422 with the field errors."""
    try:
        data: dict[str, Any] = schema.load(dict(request.query))
    except ValidationError as e:
        raise RequestInvalid(e.messages) from None
    return data


def origin(request: web.BaseRequest, trusted: tuple[str, ...]) -> str:
    """``scheme://host`` as the client reached us: the request's own, or behind a trusted
    proxy what it forwards (``X-Forwarded-Proto``, ``X-Forwarded-Host``), for links back."""
    scheme, host = request.scheme, request.host
    if (request.remote or "") in trusted:
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        scheme = proto if proto in ("http", "https") else scheme
        host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip() or host
    return f"{scheme}://{host}"
