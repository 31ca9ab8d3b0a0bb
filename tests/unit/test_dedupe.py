"""Remembered record ids: the same record always lands in the same set, the window edges are
where they should be, and the false-duplicate rate of a carrier fleet stays negligible."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from usage_monitor.adapters import dedupe
from usage_monitor.adapters.dedupe import (
    bucket,
    digest,
    expires_at,
    false_duplicates_per_century,
    too_old,
    window,
)

DAY_S = 86_400


@given(st.text(min_size=1, max_size=128), st.integers(-(2**40), 2**40))
def test_a_redelivery_lands_in_the_same_set(record_id: str, offset_s: int) -> None:
    at = datetime(2026, 11, 25, tzinfo=UTC) + timedelta(seconds=offset_s % DAY_S)
    again = at.astimezone(timezone(timedelta(hours=8)))  # the same instant, another offset
    assert digest(record_id) == digest(record_id)
    assert -(2**63) <= digest(record_id) < 2**63
    assert window(at) == window(again)
    assert bucket(digest(record_id), 256) == bucket(digest(record_id), 256) < 256


def test_a_record_near_midnight_is_remembered_in_its_own_day() -> None:
    last = datetime(2026, 11, 25, 23, 59, 59, 999_000, tzinfo=UTC)
    assert window(last) == "20261125" and window(last + timedelta(milliseconds=1)) == "20261126"
    # Shanghai's 07:59 on the 26th is still the 25th in UTC: the window is the instant's.
    assert window(datetime(2026, 11, 26, 7, 59, tzinfo=timezone(timedelta(hours=8)))) == "20261125"


def test_the_dedupe_window_outlasts_every_record_it_accepts() -> None:
    ttl = 35 * DAY_S
    event = datetime(2026, 11, 25, 12, tzinfo=UTC)
    gone = datetime.fromtimestamp(expires_at(window(event), ttl), UTC)
    assert gone == datetime(2026, 11, 26, tzinfo=UTC) + timedelta(days=35)
    # Accepted while its set will live at least one more day (for a redelivery) ...
    assert not too_old(event, gone - timedelta(days=1, seconds=1), ttl)
    # ... refused from then on: a record the set may have forgotten is never counted again.
    assert too_old(event, gone - timedelta(days=1), ttl)
    # The lateness the service counts (a closed cycle, up to about a month) is well inside.
    assert not too_old(event, event + timedelta(days=33), ttl)


def test_false_duplicates_of_a_carrier_fleet_are_below_one_per_century() -> None:
    # 10 M cards, a record every 15 minutes: 960 M records a day, 12 shards, 4096 sets each.
    assert false_duplicates_per_century(960e6, 12, 4096) < 0.05
    # 1 M cards with far too few sets is still below one per century.
    assert false_duplicates_per_century(96e6, 12, 64) < 1


def test_buckets_keep_a_shard_day_at_half_the_intset_limit() -> None:
    """docs/operations.md's table: 1 M cards at one record per 15 minutes, 12 shards."""
    assert dedupe.buckets_for(96_000_000, 12) == 4096
    assert dedupe.buckets_for(960_000_000, 12) == 65_536
    assert dedupe.buckets_for(1, 12) == 1
    assert dedupe.buckets_for(12 * 2048, 12) == 1
    assert dedupe.buckets_for(12 * 2048 + 1, 12) == 2


@given(st.integers(1, 10**10), st.integers(1, 64))
def test_the_sized_buckets_hold_at_most_half_the_limit_on_average(
    records: int, shards: int
) -> None:
    buckets = dedupe.buckets_for(records, shards)
    assert buckets & (buckets - 1) == 0
    assert records / shards / buckets <= dedupe.INTSET_ENTRIES / 2
    assert buckets == 1 or records / shards / (buckets // 2) > dedupe.INTSET_ENTRIES / 2
