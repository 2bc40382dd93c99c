"""``/metrics``: Prometheus text that moves when things happen."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rero.app import create_app
from rero.keys import METRICS
from rero.settings import Settings
from tests.helpers import ALICE, BOB, ClientFactory, FakePesu, connect, receive


async def scrape(client: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(await resp.text())
        for s in family.samples
    }


async def test_metrics_move_with_bookings_and_sockets(client: Any) -> None:
    before = await scrape(client)
    assert before[("rero_websocket_connections", ())] == 0
    ws = await connect(client)
    await client.post("/book-slot", json={"slot_id": 5, **ALICE})
    await client.post("/book-slot", json={"slot_id": 5, **BOB})
    await client.post("/cancel-slot", json={"slot_id": 5, **ALICE})
    await receive(ws)
    after = await scrape(client)
    assert after[("rero_websocket_connections", ())] == 1
    assert after[("rero_operations_total", (("action", "book"), ("outcome", "success")))] == 1
    assert (
        after[("rero_operations_total", (("action", "book"), ("outcome", "slot_unavailable")))] == 1
    )
    assert after[("rero_operations_total", (("action", "cancel"), ("outcome", "success")))] == 1
    assert after[("rero_boards_broadcast_total", ())] > before[("rero_boards_broadcast_total", ())]
    assert after[("rero_ws_messages_sent_total", ())] >= 2
    assert after[("rero_auth_cache_hits_total", ())] >= 1
    key = (
        "rero_http_request_duration_seconds_count",
        (("method", "POST"), ("route", "/book-slot"), ("status", "200")),
    )
    assert after[key] == 1
    assert (
        after[
            (
                "rero_http_request_duration_seconds_count",
                (("method", "POST"), ("route", "/book-slot"), ("status", "400")),
            )
        ]
        == 1
    )
    assert ("rero_ws_clients_cut_off_total", ()) in after
    assert ("rero_ws_messages_dropped_total", ()) in after


async def test_upstream_latency_is_observed(
    aiohttp_client: ClientFactory, settings: Any, pesu: FakePesu
) -> None:
    client = await aiohttp_client(
        create_app(replace(settings, auth_backend="pesu", pesu_auth_url=pesu.url))
    )
    await client.post("/auth/login", json={"username": "s", "password": "right"})
    samples = await scrape(client)
    assert samples[("rero_auth_upstream_seconds_count", ())] == 1
    assert samples[("rero_auth_cache_misses_total", ())] == 1


async def test_request_labels_stay_bounded(client: Any) -> None:
    """Invented methods and paths share labels; a WebSocket's lifetime is no response time."""
    for i, method in enumerate(("PROPFIND", "MKCOL", "LOCK", "UNLOCK", "PURGE")):
        await client.request(method, "/slots")
        await client.get(f"/nowhere/{i}")
    await client.get("/slots")
    ws = await connect(client)
    await ws.close()
    samples = await scrape(client)
    series = {
        labels for (name, labels) in samples if name == "rero_http_request_duration_seconds_count"
    }
    assert (("method", "OTHER"), ("route", "unmatched"), ("status", "405")) in series
    assert (("method", "GET"), ("route", "unmatched"), ("status", "404")) in series
    assert not [labels for labels in series if ("method", "LOCK") in labels]
    # 11 requests and the WebSocket so far: only the requests count as response times.
    assert len(client.app[METRICS].recent) == 12  # the scrape above is the 12th


def test_a_shared_directory_set_after_prometheus_started_is_refused(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Values kept in memory would never reach the other workers' scrapes."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with pytest.raises(RuntimeError, match="imported before its directory was set"):
        create_app(settings)
