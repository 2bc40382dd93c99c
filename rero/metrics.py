"""Prometheus metrics and the response-time figures of ``/stats``.

The hub, the auth cache and the services count what happens anyway (the hub once per
message sent: no metric in the fan-out's loop); ``publish`` adds what they counted since
its last call to real metrics, before every scrape. The error middleware records HTTP
traffic through ``observe``. Each application has its own registry.

Several workers (``rero.workers``) share ``PROMETHEUS_MULTIPROC_DIR``: prometheus-client
then keeps every value in a file of its process, a scrape sums them all, and each
worker also publishes once a second, so any worker's scrape has every worker's counts.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Final

from aiohttp import hdrs, web
from aiohttp.web_urldispatcher import AbstractResource
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector

from rero.auth.cache import CachedAuth
from rero.hub import Hub
from rero.outcomes import Outcomes

RECENT: Final = 2048
#: With several workers, how stale another worker's counts in a scrape may be.
PUBLISH_SECONDS: Final = 1.0


class Metrics:
    """The registry, the HTTP histogram, the counts published from the services, and a
    window of recent response times."""

    def __init__(self, hub: Hub, outcomes: Outcomes) -> None:
        self.hub = hub
        self.outcomes = outcomes
        #: Set once the auth backend is up (its cleanup context).
        self.auth_cache: CachedAuth | None = None
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.http = Histogram(
            "rero_http_request_duration_seconds",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=registry,
        )
        self.upstream = Histogram(
            "rero_auth_upstream_seconds", "PESU auth upstream call latency", registry=registry
        )
        self.recent: deque[float] = deque(maxlen=RECENT)
        # One labelled child per (route, method, status): ``labels()`` costs 3x an observe.
        self.children: dict[tuple[AbstractResource | None, str, int], Histogram] = {}
        # A worker's sockets count while it lives: the gauge's file goes with it.
        self.connections = Gauge(
            "rero_websocket_connections", "Open WebSockets", multiprocess_mode="livesum",
            registry=registry,
        )  # fmt: skip
        # The mail queue as the database counts it (every worker reads the same rows).
        self.mail = Gauge(
            "rero_mail_messages", "Mail waiting (pending) and given up on (dead), by state",
            ["state"], multiprocess_mode="max", registry=registry,
        )  # fmt: skip
        self.boards, self.sent, self.dropped, self.cut_off, self.hits, self.misses = (
            Counter(name, doc, registry=registry)
            for name, doc in (
                ("rero_boards_broadcast", "Boards published to the hub"),
                ("rero_ws_messages_sent", "Boards written to WebSocket clients"),
                ("rero_ws_messages_dropped", "Pending boards replaced by newer ones"),
                ("rero_ws_clients_cut_off", "Clients closed for staying blocked"),
                ("rero_auth_cache_hits", "Auth cache hits"),
                ("rero_auth_cache_misses", "Auth cache misses"),
            )
        )
        self.operations = Counter(
            "rero_operations", "Booking operations by outcome", ["action", "outcome"],
            registry=registry,
        )  # fmt: skip
        self.published: dict[Counter, float] = {}
        self.shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self.exposed = registry
        if self.shared:
            if values.ValueClass is values.MutexValue:
                raise RuntimeError("prometheus_client was imported before its directory was set")
            self.exposed = CollectorRegistry()
            MultiProcessCollector(self.exposed, self.shared)  # type: ignore[no-untyped-call]

    def publish(self) -> None:
        """Add to the metrics what the hub, the auth cache and the services counted since."""
        hub, cache = self.hub, self.auth_cache
        self.connections.set(hub.connections)
        counts = [
            (self.boards, hub.boards),
            (self.sent, hub.sent),
            (self.dropped, hub.conflated),
            (self.cut_off, hub.cut_off),
        ]
        if cache is not None:
            counts += [(self.hits, cache.hits), (self.misses, cache.misses)]
        counts += [(self.operations.labels(*key), n) for key, n in self.outcomes.items()]
        for counter, count in counts:
            behind = count - self.published.get(counter, 0)
            if behind > 0:
                counter.inc(behind)
                self.published[counter] = count

    def exposition(self) -> bytes:
        """The Prometheus text: this process's metrics, or every worker's summed."""
        self.publish()
        return generate_latest(self.exposed)

    async def publishing(self, app: web.Application) -> AsyncIterator[None]:
        """With several workers, publish every second, and once more at the end."""
        if not self.shared:
            yield
            return

        async def forever() -> None:
            while True:
                await asyncio.sleep(PUBLISH_SECONDS)
                self.publish()

        task = asyncio.create_task(forever())
        yield
        task.cancel()
        await asyncio.wait([task])
        self.publish()

    def percentiles(self) -> dict[str, float]:
        """p50/p90/p99 of the last requests, in milliseconds."""
        if not self.recent:
            return {"p50": 0.0, "p90": 0.0, "p99": 0.0}
        ordered = sorted(self.recent)

        def at(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

        return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99)}


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
