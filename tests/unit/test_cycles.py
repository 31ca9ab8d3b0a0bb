"""Billing cycles in the card's own timezone and cycle day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from usage_monitor.domain.cycles import cycle_of, cycle_start, next_cycle, previous_cycle


def test_month_start_in_shanghai_is_the_previous_utc_day() -> None:
    # 2026-11-30T16:00Z is 2026-12-01T00:00 in Asia/Shanghai: the December cycle.
    assert cycle_of(datetime(2026, 11, 30, 16, 0, tzinfo=UTC), "Asia/Shanghai") == date(2026, 12, 1)
    assert cycle_of(datetime(2026, 11, 30, 15, 59, 59, tzinfo=UTC), "Asia/Shanghai") == date(
        2026, 11, 1
    )


def test_cycle_day_28_and_year_end() -> None:
    assert cycle_of(datetime(2027, 1, 27, 12, tzinfo=UTC), "UTC", 28) == date(2026, 12, 28)
    assert cycle_of(datetime(2027, 1, 28, 0, tzinfo=UTC), "UTC", 28) == date(2027, 1, 28)
    assert next_cycle(date(2026, 12, 28)) == date(2027, 1, 28)
    assert previous_cycle(date(2027, 1, 28)) == date(2026, 12, 28)


def test_leap_day_belongs_to_february() -> None:
    assert cycle_of(datetime(2028, 2, 29, 12, tzinfo=UTC), "UTC") == date(2028, 2, 1)
    assert cycle_of(datetime(2028, 2, 29, 12, tzinfo=UTC), "UTC", 28) == date(2028, 2, 28)


def test_other_timezones() -> None:
    instant = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
    assert cycle_of(instant, "America/New_York") == date(2026, 10, 1)  # still Oct 31 there
    assert cycle_of(instant, "Europe/Berlin") == date(2026, 11, 1)


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    st.sampled_from(
        ["Asia/Shanghai", "UTC", "America/New_York", "Asia/Kolkata", "Pacific/Chatham"]
    ),
    st.integers(1, 28),
)
def test_an_instant_lies_within_its_cycle(instant: datetime, tz: str, day: int) -> None:
    cycle = cycle_of(instant, tz, day)
    assert cycle.day == day
    assert (
        cycle_start(cycle, tz) <= instant < cycle_start(next_cycle(cycle), tz) + timedelta(hours=1)
    )
    assert previous_cycle(next_cycle(cycle)) == cycle
