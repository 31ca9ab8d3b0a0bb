"""Remembered record ids at ~8 bytes each: a 64-bit digest of the id, kept in an
integer-encoded Redis set (intset) chosen by shard, event-time day and the digest's low bits.

Why this shape:
- An intset stores each member as 8 bytes, with no per-member overhead, while it stays at
  most `set-max-intset-entries` long (deploy/redis: 4096). The low bits of the digest spread
  a shard-day's ids over `buckets` sets, so each stays below that for a stated fleet.
- The window is the record's own event-time day (UTC): a redelivered record carries the same
  event time, so it always meets its first delivery in the same set. A bucket expires whole
  when the de-duplication window after its day has passed.
- A record older than the window is refused (dead-lettered): its bucket may already be gone,
  and counting it again would be a double count nobody could see.

False duplicates: two different ids collide only when they share a bucket and all 64 bits.
For n ids in one bucket the expected number of colliding pairs is n(n-1)/2 / 2**64;
`false_duplicates_per_century` adds that up for a fleet (docs/operations.md gives figures).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from .record_scan import digest_bytes as _native

DAY = timedelta(days=1)


def digest(record_id: str) -> int:
    """A signed 64-bit integer (Redis stores it in an intset as 8 bytes): the BLAKE2b digest
    of 8 bytes, read big-endian. Computed by the compiled reader where it was built (ids of
    128 bytes at most: the contract's limit), else by hashlib; the two agree
    (tests/unit/test_record_scan.py)."""
    raw = record_id.encode()
    if _native is not None and 0 < len(raw) <= 128:
        return _native(raw)
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big", signed=True)


def window(event_time: datetime) -> str:
    """The event-time day (UTC) an id is remembered under, e.g. ``20261125``."""
    return window_at(event_time.timestamp())


def window_at(posix_s: float) -> str:
    """`window` of a POSIX timestamp: the hot path has the timestamp already, and naming the
    day from it is a division and a cache hit instead of a timezone conversion and a
    `strftime` (1.5 us, a fifth of parsing a record)."""
    return _day_name(int(posix_s // 86_400))


@lru_cache(maxsize=1024)
def _day_name(day: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day)).strftime("%Y%m%d")


INTSET_ENTRIES = 4096
"""`set-max-intset-entries` in the deployed configs (deploy/redis): above it a set becomes a
hash table at ~50 bytes an id."""


def buckets_for(records_per_day: int, shards: int) -> int:
    """`USAGE_MONITOR_DEDUPE_BUCKETS` for a fleet (docs/operations.md): the smallest power of
    two that keeps a shard's day at half `INTSET_ENTRIES` per set on average. The half is
    headroom: shards and buckets are not filled evenly, and one set past the limit turns
    into a hash table (at 2 048 ids a set on average, the fullest of 3 000 sets in the bench
    stayed well inside 4 096; at 3 300, some did not, and the day cost 18 B an id)."""
    need = -(-records_per_day // (shards * INTSET_ENTRIES // 2))  # ceiling
    return 1 << max(0, need - 1).bit_length()


def bucket(value: int, buckets: int) -> int:
    """Which of the window's sets holds `value` (`buckets` is a power of two)."""
    return value & (buckets - 1)


def expires_at(window_day: str, ttl_s: int) -> int:
    """When a window's sets may go (POSIX seconds): the end of its day plus the window."""
    start = datetime.strptime(window_day, "%Y%m%d").replace(tzinfo=UTC)
    return int((start + DAY).timestamp()) + ttl_s


def too_old(event_time: datetime, now: datetime, ttl_s: int) -> bool:
    """Whether `event_time`'s window may already be forgotten (the record is refused)."""
    return event_time < oldest_accepted(now, ttl_s)


def oldest_accepted(now: datetime, ttl_s: int) -> datetime:
    """The start of the oldest event-time day whose sets outlive `now` by at least a day (a
    redelivery of a record accepted now still meets its first delivery)."""
    horizon = now.astimezone(UTC) + DAY - timedelta(seconds=ttl_s)
    return datetime.combine(horizon.date(), datetime.min.time(), UTC)


def false_duplicates_per_century(records_per_day: float, shards: int, buckets: int) -> float:
    """Expected ids wrongly taken for duplicates in 100 years: each bucket holds a shard-day's
    ids spread over `buckets` sets; pairs within one set collide with probability 2**-64."""
    per_bucket = records_per_day / (shards * buckets)
    pairs_per_day = shards * buckets * per_bucket * (per_bucket - 1) / 2
    return pairs_per_day * 36_525 / 2**64
