"""Prometheus metrics and the response-time figures of ``/stats``.

Counters that the hub, the auth cache and the services already keep are read
at scrape time by a collector, so nothing is counted twice. The error
middleware records HTTP traffic through ``observe``. Each application has its
own registry.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from typing import Final

from aiohttp import hdrs, web
from aiohttp.web_urldispatcher import AbstractResource
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rero.auth.cache import CachedAuth
from rero.hub import Hub
from rero.outcomes import Outcomes

RECENT: Final = 2048


class Metrics:
    """The registry, the HTTP histogram, and a window of recent response times."""

    def __init__(self, hub: Hub, outcomes: Outcomes) -> None:
        self.hub = hub
        self.outcomes = outcomes
        #: Set once the auth backend is up (its cleanup context).
        self.auth_cache: CachedAuth | None = None
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
        # One labelled child per (route, method, status): ``labels()`` costs 3x an observe.
        self.children: dict[tuple[AbstractResource | None, str, int], Histogram] = {}
        self.registry.register(_StateCollector(self))

    def percentiles(self) -> dict[str, float]:
        """p50/p90/p99 of the last requests, in milliseconds."""
        if not self.recent:
            return {"p50": 0.0, "p90": 0.0, "p99": 0.0}
        ordered = sorted(self.recent)

        def at(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

        return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99)}


class _StateCollector(Collector):
    """Reads the counters the services, hub and auth cache keep anyway."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        hub = self._metrics.hub
        yield GaugeMetricFamily("rero_websocket_connections", "Open WebSockets", hub.connections)
        for name, doc, value in (
            ("rero_boards_broadcast", "Boards published to the hub", hub.boards),
            ("rero_ws_messages_sent", "Boards written to WebSocket clients", hub.sent),
            ("rero_ws_messages_dropped", "Pending boards replaced by newer ones", hub.conflated),
            ("rero_ws_clients_cut_off", "Clients closed for staying blocked", hub.cut_off),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        cache = self._metrics.auth_cache
        if cache is not None:
            yield CounterMetricFamily("rero_auth_cache_hits", "Auth cache hits", cache.hits)
            yield CounterMetricFamily("rero_auth_cache_misses", "Auth cache misses", cache.misses)
        ops = CounterMetricFamily(
            "rero_operations", "Booking operations by outcome", labels=["action", "outcome"]
        )
        for (action, outcome), count in sorted(self._metrics.outcomes.items()):
            ops.add_metric([action, outcome], count)
        yield ops


def observe(metrics: Metrics, request: web.Request, status: int, started: float) -> None:
    """Record one request, labelled by its route's pattern, not its raw path."""
    elapsed = time.perf_counter() - started
    # Unknown methods share one label, so a client cannot grow the series without bound.
    method = request.method if request.method in hdrs.METH_ALL else "OTHER"
    key = (request.match_info.route.resource, method, status)
    child = metrics.children.get(key)
    if child is None:
        resource = key[0]
        route = resource.canonical if resource is not None else "unmatched"
        child = metrics.children[key] = metrics.http.labels(route, method, str(status))
    child.observe(elapsed)
    if status != 101:  # a WebSocket's lifetime is no response time
        metrics.recent.append(elapsed)
