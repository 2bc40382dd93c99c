"""Calendar feeds: the routes' exact answers and refusals, the ``.ics`` read back by two
parsers (icalendar and vobject), tokens kept as hashes only and out of the logs, and the
store's programs on SQLite and PostgreSQL alike."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Generator
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import icalendar
import pytest
import vobject

from rero.app import create_app
from rero.calendar import utc
from rero.keys import CALENDAR, FEEDS, STORAGE
from rero.setting_checks import LabConfig, ResourceConfig
from rero.storage import Book, Query, Rows, Storage
from rero.storage.backends import open_storage
from rero.storage.feed_programs import Owner, open_feed, read_feed, revoke_feed
from tests.helpers import (
    ALICE_SRN,
    ARM,
    BOB,
    BOB_SRN,
    TOMORROW,
    UPGRADE,
    Clock,
    bearer,
    login,
    serve,
)

PUBLIC = "https://rero.example.edu"
LAUNCH = "https://lab.example.edu/arm-1/session?x=1,2"
KOLKATA, BERLIN = ZoneInfo("Asia/Kolkata"), ZoneInfo("Europe/Berlin")
LAB_ARM = replace(ARM, lab=LabConfig(launch_url=LAUNCH))
BENCH = ResourceConfig("bench", name="Bench", site="Berlin-1", timezone="Europe/Berlin",
                       opens="08:00", closes="18:00", booking_window_days=200)  # fmt: skip
FEED_URL = re.compile(r"https://rero\.example\.edu/calendar/([A-Za-z0-9_-]{43})\.ics\Z")
SESSION = {"detail": "Invalid or expired session"}
NO_FEED = {"detail": "No such calendar feed"}
NOW = "2026-11-24T03:00:00+00:00"  # the clock fixture's start


@pytest.fixture
async def lab(make: Any) -> Any:
    """The routes' rules, on SQLite."""
    return await make(resources=(LAB_ARM, BENCH), admins=(ALICE_SRN,), public_url=PUBLIC)


@pytest.fixture
async def either(make: Any, database: dict[str, str]) -> Any:
    """The same on each store, for the tests that read and write feeds."""
    return await make(
        resources=(LAB_ARM, BENCH), admins=(ALICE_SRN,), public_url=PUBLIC, **database
    )


def execute(sql: str, params: dict[str, Any]) -> Generator[Query, Rows, Rows]:
    """One statement as a program: the tests' way into either store."""
    return (yield (sql, params))


async def booked(client: Any, resource: str, day: str, slot: int, srn: str, name: str = "") -> int:
    """A booking made straight in the store (any date, with a name), as staff would."""
    target = client.app[CALENDAR].target(resource, date.fromisoformat(day), slot)
    start, end = utc(target.slot.start), utc(target.slot.end)
    change = Book(resource, day, slot, start, end, srn, srn, NOW, name=name)
    (write,) = (await client.app[STORAGE].apply([change])).writes
    assert write.changed
    return int(write.bookings[0].id)


async def status(client: Any, booking_id: int, value: str) -> None:
    await client.app[STORAGE].perform(
        execute("UPDATE bookings SET status = :s WHERE id = :id", {"s": value, "id": booking_id})
    )


async def fetch(client: Any, url: str) -> Any:
    return await client.get(url.removeprefix(PUBLIC))


async def open_feed_of(client: Any, token: str) -> str:
    resp = await client.post("/me/calendar-feed", headers=bearer(token))
    assert resp.status == 201
    return str((await resp.json())["url"])


def events_by_uid(body: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """The feed's events by UID as icalendar reads them, and as vobject does."""
    first = {str(e["UID"]): e for e in icalendar.Calendar.from_ical(body).walk("VEVENT")}
    second = {e.uid.value: e for e in getattr(vobject.readOne(body.decode()), "vevent_list", [])}
    assert set(first) == set(second)
    return first, second


# ---- a student's feed -----------------------------------------------------------------


async def test_a_students_feed_of_their_bookings(either: Any) -> None:
    alice = await login(either)
    made = await either.post(
        "/bookings", json={"resource": "arm-1", "date": TOMORROW, "slot_id": 10},
        headers=bearer(alice),
    )  # fmt: skip
    arm_id = (await made.json())["booking"]["id"]
    summer = await booked(either, "bench", "2027-04-01", 9, ALICE_SRN, "Alice Rao")  # CEST
    gone = await booked(either, "bench", "2026-12-01", 9, ALICE_SRN)
    await status(either, gone, "cancelled")
    missed = await booked(either, "arm-1", "2026-11-10", 5, ALICE_SRN)  # 14 days ago
    await status(either, missed, "no_show")
    old = await booked(either, "arm-1", "2026-10-20", 5, ALICE_SRN)  # over 30 days ago
    held = await booked(either, "arm-1", TOMORROW, 11, ALICE_SRN)
    await status(either, held, "held")
    await booked(either, "arm-1", TOMORROW, 12, BOB_SRN)  # someone else's

    resp = await either.post("/me/calendar-feed", headers=bearer(alice))
    assert resp.status == 201
    body = await resp.json()
    assert set(body) == {"url", "created_at"}
    assert body["created_at"] == NOW
    token = FEED_URL.match(body["url"])
    assert token is not None
    assert token[1] != alice

    got = await fetch(either, body["url"])
    assert got.status == 200
    assert got.headers["Content-Type"] == "text/calendar; charset=utf-8"
    assert got.headers["Cache-Control"] == "private, max-age=300"
    ics = await got.read()
    parsed = icalendar.Calendar.from_ical(ics)
    assert str(parsed["X-WR-CALNAME"]) == "Lab bookings (rero)"
    assert (parsed["REFRESH-INTERVAL"].dt, str(parsed["X-PUBLISHED-TTL"])) == (
        timedelta(hours=1),
        "PT1H",
    )
    assert {str(tz["TZID"]) for tz in parsed.walk("VTIMEZONE")} == {"Asia/Kolkata", "Europe/Berlin"}
    first, second = events_by_uid(ics)
    uid = "booking-{}@rero.example.edu".format
    assert set(first) == {uid(arm_id), uid(summer), uid(gone), uid(missed)}
    assert uid(old) not in first
    assert uid(held) not in first

    arm = first[uid(arm_id)]
    assert arm["DTSTART"].params["TZID"] == "Asia/Kolkata"
    for start, end in ((arm.start, arm.end), (second[uid(arm_id)].dtstart.value,
                                               second[uid(arm_id)].dtend.value)):  # fmt: skip
        assert start == datetime(2026, 11, 25, 10, tzinfo=KOLKATA)
        assert end == datetime(2026, 11, 25, 11, tzinfo=KOLKATA)
        assert start.utcoffset() == timedelta(hours=5, minutes=30)
    assert str(arm["SUMMARY"]) == second[uid(arm_id)].summary.value == "Robot arm 1"
    assert str(arm["LOCATION"]) == second[uid(arm_id)].location.value == "RR"
    assert str(arm["STATUS"]) == second[uid(arm_id)].status.value == "CONFIRMED"
    description = second[uid(arm_id)].description.value
    assert str(arm["DESCRIPTION"]) == description
    assert description == f"Status: booked\nLab: {LAUNCH}\nBooking: {arm_id}"
    assert str(arm["URL"]) == LAUNCH
    assert (arm.DTSTAMP, arm.last_modified) == (datetime.fromisoformat(NOW),) * 2

    # Berlin in summer: the VTIMEZONE gives vobject the summer offset.
    for start in (first[uid(summer)].start, second[uid(summer)].dtstart.value):
        assert start == datetime(2027, 4, 1, 9, tzinfo=BERLIN)
        assert start.utcoffset() == timedelta(hours=2)
    assert first[uid(summer)]["DTSTART"].params["TZID"] == "Europe/Berlin"
    assert second[uid(summer)].description.value == f"Status: booked\nBooking: {summer}"
    assert second[uid(summer)].location.value == "Berlin-1"
    assert second[uid(summer)].url.value == f"{PUBLIC}/"
    assert second[uid(gone)].status.value == "CANCELLED"
    assert second[uid(gone)].description.value.startswith("Status: cancelled\n")
    assert second[uid(missed)].status.value == "CONFIRMED"
    assert second[uid(missed)].description.value.startswith("Status: no-show\n")


async def test_an_ended_booking_shows_completed(lab: Any, clock: Clock) -> None:
    alice = await login(lab)
    ended = await booked(lab, "arm-1", TOMORROW, 10, ALICE_SRN)
    url = await open_feed_of(lab, alice)
    clock.advance(days=2)  # ended: "completed", whether the database says so yet or not
    _, second = events_by_uid(await (await fetch(lab, url)).read())
    event = second[f"booking-{ended}@rero.example.edu"]
    assert event.description.value.startswith("Status: completed\n")
    clock.advance(days=30)  # ended over 30 days ago: gone from the feed
    assert events_by_uid(await (await fetch(lab, url)).read()) == ({}, {})


async def test_revoking_and_replacing_a_feed(either: Any) -> None:
    alice = await login(either)
    first = await open_feed_of(either, alice)
    second = await open_feed_of(either, alice)
    assert first != second
    assert (await fetch(either, first)).status == 404  # one live feed per student
    assert (await fetch(either, second)).status == 200

    resp = await either.delete("/me/calendar-feed", headers=bearer(alice))
    assert (resp.status, await resp.json()) == (200, {"revoked": True})
    gone = await fetch(either, second)
    assert (gone.status, await gone.json()) == (404, NO_FEED)
    resp = await either.delete("/me/calendar-feed", headers=bearer(alice))
    assert (resp.status, await resp.json()) == (200, {"revoked": False})
    assert (await fetch(either, await open_feed_of(either, alice))).status == 200


async def test_each_students_feed_is_their_own(lab: Any) -> None:
    alice, bob = await login(lab), await login(lab, BOB)
    mine = await booked(lab, "arm-1", TOMORROW, 10, ALICE_SRN)
    theirs = await booked(lab, "arm-1", TOMORROW, 11, BOB_SRN)
    alice_url, bob_url = await open_feed_of(lab, alice), await open_feed_of(lab, bob)
    await lab.delete("/me/calendar-feed", headers=bearer(bob))  # Alice's stays
    first, _ = events_by_uid(await (await fetch(lab, alice_url)).read())
    assert set(first) == {f"booking-{mine}@rero.example.edu"}
    assert f"booking-{theirs}@rero.example.edu" not in first
    assert (await fetch(lab, bob_url)).status == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/me/calendar-feed"), ("DELETE", "/me/calendar-feed"),
     ("POST", "/admin/calendar-feeds/arm-1"), ("DELETE", "/admin/calendar-feeds/arm-1")],
)  # fmt: skip
async def test_a_session_is_required(lab: Any, method: str, path: str) -> None:
    for headers in ({}, bearer("not-a-session")):
        resp = await lab.request(method, path, headers=headers)
        assert (resp.status, await resp.json()) == (401, SESSION)


@pytest.mark.parametrize(
    "path",
    ["/calendar/unknown-token-0123456789abcdef.ics", "/calendar/x.ics", "/calendar/%FF%FE.ics",
     "/calendar/" + "a" * 300 + ".ics"],
)  # fmt: skip
async def test_an_unknown_token_is_404(lab: Any, path: str) -> None:
    resp = await lab.get(path)
    assert (resp.status, await resp.json()) == (404, NO_FEED)
    resp = await lab.get("/calendar/.ics")  # no token: no such route
    assert (resp.status, await resp.json()) == (404, {"detail": "Not Found"})


async def test_a_session_token_is_no_feed_token(lab: Any) -> None:
    alice = await login(lab)
    await open_feed_of(lab, alice)
    resp = await lab.get(f"/calendar/{alice}.ics")
    assert (resp.status, await resp.json()) == (404, NO_FEED)


# ---- a resource's feed, for admins ------------------------------------------------------


async def test_an_admins_feed_of_a_resource(either: Any) -> None:
    alice, bob = await login(either), await login(either, BOB)
    resp = await either.post("/admin/calendar-feeds/arm-1", headers=bearer(bob))
    assert (resp.status, await resp.json()) == (403, {"detail": "Staff access required"})
    resp = await either.delete("/admin/calendar-feeds/arm-1", headers=bearer(bob))
    assert (resp.status, await resp.json()) == (403, {"detail": "Staff access required"})
    for method in ("POST", "DELETE"):
        resp = await either.request(method, "/admin/calendar-feeds/nope", headers=bearer(alice))
        assert (resp.status, await resp.json()) == (404, {"detail": "Resource nope does not exist"})

    named = await booked(either, "arm-1", TOMORROW, 10, BOB_SRN, "Bob Iyer")
    plain = await booked(either, "arm-1", TOMORROW, 11, ALICE_SRN)
    await booked(either, "bench", "2026-12-01", 9, BOB_SRN)  # another resource
    resp = await either.post("/admin/calendar-feeds/arm-1", headers=bearer(alice))
    assert resp.status == 201
    body = await resp.json()
    assert set(body) == {"url", "resource", "created_at"}
    assert (body["resource"], body["created_at"]) == ("arm-1", NOW)
    assert FEED_URL.match(body["url"])

    ics = await (await fetch(either, body["url"])).read()
    assert str(icalendar.Calendar.from_ical(ics)["X-WR-CALNAME"]) == "Robot arm 1 (rero)"
    first, second = events_by_uid(ics)
    assert set(first) == {f"booking-{named}@rero.example.edu", f"booking-{plain}@rero.example.edu"}
    bob_event = second[f"booking-{named}@rero.example.edu"]
    assert bob_event.summary.value == f"Robot arm 1: Bob Iyer ({BOB_SRN})"
    assert bob_event.description.value == (
        f"Status: booked\nStudent: Bob Iyer ({BOB_SRN})\nLab: {LAUNCH}\nBooking: {named}"
    )
    assert second[f"booking-{plain}@rero.example.edu"].summary.value == f"Robot arm 1: {ALICE_SRN}"

    # A student's own feed and the resource's are separate: neither replaces the other.
    mine = await open_feed_of(either, alice)
    again = await either.post("/admin/calendar-feeds/arm-1", headers=bearer(alice))
    assert (await fetch(either, body["url"])).status == 404  # replaced
    assert (await fetch(either, (await again.json())["url"])).status == 200
    assert (await fetch(either, mine)).status == 200
    resp = await either.delete("/admin/calendar-feeds/arm-1", headers=bearer(alice))
    assert (resp.status, await resp.json()) == (200, {"revoked": True})
    assert (await fetch(either, (await again.json())["url"])).status == 404
    resp = await either.delete("/admin/calendar-feeds/arm-1", headers=bearer(alice))
    assert (resp.status, await resp.json()) == (200, {"revoked": False})
    assert (await fetch(either, mine)).status == 200


# ---- the URL without public_url ---------------------------------------------------------


async def test_without_public_url_the_link_is_the_requests(make: Any) -> None:
    client = await make(resources=(ARM,))
    alice = await login(client)
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "rero.example.org"}
    url = await open_feed_of(client, alice)
    assert re.fullmatch(rf"http://{client.host}:{client.port}/calendar/[\w-]{{43}}\.ics", url)
    ics = await (await client.get(url.split(str(client.port), 1)[1])).read()
    assert b"UID:feed-1@127.0.0.1\r\n" in ics  # a calendar, even with no booking
    # Forwarded headers from a peer that is no trusted proxy mean nothing.
    resp = await client.post("/me/calendar-feed", headers={**bearer(alice), **forwarded})
    assert (await resp.json())["url"].startswith(f"http://{client.host}:{client.port}/calendar/")


async def test_behind_a_trusted_proxy_the_link_is_the_forwarded_one(make: Any) -> None:
    client = await make(resources=(ARM,), trusted_proxies=("127.0.0.1",))
    alice = await login(client)
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "rero.example.org, inner"}
    resp = await client.post("/me/calendar-feed", headers={**bearer(alice), **forwarded})
    assert re.fullmatch(r"https://rero\.example\.org/calendar/[\w-]{43}\.ics",
                        (await resp.json())["url"])  # fmt: skip
    junk = {"X-Forwarded-Proto": "gopher"}
    resp = await client.post("/me/calendar-feed", headers={**bearer(alice), **junk})
    assert (await resp.json())["url"].startswith(f"http://{client.host}:{client.port}/calendar/")


# ---- secrets: hashed in the database, never in a log ------------------------------------


async def test_only_the_tokens_hash_is_stored(either: Any) -> None:
    alice = await login(either)
    url = await open_feed_of(either, alice)
    token = FEED_URL.match(url)[1]  # type: ignore[index]
    rows = await either.app[STORAGE].perform(execute("SELECT * FROM calendar_feeds", {}))
    assert len(rows) == 1
    assert hashlib.sha256(token.encode()).hexdigest() in rows[0]
    assert not [v for v in rows[0] if isinstance(v, str) and token in v]


async def test_the_token_never_reaches_a_log(
    settings: Any, clock: Clock, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Served as ``rero serve`` serves it (rero's access log), every line at DEBUG."""
    caplog.set_level(logging.DEBUG)
    app = create_app(replace(settings, public_url=PUBLIC), clock=clock, timer=clock.timer)
    async with serve(app) as port, aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
        alice = await login(http)
        url = await open_feed_of(http, alice)
        token = FEED_URL.match(url)[1]  # type: ignore[index]
        assert (await fetch(http, url)).status == 200
        assert (await fetch(http, url + "/x")).status == 404  # no route: still not logged

        async def broken(*_: Any) -> bytes:
            raise RuntimeError("boom")

        monkeypatch.setattr(app[FEEDS], "render", broken)
        assert (await fetch(http, url)).status == 500
        await http.delete("/me/calendar-feed", headers=bearer(alice))
        monkeypatch.undo()
        assert (await fetch(http, url)).status == 404
    paths = [getattr(r, "path", "") for r in caplog.records if r.name == "aiohttp.access"]
    assert paths.count("/calendar/***.ics") == 3  # the access log saw them, without it
    assert "/calendar/***/x" in paths
    assert "unhandled error on GET /calendar/***.ics" in caplog.text
    assert "calendar feed opened" in caplog.text
    assert token not in caplog.text
    assert all(token not in str(vars(r)) for r in caplog.records)


# ---- the store's programs, on both stores -----------------------------------------------


async def test_the_programs_on_either_store(database: dict[str, str], tmp_path: Path) -> None:
    path = str(tmp_path / "feeds.db")
    async with open_storage(path, database.get("database_url", ""), UPGRADE) as store:
        await programs_contract(store)


async def programs_contract(store: Storage) -> None:
    alice, arm = Owner(srn="A"), Owner(resource="arm-1")
    first = await store.perform(open_feed("h1", alice, "t1"))
    assert (first.owner, first.created_at) == (alice, "t1")
    await store.perform(open_feed("h2", arm, "t2"))
    assert await store.perform(read_feed("h1", "")) == (first, [])
    second = await store.perform(open_feed("h3", alice, "t3"))
    assert await store.perform(read_feed("h1", "")) is None  # replaced
    assert (await store.perform(read_feed("h3", "")))[0] == second  # type: ignore[index]
    assert (await store.perform(read_feed("h2", "")))[0].owner == arm  # type: ignore[index]
    # Two live feeds of one owner (two creations racing): only the newer answers.
    racer = "INSERT INTO calendar_feeds (token_hash, srn, created_at) VALUES ('h4', 'A', 't4')"
    await store.perform(execute(racer, {}))
    assert await store.perform(read_feed("h3", "")) is None
    assert await store.perform(read_feed("h4", "")) is not None
    assert await store.perform(revoke_feed(alice, "t5"))  # every live one of the owner
    assert await store.perform(read_feed("h4", "")) is None
    assert not await store.perform(revoke_feed(alice, "t6"))
    assert await store.perform(read_feed("h2", "")) is not None  # the resource's stays
    # Bookings: the owner's, by start, ending after the bound; never holds or lapsed ones.
    await store.perform(open_feed("h5", alice, "t7"))
    states = {7: ("A", "cancelled"), 5: ("A", "booked"), 6: ("B", "booked"), 8: ("A", "held"),
              9: ("A", "lapsed"), 4: ("A", "no_show")}  # fmt: skip
    for hour, (srn, state) in states.items():
        start, end = (f"2030-01-07T{h:02d}:00:00+00:00" for h in (hour, hour + 1))
        book = Book("arm-1", "2030-01-07", hour, start, end, srn, srn, "t", name=f"N{hour}")
        (write,) = (await store.apply([book])).writes
        change = "UPDATE bookings SET status = :s, updated_at = 'u' WHERE id = :id"
        await store.perform(execute(change, {"s": state, "id": write.bookings[0].id}))
    feed = await store.perform(read_feed("h5", "2030-01-07T05:00:00+00:00"))
    assert feed is not None
    shown = [(i.booking.slot_id, i.booking.status, i.booking.name, i.updated_at) for i in feed[1]]
    assert shown == [(5, "booked", "N5", "u"), (7, "cancelled", "N7", "u")]
    by_resource = await store.perform(read_feed("h2", ""))
    assert by_resource is not None
    assert [i.booking.slot_id for i in by_resource[1]] == [4, 5, 6, 7]


async def test_the_routes_are_documented(client: Any) -> None:
    paths = (await (await client.get("/openapi.json")).json())["paths"]
    ics = paths["/calendar/{token}.ics"]["get"]
    assert ics["responses"]["200"]["content"] == {"text/calendar": {"schema": {"type": "string"}}}
    assert set(ics["responses"]) == {"200", "404", "503"}
    assert "security" not in ics  # the token in the path is the credential
    mine = paths["/me/calendar-feed"]
    assert set(mine) == {"post", "delete"}
    made = mine["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    assert made == {"$ref": "#/components/schemas/FeedMade"}
    admin = paths["/admin/calendar-feeds/{resource}"]
    assert set(admin["post"]["responses"]) == {"201", "401", "403", "404", "503"}
    assert admin["delete"]["security"] == [{"bearer": []}, {}]
