"""What a request says about its sender: its address behind trusted proxies, its token.

Neutral ground for both transports, so neither imports the other.
"""

from __future__ import annotations

from aiohttp import web

from rero.errors import InvalidSession
from rero.identity import Token


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
