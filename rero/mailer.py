"""The mail sender: turns outbox events into queued messages, and sends what is due, at
least once, through SMTP (``aiosmtplib``) or, with no ``smtp_host``, into the log.

Each round first queues the messages of the outbox events not yet mailed
(:func:`dispatch`), then leases a batch of due messages, sends each (a batch stops before
its lease runs out; a student's messages stop at the first that fails), and settles it:
sent, retried later with exponential back-off and jitter, or dead after ``max_attempts``
or a permanent refusal of the recipient (``rero_mail_messages{state="dead"}`` and
``/health`` count them in the database, ``rero_operations_total{action="mail"}`` what
the senders did). Receivers drop repeats by ``Message-ID`` (or ``X-Rero-Event-Id`` and
the kind).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from typing import Final, Protocol

import aiosmtplib

from rero.clock import Clock
from rero.mail_render import Renderer, mask
from rero.outbox import doubling
from rero.outcomes import Outcomes
from rero.storage import Programs
from rero.storage.mail_programs import Mail, Sent, claim, counts, dispatch, purge, settle

log: Final = logging.getLogger(__name__)


class Transport(Protocol):
    """Where messages go; raises when one could not be handed over."""

    @property
    def configured(self) -> bool: ...

    async def send(self, message: EmailMessage) -> None: ...


@dataclass(frozen=True)
class Smtp:
    """An SMTP server: STARTTLS unless told otherwise, or TLS from the start (``tls``,
    port 465), a login if a username is set."""

    host: str
    port: int
    starttls: bool
    username: str
    password: str = field(repr=False)
    timeout: float = 30.0
    configured: bool = True
    tls: bool = False

    async def send(self, message: EmailMessage) -> None:
        await aiosmtplib.send(
            message, hostname=self.host, port=self.port, use_tls=self.tls,
            start_tls=self.starttls and not self.tls, username=self.username or None,
            password=self.password or None, timeout=self.timeout,
        )  # fmt: skip


class LogOnly:
    """No SMTP server: each message is one JSON log line (recipient masked, no body)."""

    configured = False

    async def send(self, message: EmailMessage) -> None:
        log.info(
            "mail logged, not sent",
            extra={
                "to": mask(str(message["To"])), "subject": str(message["Subject"]),
                "message_id": str(message["Message-ID"]),
            },
        )  # fmt: skip


@dataclass(frozen=True)
class Policy:
    """How hard the sender tries: timings in seconds."""

    batch: int = 20
    lease: float = 120.0
    poll: float = 1.0
    first_retry: float = 30.0
    longest_retry: float = 3600.0
    max_attempts: int = 8
    #: Seconds of the lease kept free to settle a batch after its sends are cut off.
    margin: float = 15.0
    #: Seconds a verification code's message may take (the request waits for it).
    code_timeout: float = 10.0
    page: int = 200
    keep: float = 7 * 24 * 3600.0
    purge_every: float = 3600.0
    #: How often the queue is counted for the metrics (and by every ``/health``).
    count_every: float = 30.0


def unsubscribe_token(key: str, srn: str, email: str) -> str:
    """The link's token for one student's address: derived, never stored (its hash is).
    Letters only, so a verification message has one run of digits: the code."""
    mac = hmac.new(key.encode(), f"unsubscribe\0{srn}\0{email}".encode(), hashlib.sha256)
    return mac.hexdigest().translate(str.maketrans("0123456789abcdef", "abcdefghijklmnop"))


def _said(error: Exception, to: str) -> str:
    """What went wrong, for the log and the queue: the server's answer often names the
    recipient, which is masked there as everywhere."""
    return f"{type(error).__name__}: {error}".replace(to, mask(to))[:300]


def permanent(error: Exception) -> bool:
    """The server refused the recipient for good (5xx): no retry will change that. A
    refusal of the message or the connection (4xx, or the whole server) is retried."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return bool(error.recipients) and all(r.code >= 500 for r in error.recipients)
    return isinstance(error, aiosmtplib.SMTPRecipientRefused) and error.code >= 500


def _failed(error: Exception) -> None:
    """A failed login is the operator's to fix: an error in the log, not a retry note."""
    if isinstance(error, aiosmtplib.SMTPAuthenticationError):
        log.error("SMTP login refused: check smtp_username and the password", extra={
            "code": error.code})  # fmt: skip


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Mailer:
    """Dispatches and sends notifications; one per process (they share the queue)."""

    def __init__(
        self,
        store: Programs,
        transport: Transport,
        render: Renderer,
        clock: Clock,
        outcomes: Outcomes,
        key: str,
        policy: Policy = Policy(),
        jitter: Callable[[], float] = random.random,
        skip_locked: bool = False,
    ) -> None:
        self._store = store
        self.transport = transport
        self.render = render
        self._clock = clock
        self._outcomes = outcomes
        self.key = key
        self.policy = policy
        self._jitter = jitter
        #: PostgreSQL: dispatchers and senders in several processes take different rows.
        self.skip_locked = skip_locked
        self._wake = asyncio.Event()
        #: Told the queue's counts (pending, dead) whenever they are read: the metrics.
        self.on_counts: Callable[[dict[str, int]], None] = lambda _: None

    def poke(self) -> None:
        self._wake.set()

    def _at(self, seconds: float = 0.0) -> str:
        return (self._clock() + timedelta(seconds=seconds)).isoformat(timespec="seconds")

    def token(self, srn: str, email: str) -> str:
        return unsubscribe_token(self.key, srn, email)

    async def dispatch_once(self) -> int:
        """Queue the messages of outbox events not yet mailed; how many events were passed."""
        return await self._store.perform(dispatch(self._at(), self.policy.page, self.skip_locked))

    def backoff(self, attempts: int) -> float:
        """Doubling from ``first_retry`` up to ``longest_retry``, a random half of it."""
        return doubling(self.policy.first_retry, self.policy.longest_retry, attempts, self._jitter)

    async def send_once(self) -> int:
        """Lease one batch of due messages, send them within the lease (what is cut off
        waits for the lease to run out and goes again), record what happened."""
        p = self.policy
        lease = self._at(p.lease)
        batch = await self._store.perform(claim(self._at(), lease, p.batch, self.skip_locked))
        if not batch:
            return 0
        # One student's messages in order (booked before cancelled), students at once.
        queues: dict[str, list[Mail]] = {}
        for mail in batch:
            queues.setdefault(mail.recipient, []).append(mail)
        results: list[Sent] = []
        tasks = [asyncio.ensure_future(self._send_in_order(q, results)) for q in queues.values()]
        _, late = await asyncio.wait(tasks, timeout=max(p.lease - p.margin, p.lease / 2))
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
            log.warning(
                "mail batch cut off at its lease", extra={"left": len(batch) - len(results)}
            )
        await self._store.perform(settle(results, self._at(), lease))
        for r in results:
            if not r.waited:
                self._outcomes[
                    "mail", "sent" if r.sent else "retried" if r.retry_at else "dead"
                ] += 1
        return len(batch)

    async def _send_in_order(self, queue: list[Mail], results: list[Sent]) -> None:
        """Send a student's messages in order; after one fails, the rest wait for it."""
        for n, mail in enumerate(queue):
            sent = await self._send(mail)
            results.append(sent)
            if not sent.sent:
                later = sent.retry_at or self._at()
                results.extend(Sent(m.id, False, later, None, True) for m in queue[n + 1 :])
                return

    async def _send(self, mail: Mail) -> Sent:
        """One message: any failure, rendering included, is this message's alone."""
        details = {"kind": mail.kind, "event": mail.event_id, "to": mask(mail.recipient)}
        try:
            message = self.render.notification(
                mail, self.token(mail.srn, mail.recipient), self._clock()
            )
            await self.transport.send(message)
            return Sent(mail.id, True)
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as e:
            error = _said(e, mail.recipient)
            _failed(e)
            if permanent(e):
                log.warning("mail refused for good", extra={**details, "error": error})
                return Sent(mail.id, False, None, error)
        except Exception as e:  # a message that cannot be rendered must not block others
            error = _said(e, mail.recipient)
            log.exception("mail could not be made", extra=details)
        if mail.attempts >= self.policy.max_attempts:
            log.warning("mail gave up", extra={**details, "error": error})
            return Sent(mail.id, False, None, error)
        log.info("mail failed, retrying", extra={**details, "error": error})
        return Sent(mail.id, False, self._at(self.backoff(mail.attempts)), error)

    async def send_code(self, to: str, code: str, token: str, ref: str) -> str:
        """Mail a verification code now (it is stored only as a hash, so it cannot wait
        in the queue), within ``code_timeout``: ``sent``, ``refused`` (the server refuses
        the address for good), or ``failed``."""
        message = self.render.code(to, code, token, self._clock(), ref)
        try:
            await asyncio.wait_for(self.transport.send(message), self.policy.code_timeout)
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as e:
            _failed(e)
            log.warning(
                "verification code not mailed", extra={"to": mask(to), "error": _said(e, to)}
            )
            return "refused" if permanent(e) else "failed"
        return "sent"

    async def health(self) -> dict[str, object]:
        found = await self._store.perform(counts())
        self.on_counts(found)
        return {"configured": self.transport.configured, **found}

    async def run_once(self) -> int:
        """One round: dispatch every new event, then send one batch."""
        while await self.dispatch_once() >= self.policy.page:
            pass
        return await self.send_once()

    async def run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        last_purge, last_count = -self.policy.purge_every, -self.policy.count_every
        while True:
            self._wake.clear()
            sent = 0
            try:
                if loop.time() - last_purge >= self.policy.purge_every:
                    last_purge = loop.time()
                    await self._store.perform(purge(self._at(-self.policy.keep)))
                if loop.time() - last_count >= self.policy.count_every:
                    last_count = loop.time()
                    await self.health()
                sent = await self.run_once()
            except Exception:  # a storage hiccup must not end the loop
                log.exception("sending mail failed")
            if sent < self.policy.batch:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.policy.poll)
