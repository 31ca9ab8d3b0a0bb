"""When a delivery may go out: retry backoff, Retry-After, quiet hours, per-number limits."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, time, timedelta
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo

from simwatch_contracts import QuietHours


def backoff(attempt: int, schedule: tuple[float, ...], rng: random.Random) -> float | None:
    """Seconds before attempt number `attempt + 1` (attempt counts from 1), jittered by
    ±20 %; None once the schedule is exhausted (give up)."""
    if attempt > len(schedule):
        return None
    base = schedule[attempt - 1]
    return base * rng.uniform(0.8, 1.2)


_DELTA_SECONDS = re.compile(r"[0-9]+")  # ASCII digits only: str.isdigit() takes "²"


def retry_after(header: str | None, now: datetime, cap_s: float) -> float | None:
    """A `Retry-After` header (delta-seconds or HTTP date) as seconds from `now`, capped;
    None when it is absent or unreadable (never raises: the header is the endpoint's)."""
    if not header:
        return None
    value = header.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return min(float(value), cap_s)  # float() of a huge number is inf: the cap
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):  # malformed date: our backoff
        return None
    if when.tzinfo is None:  # "-0000" (or no zone) means UTC in RFC 5322; HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - now).total_seconds()), cap_s)


def next_delay(
    attempts: int,
    header: str | None,
    now: datetime,
    schedule: tuple[float, ...],
    rng: random.Random,
    *,
    floor_s: float,
    cap_s: float,
) -> float | None:
    """Seconds before the next attempt after `attempts` failed ones; None to give up.
    Retry-After replaces the backoff delay but not the number of attempts, and is floored
    at `floor_s` so that `Retry-After: 0` cannot make a hot loop."""
    delay = backoff(attempts, schedule, rng)
    if delay is None:
        return None
    hinted = retry_after(header, now, cap_s)
    return delay if hinted is None else max(hinted, floor_s)


def quiet_until(quiet: QuietHours | None, now: datetime) -> datetime | None:
    """The end of the customer's quiet hours if `now` falls inside them, else None.
    Windows may span midnight (22:00-08:00)."""
    if quiet is None:
        return None
    local = now.astimezone(ZoneInfo(quiet.timezone))
    start, end = _hhmm(quiet.start), _hhmm(quiet.end)
    t = local.time()
    inside = start <= t < end if start < end else (t >= start or t < end)
    if not inside or start == end:
        return None
    end_at = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if end_at <= local:
        end_at += timedelta(days=1)
    return end_at


def _hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))
