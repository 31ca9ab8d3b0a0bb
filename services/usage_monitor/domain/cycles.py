"""Billing cycles: a cycle is named by the local date it starts on, in the card's timezone."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """ZoneInfo objects are cached by the stdlib too; this avoids the key lookup per record."""
    return ZoneInfo(name)


def cycle_of(instant: datetime, tz: str, cycle_day: int = 1) -> date:
    """The start date of the billing cycle containing `instant` (aware) for a card in `tz`."""
    local = instant.astimezone(zone(tz))
    if local.day >= cycle_day:
        return date(local.year, local.month, cycle_day)
    year, month = (local.year, local.month - 1) if local.month > 1 else (local.year - 1, 12)
    return date(year, month, cycle_day)


def next_cycle(cycle: date) -> date:
    """The start date of the cycle after `cycle` (same day of month; cycle_day is at most 28)."""
    year, month = (cycle.year, cycle.month + 1) if cycle.month < 12 else (cycle.year + 1, 1)
    return date(year, month, cycle.day)


@lru_cache(maxsize=4096)
def cycle_start(cycle: date, tz: str) -> datetime:
    """The aware instant at which `cycle` begins: local midnight of its first day, or, where
    a DST change skips midnight (America/Havana, America/Santiago), the first instant that
    exists. Returned as a real local time, so wall-clock arithmetic from it (a bill due 15
    days later, a warning 3 days before) starts from the time the clock actually showed.
    Remembered: a fleet shares a few (cycle, zone) pairs, and every decision asks several
    times (datetimes are immutable, so sharing one is safe)."""
    z = zone(tz)
    return datetime.combine(cycle, time(0), tzinfo=z).astimezone(UTC).astimezone(z)


def previous_cycle(cycle: date) -> date:
    """The start date of the cycle before `cycle`."""
    year, month = (cycle.year, cycle.month - 1) if cycle.month > 1 else (cycle.year - 1, 12)
    return date(year, month, cycle.day)


def add_months(instant: datetime, months: int) -> datetime:
    """Same local day and time `months` later, clamped to the month's last day (Jan 31 + 1
    month = Feb 28/29), in the instant's own timezone."""
    total = instant.month - 1 + months
    year, month = instant.year + total // 12, total % 12 + 1
    day = min(instant.day, _days_in(year, month))
    return instant.replace(year=year, month=month, day=day)


def _days_in(year: int, month: int) -> int:
    nxt = date(year + month // 12, month % 12 + 1, 1)
    return (nxt - date(year, month, 1)).days


def days_left(until: datetime, now: datetime, tz: str) -> int:
    """Whole days from `now` to `until` as the card's wall clock counts them, rounded up
    (a DST change does not turn "10 days and an hour" into exactly 10)."""
    z = zone(tz)
    wall = until.astimezone(z).replace(tzinfo=None) - now.astimezone(z).replace(tzinfo=None)
    return -(-wall // timedelta(days=1))
