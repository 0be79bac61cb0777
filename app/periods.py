"""Period keys and boundaries: which period contains an instant in a time zone, and when it ends.

Pure functions over an injectable clock. A period is a key, never a reset: `all`, a day
`2026-11-23`, an ISO week `2026-W48` (weeks start on Monday) or a month `2026-11`. Keys of one
period kind sort in time order as strings. PostgreSQL computes the same keys in the write
statement (app/store/board_queries.py): `to_char` with `YYYY-MM-DD`, `IYYY-"W"IW`, `YYYY-MM`.
"""
from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

PERIODS = ("all", "daily", "weekly", "monthly")
ALL = "all"

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """Now, as an aware UTC datetime: the clock of a running service (tests inject their own)."""
    return datetime.now(UTC)


@functools.cache
def time_zones() -> frozenset[str]:
    """Every IANA time zone name this machine knows (read once: it scans the tz database), and UTC,
    which works without one (a slim image may ship no tz database: main's default still works)."""
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


@functools.cache
def zone(name: str) -> tzinfo:
    """The time zone of an IANA name; KeyError for a name the tz database does not have."""
    if name not in time_zones():
        raise KeyError(name)
    return UTC if name == "UTC" else ZoneInfo(name)


def day_key(period: str, day: date) -> str:
    """The key of the `period` that contains the local calendar `day`."""
    if period == "daily":
        return day.isoformat()
    if period == "weekly":
        year, week, _ = day.isocalendar()
        return f"{year:04d}-W{week:02d}"
    if period == "monthly":
        return f"{day.year:04d}-{day.month:02d}"
    if period == ALL:
        return ALL
    raise ValueError(f"unknown period {period!r}")


def local_day(instant: datetime, tz: tzinfo) -> date:
    return instant.astimezone(tz).date()


def period_key(period: str, instant: datetime, tz: tzinfo) -> str:
    """The key of the `period` containing `instant` (aware) in time zone `tz`."""
    return day_key(period, local_day(instant, tz))


def first_day(period: str, day: date) -> date:
    """The first local day of the `period` that contains `day`."""
    if period == "weekly":
        return day - timedelta(days=day.weekday())
    if period == "monthly":
        return day.replace(day=1)
    return day


def next_first_day(period: str, day: date) -> date:
    """The first local day of the period after the one that contains `day`."""
    start = first_day(period, day)
    if period == "daily":
        return start + timedelta(days=1)
    if period == "weekly":
        return start + timedelta(days=7)
    return date(start.year + start.month // 12, start.month % 12 + 1, 1)


def period_end(period: str, instant: datetime, tz: tzinfo) -> datetime | None:
    """When the `period` containing `instant` ends (the next one's first local midnight, as UTC);
    None for `all`, which never ends."""
    if period == ALL:
        return None
    following = next_first_day(period, local_day(instant, tz))
    # Local midnight as the zone defines it (fold=0 for a repeated hour, shifted past a gap).
    return datetime.combine(following, time(0), tzinfo=tz).astimezone(UTC)


def is_future(period: str, day: date, now: datetime, tz: tzinfo) -> bool:
    """Whether the period containing the local `day` starts after the one containing `now`."""
    return day_key(period, day) > period_key(period, now, tz)


# How long a pair's read model outlives its period: the period that just ended stays fast for a
# while; the database keeps every period for good.
RETENTION = timedelta(days=2)
# A key's period ends at local midnight somewhere between UTC-12 and UTC+14: its read model's
# expiry is counted from the latest of those, so it needs no time zone.
_LATEST_ZONE = timedelta(hours=12)


def key_first_day(key: str) -> date:
    """The first day of the period a daily (2026-11-23), weekly (2026-W48) or monthly (2026-11) key names."""
    if "-W" in key:
        year, week = key.split("-W")
        return date.fromisocalendar(int(year), int(week), 1)
    if key.count("-") == 1:
        return date.fromisoformat(key + "-01")
    return date.fromisoformat(key)


def key_expiry(key: str, now: datetime) -> tuple[float | None, int | None]:
    """When the read model of a period key expires (epoch seconds) and how long from `now` that is
    (at least a second); (None, None) for `all`, which never expires."""
    if key == ALL:
        return None, None
    period = "weekly" if "-W" in key else "monthly" if key.count("-") == 1 else "daily"
    end = datetime.combine(next_first_day(period, key_first_day(key)), time(0), tzinfo=UTC)
    expires = end + _LATEST_ZONE + RETENTION
    return expires.timestamp(), max(int((expires - now).total_seconds()), 1)
