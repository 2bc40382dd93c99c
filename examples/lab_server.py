"""An example lab server for rero: what a lab's equipment runs to let in the student whose
hour it is (docs/lab-integration.md). Copy it, then switch your equipment on and off where
``Lab.admit`` and ``Lab.end`` say so.

    python examples/lab_server.py --rero http://127.0.0.1:8000 --resource arm-1 \\
        --lab-key KEY --port 9000

rero sends the student to ``/#grant=<JWS>``: the page reads the grant from the fragment
(which browsers never send to a server, so it stays out of every log), takes it out of
the address bar and posts it to ``/session``. The grant is verified against rero's public
keys (``/.well-known/jwks.json``): signature, issuer, audience (this resource), and time,
30 s leeway either way. The student is admitted until the grant's ``exp`` (the slot's
end), or until rero's events say the booking ended first (released early, no-show,
cancelled). ``GET /status`` says who is in and for how long.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

import aiohttp
import jwt
from aiohttp import web

log: Final = logging.getLogger("lab")

#: Seconds either way that rero's clock and this one may disagree.
LEEWAY: Final = 30
#: How long the key set is kept (rero says the same in Cache-Control), and how often at
#: most an unknown ``kid`` makes us fetch it again.
KEYS_MAX_AGE: Final = 300.0
KEYS_MIN_REFRESH: Final = 10.0
#: rero's events that end a booking's hour before its slot does.
ENDING: Final = frozenset({"released_early", "no_show", "cancelled"})
#: What fetching the key set can fail with: rero out of reach, or not a key set.
_UNREACHABLE: Final = (aiohttp.ClientError, asyncio.TimeoutError, ValueError, LookupError,
                       jwt.PyJWKError)  # fmt: skip
CLAIMS: Final = ["iss", "aud", "sub", "name", "bid", "jti", "iat", "nbf", "exp"]

Clock = Callable[[], float]


class Refused(Exception):
    """A grant this lab does not accept; the message is for the student. ``status``:
    403 for the grant itself, 409 for a lab in use, 503 for rero out of reach."""

    def __init__(self, detail: str, status: int = 403) -> None:
        super().__init__(detail)
        self.status = status


def _iso(instant: float) -> str:
    return datetime.fromtimestamp(instant, timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Session:
    """The student who is in: their booking, and when their hour ends."""

    booking_id: int
    srn: str
    name: str
    jti: str
    ends: float

    def as_json(self, now: float) -> dict[str, Any]:
        return {
            "booking_id": self.booking_id,
            "srn": self.srn,
            "name": self.name,
            "ends_at": _iso(self.ends),
            "seconds_left": max(0, int(self.ends - now)),
        }


class Keys:
    """rero's public keys by ``kid``, fetched from its JWKS and kept a while: a key rero
    stopped publishing stops verifying once the set is fetched again."""

    def __init__(self, http: aiohttp.ClientSession, url: str, clock: Clock) -> None:
        self._http = http
        self._url = url
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched = float("-inf")

    async def get(self, kid: object) -> jwt.PyJWK:
        age = self._clock() - self._fetched
        if age >= KEYS_MAX_AGE or (kid not in self._keys and age >= KEYS_MIN_REFRESH):
            await self._fetch()
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise Refused("This grant is signed by a key rero does not publish")
        return key

    async def _fetch(self) -> None:
        try:
            async with self._http.get(self._url, timeout=aiohttp.ClientTimeout(10)) as resp:
                resp.raise_for_status()
                published = await resp.json()
            keys = {k["kid"]: jwt.PyJWK(k) for k in published["keys"] if k.get("alg") == "EdDSA"}
        except (
            aiohttp.ClientError,
            asyncio.TimeoutError,
            ValueError,
            KeyError,
            jwt.PyJWKError,
        ) as e:
            log.warning("cannot fetch rero's keys: %s", e)
            raise Refused("rero cannot be reached to check the grant; try again", 503) from None
        self._keys, self._fetched = keys, self._clock()


class Lab:
    """One resource's equipment: at most one student in it at a time."""

    def __init__(self, issuer: str, resource: str, keys: Keys, clock: Clock) -> None:
        self.issuer = issuer
        self.resource = resource
        self.session: Session | None = None
        self._keys = keys
        self._clock = clock
        #: Bookings whose hour is over, until their grants expire: a grant of one
        #: (its own replayed jti among them) is refused.
        self._ended: dict[int, float] = {}

    async def admit(self, grant: str) -> Session:
        """Verify ``grant`` and let its student in (again, if it is their session)."""
        try:
            kid = jwt.get_unverified_header(grant).get("kid")
        except jwt.InvalidTokenError:
            raise Refused("This is not a grant") from None
        try:
            # PyJWT checks nbf and exp against the wall clock when given leeway=LEEWAY;
            # this server reads its own clock (tests move it), so it checks them below.
            claims = jwt.decode(
                grant, await self._keys.get(kid), algorithms=["EdDSA"],
                audience=self.resource, issuer=self.issuer,
                options={"require": CLAIMS, "verify_exp": False, "verify_nbf": False,
                         "verify_iat": False},
            )  # fmt: skip
        except jwt.InvalidAudienceError:
            raise Refused(f"This grant is not for {self.resource}") from None
        except jwt.InvalidTokenError as e:
            raise Refused(f"This grant is not valid: {e}") from None
        now = self.now()
        self.expire()
        if now < claims["nbf"] - LEEWAY:
            raise Refused(f"Too early: this grant is valid from {_iso(claims['nbf'])}")
        if now >= claims["exp"] + LEEWAY:
            raise Refused("This grant has expired")
        if claims["bid"] in self._ended:
            raise Refused("This booking's session has ended")
        current = self.session
        if current is not None and current.booking_id != claims["bid"]:
            raise Refused(f"The lab is in use until {_iso(current.ends)}", 409)
        self.session = Session(claims["bid"], claims["sub"], claims["name"], claims["jti"],
                               float(claims["exp"]))  # fmt: skip
        if current is None:
            log.info("admitted %s for booking %s", claims["sub"], claims["bid"])
            # Switch the equipment on for the student here.
        return self.session

    def now(self) -> float:
        return self._clock()

    def end(self, why: str) -> None:
        """End the session (switch the equipment off here); its booking stays ended."""
        session, self.session = self.session, None
        if session is not None:
            self._ended[session.booking_id] = session.ends + LEEWAY
            log.info("session of booking %s ended: %s", session.booking_id, why)

    def expire(self) -> None:
        """End the session whose time is up; forget ended bookings whose grants expired."""
        now = self.now()
        if self.session is not None and now >= self.session.ends:
            self.end("its time is up")
        self._ended = {b: until for b, until in self._ended.items() if until > now}

    def on_event(self, event: dict[str, Any]) -> None:
        """One of rero's lab events: a booking that ends early ends its session."""
        if event.get("type") not in ENDING or event.get("resource") != self.resource:
            return
        booking = event.get("booking_id")
        if self.session is not None and self.session.booking_id == booking:
            self.end(str(event["type"]))
        elif isinstance(booking, int):  # not in yet: its grants must not let it in later
            ends = datetime.fromisoformat(str(event.get("end"))).timestamp()
            self._ended[booking] = ends + LEEWAY

    def status(self) -> dict[str, Any]:
        self.expire()
        now = self.now()
        session = None if self.session is None else self.session.as_json(now)
        return {"resource": self.resource, "session": session}


async def follow_events(lab: Lab, http: aiohttp.ClientSession, url: str, key: str) -> None:
    """rero's events for this resource, over its WebSocket, reconnecting with a backoff."""
    delay = 1.0
    while True:
        try:
            headers = {"Authorization": f"Bearer {key}"}
            async with http.ws_connect(url, headers=headers, heartbeat=30) as ws:
                delay = 1.0
                async for message in ws:
                    if message.type is aiohttp.WSMsgType.TEXT:
                        with contextlib.suppress(ValueError, KeyError, TypeError):
                            lab.on_event(json.loads(message.data))
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            log.warning("rero's events: %s; again in %.0f s", e, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)


PAGE: Final = """<!doctype html>
<meta charset="utf-8">
<meta name="referrer" content="no-referrer">
<title>Lab</title>
<h1 id="who">Checking your grant…</h1>
<p id="left"></p>
<script>
const who = document.getElementById("who"), left = document.getElementById("left");
const grant = new URLSearchParams(location.hash.slice(1)).get("grant");
history.replaceState(null, "", location.pathname);  // the grant leaves the address bar
async function enter() {
  if (!grant) { who.textContent = "Open this page from rero's Enter button."; return; }
  const resp = await fetch("session", {method: "POST",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify({grant})});
  const body = await resp.json();
  if (!resp.ok) { who.textContent = body.detail; return; }
  who.textContent = `Welcome, ${body.name}`;
  let ends = Date.now() + body.seconds_left * 1000;
  const tick = () => {
    const s = Math.max(0, Math.round((ends - Date.now()) / 1000));
    left.textContent = s ? `${Math.floor(s / 60)} min ${s % 60} s left` : "Your time is up.";
  };
  setInterval(tick, 1000); tick();
  setInterval(async () => {  // rero may end the hour early (released, cancelled)
    const now = (await (await fetch("status")).json()).session;
    if (!now || now.booking_id !== body.booking_id) ends = Date.now();
  }, 10000);
}
enter();
</script>
"""


LAB: Final = web.AppKey("lab", Lab)


def make_app(
    rero: str, resource: str, lab_key: str = "", clock: Clock = time.time
) -> web.Application:
    """The lab's web app; ``rero`` is rero's public_url (the grants' issuer)."""
    rero = rero.rstrip("/")

    async def running(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as http:
            keys = Keys(http, f"{rero}/.well-known/jwks.json", clock)
            app[LAB] = lab = Lab(rero, resource, keys, clock)
            tasks = [asyncio.create_task(expire_forever(lab))]
            if lab_key:
                events = f"{rero}/labs/{resource}/events"
                tasks.append(asyncio.create_task(follow_events(lab, http, events, lab_key)))
            yield
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    app = web.Application()
    app.cleanup_ctx.append(running)
    app.router.add_get("/", page)
    app.router.add_post("/session", enter)
    app.router.add_get("/status", status)
    return app


async def expire_forever(lab: Lab) -> None:
    """Ends a session when its time is up, even if nobody asks."""
    while True:
        lab.expire()
        await asyncio.sleep(1)


async def page(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")


async def enter(request: web.Request) -> web.Response:
    """``{"grant": "<JWS>"}``: the student is in (200), or why not."""
    try:
        grant = (await request.json())["grant"]
    except (ValueError, KeyError, TypeError):
        grant = None
    if not isinstance(grant, str):
        return web.json_response({"detail": 'Send {"grant": "<JWS>"}'}, status=400)
    lab = request.app[LAB]
    try:
        admitted = await lab.admit(grant)
    except Refused as e:
        return web.json_response({"detail": str(e)}, status=e.status)
    return web.json_response(admitted.as_json(lab.now()))


async def status(request: web.Request) -> web.Response:
    return web.json_response(request.app[LAB].status())


def main() -> None:
    parser = argparse.ArgumentParser(description="An example lab server for rero")
    parser.add_argument("--rero", required=True, help="rero's public_url")
    parser.add_argument("--resource", required=True, help="the resource id this lab is")
    parser.add_argument(
        "--lab-key", default=os.environ.get("RERO_LAB_KEY", ""),
        help="the lab's API key (rero keys lab), for rero's events; or set RERO_LAB_KEY",
    )  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    web.run_app(make_app(args.rero, args.resource, args.lab_key), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
