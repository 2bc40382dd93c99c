"""The /board page over HTTP: which servers its CSP and its chooser name, and the
``board_servers`` setting that lists them (the browser side is in test_browser.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import ClientResponse

from rero.app import create_app
from rero.settings import Settings, SettingsError, load_settings
from tests.helpers import ClientFactory

LAB2 = "https://lab2.example.edu"
LOCAL = "http://127.0.0.1:8001"
#: Everything but connect-src, which names the servers.
FIXED = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "{connect}; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
NO_SERVERS = '<meta name="rero-board-servers" content="[]">'


async def get_board(
    aiohttp_client: ClientFactory, settings: Settings, path: str = "/board"
) -> tuple[ClientResponse, str]:
    client = await aiohttp_client(create_app(settings))
    resp = await client.get(path)
    assert resp.status == 200
    return resp, await resp.text()


async def test_csp_allows_only_this_server_by_default(
    aiohttp_client: ClientFactory, settings: Settings
) -> None:
    resp, body = await get_board(aiohttp_client, settings)
    assert resp.headers["Content-Security-Policy"] == FIXED.format(connect="connect-src 'self'")
    assert resp.headers["Cache-Control"] == "no-cache"
    assert NO_SERVERS in body


async def test_csp_names_each_configured_server_with_its_socket_scheme(
    aiohttp_client: ClientFactory, settings: Settings
) -> None:
    configured = replace(settings, board_servers=(LAB2, LOCAL))
    resp, body = await get_board(aiohttp_client, configured)
    assert resp.headers["Content-Security-Policy"] == FIXED.format(
        connect=(
            "connect-src 'self' https://lab2.example.edu wss://lab2.example.edu"
            " http://127.0.0.1:8001 ws://127.0.0.1:8001"
        )
    )
    assert (
        '<meta name="rero-board-servers" content="'
        '[&quot;https://lab2.example.edu&quot;, &quot;http://127.0.0.1:8001&quot;]">'
    ) in body
    assert NO_SERVERS not in body


async def test_a_server_parameter_changes_nothing_the_server_sends(
    aiohttp_client: ClientFactory, settings: Settings
) -> None:
    plain, plain_body = await get_board(aiohttp_client, settings)
    asked, asked_body = await get_board(
        aiohttp_client, settings, "/board?server=http://127.0.0.1:9"
    )
    assert asked_body == plain_body
    assert "127.0.0.1:9" not in asked_body
    policy = "Content-Security-Policy"
    assert asked.headers[policy] == plain.headers[policy]


async def test_the_listing_is_escaped_for_an_attribute(
    aiohttp_client: ClientFactory, settings: Settings
) -> None:
    """The setting admits no such value (replace() skips its check); the page is escaped
    correctly all the same."""
    odd = replace(settings, board_servers=('https://a"<&>',))
    _, body = await get_board(aiohttp_client, odd)
    listing = "[&quot;https://a\\&quot;&lt;&amp;&gt;&quot;]"
    assert f'<meta name="rero-board-servers" content="{listing}">' in body


def _load(tmp_path: Path, value: str) -> Settings:
    profile = tmp_path / "profile.toml"
    profile.write_text(f"board_servers = {value}\n")
    return load_settings(str(profile), environ={})


def test_board_servers_default_to_none() -> None:
    assert Settings().board_servers == ()


def test_board_servers_are_read_as_origins(tmp_path: Path) -> None:
    value = '["https://lab2.example.edu", "http://127.0.0.1:8001", "https://a-b.c:8443"]'
    assert _load(tmp_path, value).board_servers == (LAB2, LOCAL, "https://a-b.c:8443")


@pytest.mark.parametrize(
    "origin",
    [
        "https://lab2.example.edu/",  # a path, even an empty one
        "https://lab2.example.edu/board",
        "https://lab2.example.edu?x=1",
        "https://lab2.example.edu#top",
        "ftp://lab2.example.edu",
        "ws://lab2.example.edu",  # the page derives the socket's scheme itself
        "lab2.example.edu",
        "https://",
        "https://user@lab2.example.edu",
        "https://Lab2.example.edu",  # browsers compare origins in lower case
        "https://lab2.example.edu:443",  # a default port is not part of an origin
        "http://lab2.example.edu:80",
        "http://lab2.example.edu:0",
        "http://lab2.example.edu:65536",
        "https://*.example.edu",
        "https://lab2.example.edu; script-src *",
        "https://[::1]:8000",  # CSP cannot name an IPv6 literal
        "",
    ],
)
def test_board_servers_refuse_anything_but_an_origin(tmp_path: Path, origin: str) -> None:
    profile = tmp_path / "profile.toml"
    with pytest.raises(SettingsError) as caught:
        _load(tmp_path, f'["{origin}"]')
    assert str(caught.value) == (
        f"invalid setting board_servers=[{origin!r}] (from {profile}): Must be an http or "
        "https origin, scheme://host[:port] in lower case, with no path (for example "
        "https://lab2.example.edu)."
    )
