"""The outbox's sender: lab events leave the process as signed webhooks, at least once.

The events were written by the changes they report, in the same transaction
(:func:`rero.storage.rows.emit`), so none is lost to a crash between the change and the
send. The sender leases a batch of due events (another worker, or this one after a
crash, takes them over when the lease runs out), POSTs each to its resource's
``webhook_url``, then marks it delivered, retries it later with exponential back-off and
jitter, or gives up on it (dead) after ``max_attempts`` or once it is a day old.
Receivers drop repeats by ``X-Rero-Event-Id`` (docs/lab-integration.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

import aiohttp

from rero.clock import Clock
from rero.outcomes import Outcomes
from rero.setting_checks import LabConfig
from rero.storage import Programs
from rero.storage.outbox_programs import Claimed, Settled, claim, purge, settle

log: Final = logging.getLogger(__name__)


@dataclass(frozen=True)
class Policy:
    """How hard the sender tries: timings in seconds."""

    batch: int = 50
    timeout: float = 10.0
    #: Longer than a batch's slowest POST: a lease that runs out hands the event over.
    lease: float = 60.0
    poll: float = 0.5
    first_retry: float = 1.0
    longest_retry: float = 600.0
    max_attempts: int = 20
    max_age: float = 24 * 3600.0
    #: Settled events (and those no webhook sends) are kept this long for ``?after=``.
    keep: float = 7 * 24 * 3600.0
    purge_every: float = 3600.0


@dataclass(frozen=True)
class Webhook:
    """Where one resource's events go, and the secret that signs them."""

    url: str
    secret: bytes


def webhooks(labs: Mapping[str, LabConfig], environ: Mapping[str, str]) -> dict[str, Webhook]:
    """Each resource's webhook, its secret read once from the variable the lab names (the
    settings checked it is set; the value is never logged)."""
    found = {}
    for resource, lab in labs.items():
        if not lab.webhook_url:
            continue
        secret = environ.get(lab.webhook_secret_env, "")
        if not secret:
            raise RuntimeError(f"resource {resource!r}: {lab.webhook_secret_env} is not set")
        found[resource] = Webhook(lab.webhook_url, secret.encode())
    return found


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """``t=<unix>,v1=<hex HMAC-SHA-256 of "<t>.<body>">``: what a receiver recomputes."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def doubling(first: float, longest: float, attempts: int, jitter: Callable[[], float]) -> float:
    """Seconds before a retry: doubling from ``first`` up to ``longest``, of which a random
    half, so that retries do not come in waves (the webhooks', the mail's)."""
    ceiling = min(longest, first * 2 ** min(attempts - 1, 30))
    return float(ceiling / 2 + ceiling / 2 * jitter())


class OutboxSender:
    """Delivers the outbox's events of resources with a webhook; one per process."""

    def __init__(
        self,
        store: Programs,
        hooks: Mapping[str, Webhook],
        session: aiohttp.ClientSession,
        clock: Clock,
        outcomes: Outcomes,
        policy: Policy = Policy(),
        jitter: Callable[[], float] = random.random,
        skip_locked: bool = False,
    ) -> None:
        self._store = store
        self._hooks = dict(hooks)
        self._session = session
        self._clock = clock
        self._outcomes = outcomes
        self.policy = policy
        self._jitter = jitter
        self._skip_locked = skip_locked  # PostgreSQL: workers claim different rows at once
        self._wake = asyncio.Event()

    def poke(self) -> None:
        """Something committed: look for due events now rather than at the next poll."""
        self._wake.set()

    def _at(self, seconds: float = 0.0) -> str:
        return (self._clock() + timedelta(seconds=seconds)).isoformat(timespec="seconds")

    def backoff(self, attempts: int) -> float:
        """Seconds before attempt ``attempts + 1``: doubling from ``first_retry`` up to
        ``longest_retry``, of which a random half (so retries do not come in waves)."""
        return doubling(self.policy.first_retry, self.policy.longest_retry, attempts, self._jitter)

    async def run_once(self) -> int:
        """Claim one batch, deliver it, record what happened; how many were claimed."""
        p = self.policy
        if not self._hooks:
            return 0
        hooks, now, lease, oldest = (
            list(self._hooks),
            self._at(),
            self._at(p.lease),
            self._at(-p.max_age),
        )
        batch = await self._store.perform(
            claim(hooks, now, lease, oldest, p.batch, self._skip_locked)
        )
        if not batch:
            return 0
        results = await asyncio.gather(*(self._deliver(event) for event in batch))
        await self._store.perform(settle(results, self._at()))
        for result in results:
            outcome = "delivered" if result.delivered else "retried" if result.retry_at else "dead"
            self._outcomes["webhook", outcome] += 1
        return len(batch)

    async def _deliver(self, event: Claimed) -> Settled:
        hook = self._hooks[event.resource]
        body = event.payload.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "rero-outbox",
            "X-Rero-Event-Id": event.event_id,
            "X-Rero-Signature": signature(hook.secret, int(self._clock().timestamp()), body),
        }
        try:
            async with self._session.post(
                hook.url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.policy.timeout),
            ) as response:
                if 200 <= response.status < 300:
                    return Settled(event.id, True)
                error = f"HTTP {response.status}"
        except asyncio.TimeoutError:
            error = f"no answer within {self.policy.timeout:g} s"
        except Exception as e:  # refused, reset, a bad URL: this event only, tried again
            error = type(e).__name__
        return self._failed(event, error)

    def _failed(self, event: Claimed, error: str) -> Settled:
        if event.attempts >= self.policy.max_attempts:
            log.warning(
                "webhook gave up",
                extra={"resource": event.resource, "event": event.event_id, "error": error},
            )
            return Settled(event.id, False, None, error)
        retry_at = self._at(self.backoff(event.attempts))
        log.info(
            "webhook failed, retrying",
            extra={"resource": event.resource, "event": event.event_id, "error": error},
        )
        return Settled(event.id, False, retry_at, error)

    async def purge(self) -> int:
        """Forget settled events (and those no webhook sends) older than ``keep``."""
        return await self._store.perform(purge(list(self._hooks), self._at(-self.policy.keep)))

    async def run_forever(self) -> None:
        """Deliver as events come due; purge now and then. Every wait is bounded."""
        loop = asyncio.get_running_loop()
        last_purge = -self.policy.purge_every
        while True:
            self._wake.clear()
            claimed = 0
            try:
                if loop.time() - last_purge >= self.policy.purge_every:
                    last_purge = loop.time()
                    await self.purge()
                claimed = await self.run_once()
            except Exception:  # a storage hiccup must not end the loop
                log.exception("delivering the outbox failed")
            if claimed < self.policy.batch:  # a full batch: more may be due at once
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.policy.poll)
