"""What each notification says: a subject and a few sentences per kind, put into the one
plain-text and the one HTML template (``rero/mail_templates``; every value HTML-escaped
there), with the lab's name and times in its own zone, the headers receivers use to
drop repeats (``Message-ID``, ``X-Rero-Event-Id``), the unsubscribe link, and for a
confirmation the booking as an ``.ics`` (the feeds' event, :mod:`rero.feeds`).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from importlib.resources import files
from string import Template
from typing import Any, Final
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from rero.resources import Lab
from rero.storage import BookingRow
from rero.storage.mail_programs import Mail

_FOLDER: Final = files("rero") / "mail_templates"
TEXT: Final = Template(_FOLDER.joinpath("message.txt").read_text(encoding="utf-8"))
HTML: Final = Template(_FOLDER.joinpath("message.html").read_text(encoding="utf-8"))
#: Minutes a verification code works; its message says so.
CODE_MINUTES: Final = 15


class Renderer:
    """Builds messages; ``base`` is where links point, ``ics`` renders a booking."""

    def __init__(
        self, lab: Lab, base: str, sender: str, ics: Callable[[BookingRow, str], bytes]
    ) -> None:
        self._lab = lab
        self.base = base.rstrip("/")
        self._sender = sender or "rero@localhost"
        self._host = urlsplit(self.base).hostname or "rero"
        self._ics = ics

    def unsubscribe_url(self, token: str) -> str:
        return f"{self.base}/notifications/unsubscribe?token={token}"

    def _place(self, resource: str | None) -> tuple[str, ZoneInfo]:
        found = self._lab.get(resource or "") or self._lab.default
        return (found.name if resource is None or found.id == resource else resource), found.zone

    def _when(self, start: str, end: str, zone: ZoneInfo) -> str:
        """``Wed 2026-11-25, 09:00-10:00 (Asia/Kolkata)``."""
        a, b = (datetime.fromisoformat(t).astimezone(zone) for t in (start, end))
        return f"{a:%a %Y-%m-%d}, {a:%H:%M}-{b:%H:%M} ({zone.key})"

    def _instant(self, at: str | None, zone: ZoneInfo) -> str:
        if not at:
            return "soon"
        return f"{datetime.fromisoformat(at).astimezone(zone):%a %Y-%m-%d %H:%M} ({zone.key})"

    def _says(self, mail: Mail) -> tuple[str, list[str]]:
        """The subject and the paragraphs of one notification."""
        c = mail.context
        name, zone = self._place(c.get("resource"))
        if mail.kind == "suspension":
            until = self._instant(c.get("until"), zone)
            return f"Booking suspended until {until}", [
                f"After repeated no-shows you cannot book until {until}.",
                "Lab staff can lift the suspension early.",
            ]
        when = self._when(c["start"], c["end"], zone)
        short = f"{name}, {when}"
        if mail.kind == "confirmation":
            return f"Booked: {short}", [
                f"Your booking of {name} is confirmed: {when}.",
                "The event is attached for your calendar.",
            ]
        if mail.kind == "reminder":
            return f"Reminder: {short}", [
                # The start itself, not "in N minutes": a message may go late.
                f"Your booking of {name} starts at {self._instant(c['start'], zone)}.",
                "Check in when you arrive, or cancel it in rero if you cannot come.",
            ]
        if mail.kind == "cancellation":
            why = c.get("why")
            return f"Cancelled: {short}", [
                f"Your booking of {name} ({when}) was cancelled by the lab.",
                f"Reason: {why}." if why else "No reason was given.",
            ]
        if mail.kind == "waitlist":
            deadline = self._instant(c.get("deadline"), zone)
            return f"A slot is free for you: {short}", [
                f"The slot of {name} you waited for is free: {when}.",
                f"It is held for you until {deadline}: confirm it in rero before then.",
            ]
        assert mail.kind == "no_show", mail.kind
        return f"No-show recorded: {short}", [
            f"You did not check in to your booking of {name} ({when}): it counts as a no-show.",
            "Repeated no-shows suspend booking for a while.",
        ]

    def notification(self, mail: Mail, token: str, now: datetime) -> EmailMessage:
        subject, paragraphs = self._says(mail)
        name = mail.context.get("name") or ""
        message = self._build(
            mail.recipient, subject, f"Hello {name}," if name else "Hello,", paragraphs,
            token, now, f"<{mail.event_id}.{mail.kind}@{self._host}>",
        )  # fmt: skip
        message["X-Rero-Event-Id"] = mail.event_id
        if mail.kind == "confirmation":
            message.add_attachment(
                self._ics(_booking(mail), self.base), maintype="text", subtype="calendar",
                filename="booking.ics", params={"method": "PUBLISH"},
            )  # fmt: skip
        return message

    def code(self, to: str, code: str, token: str, now: datetime, ref: str) -> EmailMessage:
        """The verification message: the code is its only run of six digits."""
        return self._build(
            to, "Your rero verification code", "Hello,",
            [f"Enter this code in rero to get notifications at this address: {code}",
             f"It works for {CODE_MINUTES} minutes. If you did not ask for it, ignore this mail."],
            token, now, f"<{ref}.code@{self._host}>",
        )  # fmt: skip

    def _build(
        self, to: str, subject: str, greeting: str, paragraphs: list[str], token: str,
        now: datetime, message_id: str,
    ) -> EmailMessage:  # fmt: skip
        link = self.unsubscribe_url(token)
        values: dict[str, Any] = {"greeting": greeting, "unsubscribe": link, "subject": subject}
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = format_datetime(now)
        message["Message-ID"] = message_id
        message["Auto-Submitted"] = "auto-generated"
        message["List-Unsubscribe"] = f"<{link}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message.set_content(TEXT.substitute(values, body="\n\n".join(paragraphs)))
        escaped = {k: html.escape(v) for k, v in values.items()}
        body = "\n".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
        message.add_alternative(HTML.substitute(escaped, body=body), subtype="html")
        return message


def _booking(mail: Mail) -> BookingRow:
    c = mail.context
    return BookingRow(
        int(c["booking_id"]), str(c["resource"]), str(c["date"]), int(c["slot_id"]),
        str(c["start"]), str(c["end"]), mail.srn, "booked", str(c["at"]), name=str(c["name"]),
    )  # fmt: skip


def mask(address: str) -> str:
    """``a***@example.edu``: enough for an operator to tell messages apart in a log."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}"
