"""The Redis adapter and its Lua scripts, against a real Redis and a real Redis Cluster
(every test runs on both: each script call must stay within one hash slot)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

import pytest
from redis.crc import key_slot

from simwatch_runtime.redis_client import AnyRedis
from usage_monitor.adapters.keys import Keys, shard_of
from usage_monitor.adapters.redis_store import RedisStore
from usage_monitor.domain.card import CardState
from usage_monitor.ports import (
    CONFLICT,
    DUPLICATE_EVENT,
    CommitRequest,
    IngestRow,
    Snapshot,
    new_token,
)

pytestmark = pytest.mark.integration

A = "89860412345678901234"
B = "8986041234567890123X"
NOV = date(2026, 11, 1)


@pytest.fixture
def store(any_redis: AnyRedis, names: dict[str, str]) -> RedisStore:
    return RedisStore(
        any_redis, Keys(names["USAGE_MONITOR_REDIS_PREFIX"], 1), record_ttl_s=3600, event_ttl_s=3600
    )


async def commit(store: RedisStore, snap: Snapshot, state: CardState, **kw: Any) -> int:
    return await store.commit(CommitRequest(snap, state, **kw))


def row(rid: str, n: int, iccid: str = A, calendar: str = "", cycle: date = NOV) -> IngestRow:
    return IngestRow(rid, iccid, calendar, cycle, n)


async def test_shard_is_kafkas_partition_of_the_key() -> None:
    # Java's DefaultPartitioner: murmur2(key) & 0x7fffffff % partitions.
    assert shard_of(A, 1) == 0
    assert {shard_of(f"898604{i:014d}", 12) for i in range(500)} == set(range(12))


async def test_each_record_counts_once_within_and_across_batches(store: RedisStore) -> None:
    first = await store.ingest(0, [row("r1", 100), row("r2", 50), row("r1", 100), row("r3", 7, B)])
    # No profiles yet: the three counted records are "unknown card", not "applied".
    assert (first.applied, first.duplicates, first.unknown, first.late) == (0, 1, 3, 0)
    assert sorted(first.due) == [(A, NOV, 150), (B, NOV, 7)]  # no wake level yet: evaluate
    again = await store.ingest(0, [row("r2", 50), row("r3", 7, B), row("r4", 1)])
    assert (again.unknown, again.duplicates) == (1, 2)
    snaps = await store.load([A, B])
    assert snaps[A].usage == {NOV: 151} and snaps[B].usage == {NOV: 7}


async def test_wake_level_decides_which_cards_come_back(store: RedisStore) -> None:
    await store.ingest(0, [row("r1", 10)])
    snap = (await store.load([A]))[A]
    version = await commit(store, snap, CardState(A), calendar="", wakes={NOV: 100}, messages=[])
    assert version == 1
    assert (await store.ingest(0, [row("r2", 10)])).due == []
    assert (await store.ingest(0, [row("r3", 80)])).due == [(A, NOV, 100)]
    snap = (await store.load([A]))[A]
    await commit(store, snap, CardState(A), calendar="", wakes={NOV: -1}, messages=[])
    assert (await store.ingest(0, [row("r4", 10**6)])).due == []


async def test_cards_with_their_own_calendar_are_handed_back(store: RedisStore) -> None:
    snap = (await store.load([A]))[A]
    await commit(store, snap, CardState(A), calendar="UTC|15", wakes={}, messages=[])
    result = await store.ingest(0, [row("r1", 5, B), row("r2", 5), row("r3", 5)])
    assert result.unknown == 1
    assert result.recalendar == [(1, "UTC|15"), (2, "UTC|15")]
    retry = await store.ingest(0, [row("r2", 5, calendar="UTC|15", cycle=date(2026, 11, 15))])
    assert retry.unknown == 1  # A's state was committed without a profile
    assert (await store.load([A]))[A].usage == {date(2026, 11, 15): 5}


async def test_commit_is_optimistic_and_events_apply_once(store: RedisStore) -> None:
    snap = (await store.load([A]))[A]
    msg = [("t.commands", A.encode(), b'{"x":1}')]
    assert (
        await commit(store, snap, CardState(A), calendar="", wakes={}, messages=msg, event_id="e1")
        == 1
    )
    assert await commit(store, snap, CardState(A), calendar="", wakes={}, messages=msg) == CONFLICT
    fresh = (await store.load([A]))[A]
    assert (
        await commit(store, fresh, CardState(A), calendar="", wakes={}, messages=msg, event_id="e1")
        == DUPLICATE_EVENT
    )
    entries = await store.outbox_read(0, 10)
    assert [(e.topic, e.key, e.value) for e in entries] == msg


async def test_state_round_trips_and_old_cycles_are_dropped(store: RedisStore) -> None:
    await store.ingest(0, [row("r1", 5, cycle=date(2026, 9, 1)), row("r2", 6)])
    snap = (await store.load([A]))[A]
    state = replace(CardState(A), balance=42, cycle=NOV, fired=frozenset({"t80"}))
    await commit(
        store, snap, state, calendar="", wakes={}, messages=[], drop_cycles=[date(2026, 9, 1)]
    )
    again = (await store.load([A]))[A]
    assert again.state == state and again.usage == {NOV: 6} and again.version == 1


async def test_outbox_lock_is_released_only_when_empty(store: RedisStore) -> None:
    snap = (await store.load([A]))[A]
    await commit(store, snap, CardState(A), calendar="", wakes={}, messages=[("t", b"k", b"v")])
    token = new_token()
    assert await store.outbox_take(0, token, 5000)
    assert not await store.outbox_take(0, new_token(), 5000)
    assert await store.outbox_release(0, token, 5000) == 0  # an entry is waiting
    entries = await store.outbox_read(0, 10)
    await store.outbox_ack(0, [e.entry_id for e in entries])
    assert await store.outbox_release(0, token, 5000) == 1
    assert await store.outbox_release(0, token, 5000) == -1


async def test_scripts_survive_a_script_cache_flush(store: RedisStore) -> None:
    await store.ingest(0, [row("r1", 1)])
    await store.redis.script_flush()
    assert (await store.ingest(0, [row("r2", 1)])).unknown == 1
    await store.redis.script_flush()
    snap = (await store.load([A]))[A]
    assert await commit(store, snap, CardState(A), calendar="", wakes={}, messages=[]) == 1


async def test_every_key_of_a_shard_is_in_one_cluster_slot(
    any_redis: AnyRedis, names: dict[str, str]
) -> None:
    keys = Keys(names["USAGE_MONITOR_REDIS_PREFIX"], 4)
    redis = any_redis
    store = RedisStore(redis, keys, record_ttl_s=60, event_ttl_s=60)
    cards = [f"898604{i:014d}" for i in range(40)]
    for shard in range(4):
        mine = [c for c in cards if keys.shard(c) == shard]
        await store.ingest(shard, [row(f"r{c}", 1, c) for c in mine])
        snaps = await store.load(mine)
        for c in mine:
            await commit(
                store,
                snaps[c],
                CardState(c),
                calendar="",
                wakes={},
                messages=[("t", b"k", b"v")],
                event_id=f"e{c}",
            )
        written = [k async for k in redis.scan_iter(match=f"{keys.tag(shard)}*")]
        assert written
        assert {key_slot(k) for k in written} == {key_slot(keys.outbox(shard).encode())}


async def test_every_record_has_exactly_one_outcome(store: RedisStore) -> None:
    snap = (await store.load([A]))[A]
    await commit(store, snap, CardState(A), calendar="", wakes={}, messages=[])
    # Mark A as a card with a profile (commit.lua sets `k` when the state has one).
    await store.redis.hset(store.keys.card(A), "k", "1")
    oct_ = date(2026, 10, 1)
    late = IngestRow("late-1", A, "", oct_, 5, late=True)
    result = await store.ingest(0, [row("ok-1", 1), late, row("ok-1", 1), row("new", 2, B)])
    assert (result.applied, result.late, result.duplicates, result.unknown) == (1, 1, 1, 1)
    assert (await store.load([A]))[A].usage == {NOV: 1, oct_: 5}
