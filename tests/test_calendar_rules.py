"""The calendar's rules of time, without a server: slots on a date (across daylight
saving), the booking window, closed days; and the resources' settings."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from rero.calendar import Resource, parse_clock
from rero.resources import build_lab
from rero.settings import Settings, SettingsError, load_settings

BERLIN = ZoneInfo("Europe/Berlin")


def resource(**kw: object) -> Resource:
    base: dict[str, object] = {"id": "r", "name": "R", "site": "", "zone": BERLIN,
                               "opens": 0, "closes": 24 * 60}  # fmt: skip
    return Resource(**{**base, **kw})  # type: ignore[arg-type]


def hours(r: Resource, day: date) -> list[tuple[int, str, str]]:
    return [(s.id, s.start.isoformat(), s.end.isoformat()) for s in r.slots_on(day)]


def test_slot_ids_are_start_minutes_over_the_slot_length() -> None:
    r = resource(zone=ZoneInfo("Asia/Kolkata"), opens=9 * 60, closes=11 * 60, slot_minutes=30)
    assert [s.id for s in r.slots_on(date(2026, 11, 25))] == [18, 19, 20, 21]
    assert hours(r, date(2026, 11, 25))[0] == (
        18, "2026-11-25T09:00:00+05:30", "2026-11-25T09:30:00+05:30",
    )  # fmt: skip


def test_a_skipped_hour_is_omitted_and_a_repeated_one_exists_once() -> None:
    r = resource(opens=60, closes=4 * 60)
    spring = hours(r, date(2026, 3, 29))  # 02:00 -> 03:00 in Berlin
    assert [s[0] for s in spring] == [1, 3]
    assert spring[0] == (1, "2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00")
    autumn = hours(r, date(2026, 10, 25))  # 03:00 -> 02:00: 02:00-03:00 happens twice
    assert [s[0] for s in autumn] == [1, 2, 3]
    assert autumn[1] == (2, "2026-10-25T02:00:00+02:00", "2026-10-25T03:00:00+01:00")


def test_the_window() -> None:
    r = resource(window_days=7, window_opens_at=parse_clock("08:00"))
    before = r.window(datetime(2026, 11, 24, 6, 59, tzinfo=timezone.utc))  # 07:59 Berlin
    assert (before.first_date, before.last_date) == (date(2026, 11, 24), date(2026, 11, 30))
    assert before.next_opens_at == datetime(2026, 11, 24, 7, 0, tzinfo=timezone.utc)
    after = r.window(datetime(2026, 11, 24, 7, 0, tzinfo=timezone.utc))
    assert after.last_date == date(2026, 12, 1)
    assert r.opens_at(date(2026, 12, 1)) == datetime(2026, 11, 24, 7, 0, tzinfo=timezone.utc)


def test_a_window_opening_in_a_skipped_hour_opens_when_the_gap_ends() -> None:
    r = resource(window_days=1, window_opens_at=parse_clock("02:30"))
    assert r.opens_at(date(2026, 3, 30)) == datetime(2026, 3, 29, 1, 0, tzinfo=timezone.utc)


def test_closed_days() -> None:
    r = resource(closed_weekdays=frozenset({6}), holidays=frozenset({date(2026, 12, 25)}))
    assert r.closure(date(2026, 11, 29)) == "closed on Sundays"
    assert r.closure(date(2026, 12, 25)) == "holiday"
    assert r.closure(date(2026, 11, 30)) is None


def test_next_occurrence() -> None:
    r = resource(zone=ZoneInfo("Asia/Kolkata"), opens=3 * 60, closes=15 * 60)
    now = datetime(2026, 11, 24, 3, 0, tzinfo=timezone.utc)  # 08:30 in Kolkata
    assert r.next_occurrence(8, now).start.date() == date(2026, 11, 24)  # type: ignore[union-attr]
    assert r.next_occurrence(7, now).start.date() == date(2026, 11, 25)  # type: ignore[union-attr]


# ---- settings -------------------------------------------------------------------------------


def profile(tmp_path: Path, text: str) -> str:
    path = tmp_path / "p.toml"
    path.write_text(text)
    return str(path)


def test_without_resources_there_is_the_original_lab() -> None:
    lab = build_lab(Settings(first_hour=8, last_hour=10, max_bookings_per_user=2))
    assert list(lab.resources) == ["lab"]
    assert (lab.default.id, list(lab.default.slot_ids), lab.default.hm) == (
        "lab", [8, 9], ("08:00", "10:00"),
    )  # fmt: skip
    assert lab.quotas.upcoming == 2  # max_bookings_per_user is max_upcoming_bookings


def test_resources_from_a_profile(tmp_path: Path) -> None:
    settings = load_settings(
        profile(tmp_path, '[[resources]]\nid = "a"\n[[resources]]\nid = "b"\ndefault = true\n'),
        environ={},
    )
    lab = build_lab(settings)
    assert (list(lab.resources), lab.default.id) == (["a", "b"], "b")
    assert lab.resources["a"].zone == ZoneInfo("Asia/Kolkata")


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ('id = "A"', "Must be 1-32 of a-z, 0-9, -."),
        ('id = "a"\nopens = "03:30"', "opens (03:30) and closes - opens must be multiples"),
        ('id = "a"\nslot_minutes = 50', "opens (03:00) and closes - opens must be multiples"),
        ('id = "a"\ncloses = "02:00"', "must be after opens (03:00)"),
        ('id = "a"\nopens = "25:00"', "'25:00' is not a time of day."),
        ('id = "a"\nclosed_weekdays = ["sunday"]', "Must be one of: mon, tue"),
        ('id = "a"\ntimezone = "Mars/Olympus"', "Unknown time zone."),
        ('id = "a"\ncolour = "red"', "Unknown field."),
    ],
)
def test_a_bad_resource_stops_the_server_with_one_line(
    tmp_path: Path, table: str, error: str
) -> None:
    with pytest.raises(SettingsError) as e:
        load_settings(profile(tmp_path, f"[[resources]]\n{table}\n"), environ={})
    line = str(e.value)
    assert "\n" not in line
    assert line.startswith("invalid setting resources=")
    assert error in line


def test_resource_ids_are_unique_and_one_is_default(tmp_path: Path) -> None:
    twice = '[[resources]]\nid = "a"\n[[resources]]\nid = "a"\n'
    with pytest.raises(SettingsError, match="resource id 'a' is used twice"):
        load_settings(profile(tmp_path, twice), environ={})
    two = '[[resources]]\nid = "a"\ndefault = true\n[[resources]]\nid = "b"\ndefault = true\n'
    with pytest.raises(SettingsError, match="at most one resource may say default = true"):
        load_settings(profile(tmp_path, two), environ={})
