"""Prometheus metrics and the response-time figures of ``/stats``.

Counters that the hub, the auth cache and the slot service already keep are
read at scrape time by a collector, so nothing is counted twice. HTTP traffic
is measured by one middleware. Each application has its own registry.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rero.keys import AUTH, HUB, METRICS, SERVICE

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
RECENT: Final = 2048


class Metrics:
    """The registry, the HTTP histogram, and a window of recent response times."""

    def __init__(self, app: web.Application) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http = Histogram(
            "rero_http_request_duration_seconds",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.upstream = Histogram(
            "rero_auth_upstream_seconds",
            "PESU auth upstream call latency",
            registry=self.registry,
        )
        self.recent: deque[float] = deque(maxlen=RECENT)
        self.registry.register(_StateCollector(app))

    def percentiles(self) -> dict[str, float]:
        """p50/p90/p99 of the last requests, in milliseconds."""
        if not self.recent:
            return {"p50": 0.0, "p90": 0.0, "p99": 0.0}
        ordered = sorted(self.recent)

        def at(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

        return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99)}


class _StateCollector(Collector):
    """Reads the counters the service, hub and auth cache keep anyway."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        app = self._app
        hub = app[HUB]
        yield GaugeMetricFamily("rero_websocket_connections", "Open WebSockets", len(hub.clients))
        for name, doc, value in (
            ("rero_boards_broadcast", "Boards published to the hub", hub.boards),
            ("rero_ws_messages_sent", "Boards written to WebSocket clients", hub.sent),
            ("rero_ws_messages_dropped", "Pending boards replaced by newer ones", hub.conflated),
            ("rero_ws_clients_cut_off", "Clients closed for staying blocked", hub.cut_off),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        if AUTH in app:
            yield CounterMetricFamily("rero_auth_cache_hits", "Auth cache hits", app[AUTH].hits)
            yield CounterMetricFamily(
                "rero_auth_cache_misses", "Auth cache misses", app[AUTH].misses
            )
        if SERVICE in app:
            ops = CounterMetricFamily(
                "rero_operations", "Booking operations by outcome", labels=["action", "outcome"]
            )
            for (action, outcome), count in sorted(app[SERVICE].outcomes.items()):
                ops.add_metric([action, outcome], count)
            yield ops


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Time every request, labelled by its route's pattern, not its raw path."""
    started = time.perf_counter()
    status = 500
    socket = False
    try:
        response = await handler(request)
        status = response.status
        socket = isinstance(response, web.WebSocketResponse)
        return response
    except web.HTTPException as e:
        status = e.status
        raise
    finally:
        elapsed = time.perf_counter() - started
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        metrics = request.app[METRICS]
        metrics.http.labels(route, request.method, str(status)).observe(elapsed)
        if not socket:  # a socket's lifetime is no response time
            metrics.recent.append(elapsed)


async def metrics_view(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
