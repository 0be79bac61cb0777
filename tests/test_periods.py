"""Period keys and boundaries (the pure module): time zones, ISO weeks, month and year ends."""
from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from app.periods import day_key, is_future, period_end, period_key, zone

UTC_ZONE = zone("UTC")


@pytest.mark.parametrize(("period", "day", "key"), [
    ("all", date(2026, 11, 23), "all"),
    ("daily", date(2026, 11, 23), "2026-11-23"),
    ("weekly", date(2026, 11, 23), "2026-W48"),  # a Monday
    ("weekly", date(2026, 11, 29), "2026-W48"),  # the Sunday of the same week
    ("weekly", date(2026, 11, 30), "2026-W49"),
    ("monthly", date(2026, 11, 23), "2026-11"),
    # ISO weeks at year ends: 2026-12-31 is a Thursday (week 53); 2027-01-01 is still in it;
    # 2024-12-30 (a Monday) starts week 1 of 2025.
    ("weekly", date(2026, 12, 31), "2026-W53"),
    ("weekly", date(2027, 1, 1), "2026-W53"),
    ("weekly", date(2024, 12, 30), "2025-W01"),
])
def test_day_keys(period: str, day: date, key: str) -> None:
    assert day_key(period, day) == key


def test_the_key_depends_on_the_time_zone() -> None:
    instant = datetime(2026, 11, 23, 23, 30, tzinfo=UTC)  # Monday 23:30 UTC
    assert period_key("daily", instant, UTC_ZONE) == "2026-11-23"
    assert period_key("daily", instant, zone("Europe/Paris")) == "2026-11-24"  # already Tuesday
    assert period_key("daily", instant, zone("America/Los_Angeles")) == "2026-11-23"
    sunday_night = datetime(2026, 11, 29, 23, 30, tzinfo=UTC)
    assert period_key("weekly", sunday_night, UTC_ZONE) == "2026-W48"
    assert period_key("weekly", sunday_night, zone("Asia/Tokyo")) == "2026-W49"  # Monday morning there
    month_end = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)
    assert period_key("monthly", month_end, zone("Pacific/Auckland")) == "2026-12"


def test_period_ends_are_the_next_local_midnight() -> None:
    instant = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday
    assert period_end("all", instant, UTC_ZONE) is None
    assert period_end("daily", instant, UTC_ZONE) == datetime(2026, 11, 26, tzinfo=UTC)
    assert period_end("weekly", instant, UTC_ZONE) == datetime(2026, 11, 30, tzinfo=UTC)
    assert period_end("monthly", instant, UTC_ZONE) == datetime(2026, 12, 1, tzinfo=UTC)
    assert period_end("monthly", datetime(2026, 12, 15, tzinfo=UTC), UTC_ZONE) == datetime(2027, 1, 1, tzinfo=UTC)
    # Paris is UTC+1 in November: its midnight is 23:00 UTC the day before.
    assert period_end("daily", instant, zone("Europe/Paris")) == datetime(2026, 11, 25, 23, 0, tzinfo=UTC)


def test_a_day_across_a_daylight_saving_change_keeps_its_local_midnights() -> None:
    paris = zone("Europe/Paris")
    # 2026-03-29: clocks go from 02:00 to 03:00 in Paris, a 23-hour day.
    start = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)  # local midnight of the 29th
    assert period_key("daily", start, paris) == "2026-03-29"
    assert period_end("daily", start, paris) == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)


def test_future_periods() -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert not is_future("daily", date(2026, 11, 25), now, UTC_ZONE)
    assert is_future("daily", date(2026, 11, 26), now, UTC_ZONE)
    assert not is_future("weekly", date(2026, 11, 29), now, UTC_ZONE)  # later, but the same week
    assert is_future("weekly", date(2026, 11, 30), now, UTC_ZONE)
    assert not is_future("all", date(2099, 1, 1), now, UTC_ZONE)
    assert not is_future("monthly", date(2026, 10, 1), now, UTC_ZONE)


def test_unknown_time_zones_are_refused() -> None:
    for name in ("Mars/Olympus", "../etc/passwd", ""):
        with pytest.raises(KeyError):
            zone(name)
