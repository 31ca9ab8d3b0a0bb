"""The `CardStore` contract, one suite over every implementation: the in-memory store, the
Redis store on a single Redis, and on a Redis Cluster (each script call must stay within one
hash slot). The in-memory store is proven to answer as the Lua scripts do, case by case;
the last tests are about Redis alone (script cache, cluster slots)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import RedisCluster
from redis.crc import key_slot

from simwatch_runtime.redis_client import AnyRedis, connect
from usage_monitor.adapters import dedupe
from usage_monitor.adapters.keys import Keys, shard_of
from usage_monitor.adapters.memory_store import MemoryStore
from usage_monitor.adapters.redis_store import RedisStore
from usage_monitor.domain.card import CardState
from usage_monitor.domain.lifecycle import apply_event
from usage_monitor.domain.policy import DEFAULT_POLICY
from usage_monitor.ports import (
    CONFLICT,
    DUPLICATE_EVENT,
    CardStore,
    CommitRequest,
    CustomerDebt,
    IngestRow,
    Snapshot,
    new_token,
)

from ..conftest import REDIS_URL
from ..unit.factories import NOW, upsert

pytestmark = pytest.mark.integration

A = "89860412345678901234"
B = "8986041234567890123X"
NOV = date(2026, 11, 1)
OCT = date(2026, 10, 1)


@pytest.fixture(params=["memory", "single", "cluster"])
async def store(request: pytest.FixtureRequest, names: dict[str, str]) -> AsyncIterator[CardStore]:
    """The same test on each implementation of the port (one shard: every card in it)."""
    prefix = names["USAGE_MONITOR_REDIS_PREFIX"]
    keys = Keys(prefix, 1)
    if request.param == "memory":
        yield MemoryStore(keys)
        return
    cluster = request.param == "cluster"
    client = connect(request.getfixturevalue("redis_cluster").url if cluster else REDIS_URL)
    yield RedisStore(client, keys, record_ttl_s=3600, event_ttl_s=3600)
    for key in [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]:
        await client.delete(key)  # one by one: on a cluster they live in different slots
    await client.aclose()


@pytest.fixture
def redis_store(any_redis: AnyRedis, names: dict[str, str]) -> RedisStore:
    return RedisStore(
        any_redis, Keys(names["USAGE_MONITOR_REDIS_PREFIX"], 1), record_ttl_s=3600, event_ttl_s=3600
    )


async def commit(store: CardStore, snap: Snapshot, state: CardState, **kw: Any) -> int:
    return await store.commit(CommitRequest(snap, state, **kw))


async def put(store: CardStore, state: CardState, **kw: Any) -> int:
    """Commit `state` over whatever the card holds now."""
    snap = (await store.load([state.iccid]))[state.iccid]
    return await commit(store, snap, state, **kw)


TODAY = dedupe.window(datetime.now(UTC))  # ids are remembered under today's day (TTL ahead)


def row(rid: str, n: int, iccid: str = A, calendar: str = "", cycle: date = NOV) -> IngestRow:
    return IngestRow(rid, iccid, calendar, cycle, n, day=TODAY)


def profiled(iccid: str = A, **fields: Any) -> CardState:
    """A card with a profile, as `card.upserted` makes it."""
    return apply_event(
        CardState(iccid), upsert(iccid=iccid, **fields), {}, NOW, DEFAULT_POLICY
    ).state


async def test_shard_is_kafkas_partition_of_the_key() -> None:
    # Java's DefaultPartitioner: murmur2(key) & 0x7fffffff % partitions.
    assert shard_of(A, 1) == 0
    assert {shard_of(f"898604{i:014d}", 12) for i in range(500)} == set(range(12))


# --- ingest: de-duplication, outcomes, wake levels, calendars


async def test_each_record_counts_once_within_and_across_batches(store: CardStore) -> None:
    first = await store.ingest(0, [row("r1", 100), row("r2", 50), row("r1", 100), row("r3", 7, B)])
    # No profiles yet: the three counted records are "unknown card", not "applied".
    assert (first.applied, first.duplicates, first.unknown, first.late) == (0, 1, 3, 0)
    assert sorted(first.due) == [(A, NOV, 150), (B, NOV, 7)]  # no wake level yet: evaluate
    again = await store.ingest(0, [row("r2", 50), row("r3", 7, B), row("r4", 1)])
    assert (again.unknown, again.duplicates) == (1, 2)
    snaps = await store.load([A, B])
    assert snaps[A].usage == {NOV: 151} and snaps[B].usage == {NOV: 7}


async def test_due_lists_each_card_and_cycle_once_in_first_seen_order(store: CardStore) -> None:
    rows = [row("r1", 1, B), row("r2", 2), row("r3", 3, B, cycle=OCT), row("r4", 4, B)]
    result = await store.ingest(0, [*rows, row("r1", 1, B)])
    assert result.due == [(B, NOV, 5), (A, NOV, 2), (B, OCT, 3)]
    assert result.duplicates == 1


async def test_wake_level_decides_which_cards_come_back(store: CardStore) -> None:
    await store.ingest(0, [row("r1", 10)])
    assert await put(store, CardState(A), wakes={NOV: 100}) == 1
    assert (await store.ingest(0, [row("r2", 10)])).due == []
    assert (await store.ingest(0, [row("r3", 80)])).due == [(A, NOV, 100)]  # reached exactly
    await put(store, CardState(A), wakes={NOV: -1})  # -1: never again this cycle
    assert (await store.ingest(0, [row("r4", 10**6)])).due == []
    # A duplicate still reports its card when the level is reached.
    await put(store, CardState(A), wakes={NOV: 5})
    assert (await store.ingest(0, [row("r4", 10**6)])).due == [(A, NOV, 10**6 + 100)]


async def test_a_wake_level_of_zero_wakes_at_once(store: CardStore) -> None:
    await put(store, CardState(A), wakes={NOV: 0})
    assert (await store.ingest(0, [row("r1", 0)])).due == [(A, NOV, 0)]


async def test_a_wake_level_of_another_cycle_does_not_hold_back(store: CardStore) -> None:
    await put(store, CardState(A), wakes={OCT: 10**9})
    assert (await store.ingest(0, [row("r1", 1)])).due == [(A, NOV, 1)]


async def test_cards_with_their_own_calendar_are_handed_back(store: CardStore) -> None:
    await put(store, CardState(A), calendar="UTC|15")
    result = await store.ingest(0, [row("r1", 5, B), row("r2", 5), row("r3", 5)])
    assert result.unknown == 1
    assert result.recalendar == [(1, "UTC|15"), (2, "UTC|15")]
    retry = await store.ingest(0, [row("r2", 5, calendar="UTC|15", cycle=date(2026, 11, 15))])
    assert retry.unknown == 1  # A's state was committed without a profile
    assert (await store.load([A]))[A].usage == {date(2026, 11, 15): 5}


async def test_a_record_named_in_a_calendar_the_card_lacks_is_handed_back(
    store: CardStore,
) -> None:
    result = await store.ingest(0, [row("r1", 5, calendar="UTC|15")])
    assert result.recalendar == [(0, "")] and result.due == []
    assert (await store.load([A]))[A].usage == {}
    # Not claimed: sent again in the right calendar, it counts.
    assert (await store.ingest(0, [row("r1", 5)])).unknown == 1


async def test_every_record_has_exactly_one_outcome(store: CardStore) -> None:
    await put(store, profiled())
    late = IngestRow("late-1", A, "", OCT, 5, late=True, day=TODAY)
    result = await store.ingest(0, [row("ok-1", 1), late, row("ok-1", 1), row("new", 2, B)])
    assert (result.applied, result.late, result.duplicates, result.unknown) == (1, 1, 1, 1)
    assert (await store.load([A]))[A].usage == {NOV: 1, OCT: 5}


# --- load and commit: versions, state, calendar, outbox, due set, statistics


async def test_an_unknown_card_loads_blank_at_version_zero(store: CardStore) -> None:
    snaps = await store.load([A, A, B])
    assert list(snaps) == [A, B]
    assert snaps[A] == Snapshot(0, CardState(A), {}, "")


async def test_commit_is_optimistic_and_events_apply_once(store: CardStore) -> None:
    snap = (await store.load([A]))[A]
    msg = [("t.commands", A.encode(), b'{"x":1}')]
    assert await commit(store, snap, CardState(A), messages=msg, event_id="e1") == 1
    assert await commit(store, snap, CardState(A), messages=msg) == CONFLICT
    fresh = (await store.load([A]))[A]
    assert await commit(store, fresh, CardState(A), messages=msg, event_id="e1") == DUPLICATE_EVENT
    entries = await store.outbox_read(0, 10)
    assert [(e.topic, e.key, e.value) for e in entries] == msg


async def test_a_duplicate_event_writes_nothing(store: CardStore) -> None:
    assert await put(store, CardState(A), event_id="e1") == 1
    rich = replace(CardState(A), balance=7)
    later = datetime(2026, 12, 1, tzinfo=UTC)
    version = await put(
        store, rich, event_id="e1", messages=[("t", b"k", b"v")], due=later, suspended_delta=1
    )
    assert version == DUPLICATE_EVENT
    snap = (await store.load([A]))[A]
    assert (snap.version, snap.state) == (1, CardState(A))
    assert await store.outbox_read(0, 10) == []
    assert await store.due_cards(0, later, 10) == []
    assert await store.suspended_cards() == 0
    # An event of the same card with another id applies.
    assert await put(store, rich, event_id="e2") == 2


async def test_a_conflict_writes_nothing(store: CardStore) -> None:
    stale = (await store.load([A]))[A]
    await put(store, CardState(A))
    assert await commit(store, stale, profiled(), messages=[("t", b"k", b"v")]) == CONFLICT
    assert (await store.load([A]))[A].state == CardState(A)
    assert await store.outbox_read(0, 10) == []


async def test_commit_many_commits_each_card_on_its_own(store: CardStore) -> None:
    snaps = await store.load([A, B])
    await put(store, CardState(B))  # B moves on before the batch commits
    results = await store.commit_many(
        [CommitRequest(snaps[A], profiled(A)), CommitRequest(snaps[B], profiled(B))]
    )
    assert results == [1, CONFLICT]
    after = await store.load([A, B])
    assert after[A].state == profiled(A) and after[B].state == CardState(B)


async def test_state_round_trips_and_old_cycles_are_dropped(store: CardStore) -> None:
    await store.ingest(0, [row("r1", 5, cycle=date(2026, 9, 1)), row("r2", 6)])
    state = replace(CardState(A), balance=42, cycle=NOV, fired=frozenset({"t80"}))
    await put(store, state, wakes={date(2026, 9, 1): 3}, drop_cycles=[date(2026, 9, 1)])
    again = (await store.load([A]))[A]
    assert again.state == state and again.usage == {NOV: 6} and again.version == 1
    # The dropped cycle's wake level went with its counter: no level holds it back.
    assert (await store.ingest(0, [row("r3", 1, cycle=date(2026, 9, 1))])).due == [
        (A, date(2026, 9, 1), 1)
    ]


async def test_a_profile_and_its_calendar_round_trip(store: CardStore) -> None:
    state = profiled(cycle_day=15, timezone="UTC", balance=-30)
    assert await put(store, state, calendar="UTC|15") == 1
    snap = (await store.load([A]))[A]
    assert (snap.state, snap.calendar) == (state, "UTC|15")
    other = profiled(B)  # the same template (customer, plan, calendar) from another card
    await put(store, other)
    assert (await store.load([B]))[B].state == other
    await put(store, state, calendar="")  # back to the default calendar
    assert (await store.load([A]))[A].calendar == ""


async def test_the_due_set_orders_limits_and_forgets(store: CardStore) -> None:
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    cards = [f"898604{i:014d}" for i in range(5)]
    for i, card in enumerate(cards):
        await put(store, CardState(card), due=t0 + timedelta(seconds=10 - i))
    assert await store.due_cards(0, t0, 10) == []
    assert await store.due_cards(0, t0 + timedelta(seconds=7), 10) == cards[3:][::-1]
    assert await store.due_cards(0, t0 + timedelta(seconds=60), 2) == [cards[4], cards[3]]
    await put(store, CardState(cards[4]))  # due: never
    await put(store, CardState(cards[3]), due=t0 + timedelta(seconds=30))
    assert await store.due_cards(0, t0 + timedelta(seconds=9), 10) == [cards[2], cards[1]]


async def test_suspended_cards_follow_the_deltas(store: CardStore) -> None:
    assert await store.suspended_cards() == 0
    await put(store, CardState(A), suspended_delta=1)
    await put(store, CardState(B), suspended_delta=1)
    await put(store, CardState(A), suspended_delta=-1)
    await put(store, CardState(B))
    assert await store.suspended_cards() == 1


# --- the outbox and its drain lock


async def test_outbox_lock_is_released_only_when_empty(store: CardStore) -> None:
    await put(store, CardState(A), messages=[("t", b"k", b"v")])
    token = new_token()
    entries = await store.outbox_claim(0, token, 5000, 10)
    assert entries is not None and [(e.topic, e.key, e.value) for e in entries] == [
        ("t", b"k", b"v")
    ]
    assert await store.outbox_claim(0, new_token(), 5000, 10) is None  # held
    assert await store.outbox_settle(0, new_token(), 5000, [], 10) is None  # not the holder
    again = await store.outbox_settle(0, token, 5000, [], 10)  # nothing published: read on
    assert again == entries
    await put(store, CardState(B), messages=[("t", b"k2", b"v2")])
    rest = await store.outbox_settle(0, token, 5000, [e.entry_id for e in entries], 10)
    assert rest is not None and [e.key for e in rest] == [b"k2"]
    assert await store.outbox_settle(0, token, 5000, [e.entry_id for e in rest], 10) == []
    assert await store.outbox_read(0, 10) == []
    assert await store.outbox_settle(0, token, 5000, [], 10) is None  # released
    assert await store.outbox_claim(0, new_token(), 5000, 10) == []  # free again, and empty


async def test_an_expired_lock_can_be_taken_by_another(store: CardStore) -> None:
    await put(store, CardState(A), messages=[("t", b"k", b"v")])
    token = new_token()
    entries = await store.outbox_claim(0, token, 50, 10)
    assert entries
    await asyncio.sleep(0.2)
    assert await store.outbox_claim(0, new_token(), 5000, 10) == entries
    # The first holder's settle: lost, though what it published is deleted all the same.
    assert await store.outbox_settle(0, token, 50, [e.entry_id for e in entries], 10) is None
    assert await store.outbox_read(0, 10) == []


async def test_outbox_reads_in_order_and_acks_what_was_published(store: CardStore) -> None:
    msgs = [("t", f"k{i}".encode(), f"v{i}".encode()) for i in range(6)]
    await put(store, CardState(A), messages=msgs[:3])
    await put(store, CardState(B), messages=msgs[3:5])
    await put(store, CardState(A), messages=msgs[5:])
    assert await store.outbox_depth([0]) == {0: 3}  # an entry per commit
    token = new_token()
    first = await store.outbox_claim(0, token, 5000, 2)  # two commits' messages, in order
    assert first is not None
    assert [(e.topic, e.key, e.value) for e in first] == msgs[:5]
    assert len({e.entry_id for e in first[:3]}) == 1 and first[3].entry_id != first[0].entry_id
    # The first commit's entry, its id repeated once per message: removed once.
    rest = await store.outbox_settle(0, token, 5000, [e.entry_id for e in first[:3]], 10)
    assert rest is not None
    assert [(e.topic, e.key, e.value) for e in rest] == msgs[3:]
    assert await store.outbox_depth([0]) == {0: 2}


async def test_an_outbox_entry_of_one_message_as_written_before_reads_the_same(
    store: CardStore,
) -> None:
    """Entries written before a commit's messages shared one entry (one XADD per message)
    are still read, in order, after an upgrade."""
    if not isinstance(store, RedisStore):
        pytest.skip("the stream's layout is Redis's")
    outbox = store.keys.outbox(0)
    await store.redis.xadd(outbox, {"t": "t", "k": b"k0", "v": b"v0"})
    await put(store, CardState(A), messages=[("t", b"k1", b"v1"), ("t", b"k2", b"v2")])
    read = await store.outbox_read(0, 10)
    assert [(e.topic, e.key, e.value) for e in read] == [
        ("t", b"k0", b"v0"),
        ("t", b"k1", b"v1"),
        ("t", b"k2", b"v2"),
    ]


async def test_a_decision_with_thousands_of_messages_commits_them_all(store: CardStore) -> None:
    """Past what one XADD can take from Lua (unpack: ~8000 values), a decision's messages go
    one per entry: never a committed decision without its messages."""
    msgs = [("t", f"k{i}".encode(), b"v") for i in range(1400)]
    assert await put(store, CardState(A), messages=msgs) == 1
    read = await store.outbox_read(0, 5000)
    assert [(e.topic, e.key, e.value) for e in read] == msgs


async def test_one_entry_per_message_while_an_upgrade_rolls(names: dict[str, str]) -> None:
    """`USAGE_MONITOR_OUTBOX_ENTRY_PER_DECISION=false`: each message its own entry (t, k, v),
    as workers before 2026-11-29 read them."""
    prefix = names["USAGE_MONITOR_REDIS_PREFIX"]
    redis = connect(REDIS_URL)
    store = RedisStore(redis, Keys(prefix, 1), record_ttl_s=60, event_ttl_s=60)
    store.entry_per_decision = False
    try:
        msgs = [("t", f"k{i}".encode(), f"v{i}".encode()) for i in range(3)]
        await put(store, CardState(A), messages=msgs)
        assert await store.outbox_depth([0]) == {0: 3}
        raw = await redis.execute_command("XRANGE", store.keys.outbox(0), "-", "+")
        assert [fields for _, fields in raw] == [[b"t", b"t", b"k", k, b"v", v] for _, k, v in msgs]
        read = await store.outbox_read(0, 10)
        assert [(e.topic, e.key, e.value) for e in read] == msgs
    finally:
        for key in [k async for k in redis.scan_iter(match=f"{prefix}:*", count=1000)]:
            await redis.delete(key)
        await redis.aclose()


# --- the customers' blacklists


async def test_customer_entries_are_idempotent(store: CardStore) -> None:
    assert await store.customer_debt("c1") == CustomerDebt(0, ())
    assert await store.customer_view("c1") == {}
    debt = await store.customer_apply("c1", [{"i": A, "v": 3, "owed": 100}, {"hold": B}])
    assert debt == CustomerDebt(100, (B,))
    # A late duplicate of an older version changes nothing; a newer one replaces it.
    assert (await store.customer_apply("c1", [{"i": A, "v": 2, "owed": 999}])).debt == 100
    assert (await store.customer_apply("c1", [{"i": A, "v": 4, "owed": 120}])).debt == 120
    # A payment counts once per event id, whatever amount a duplicate carries.
    await store.customer_apply("c1", [{"pay": "e1", "amount": 20}])
    assert (await store.customer_apply("c1", [{"pay": "e1", "amount": 50}])).debt == 100
    assert await store.customer_view("c1") == {
        f"c:{A}".encode(): b"4:120",
        f"h:{B}".encode(): b"1",
        b"p:e1": b"20",
    }
    assert await store.customer_apply("c1", [{"release": B}, {"release": B}]) == CustomerDebt(100)


async def test_customer_debts_reads_many_customers_at_once(store: CardStore) -> None:
    await store.customer_apply("c1", [{"i": A, "v": 1, "owed": 70}, {"hold": B}])
    await store.customer_apply("c2", [{"i": B, "v": 1, "owed": 5}])
    # Customers in different slots on a cluster, one unknown, one named twice.
    debts = await store.customer_debts(["c2", "nobody", "c1", "c2"])
    assert debts == {
        "c1": CustomerDebt(70, (B,)),
        "c2": CustomerDebt(5, ()),
        "nobody": CustomerDebt(0, ()),
    }
    assert await store.customer_debts([]) == {}
    assert await store.customer_view("nobody") == {}  # reading wrote nothing


async def test_customer_debt_never_goes_below_zero(store: CardStore) -> None:
    entries: list[object] = [
        {"i": A, "v": 1, "owed": 30},
        {"pay": "e1", "amount": 50},
        {"hold": B},
        {"hold": A},
    ]
    debt = await store.customer_apply("c2", entries)
    assert debt.debt == 0 and sorted(debt.held) == sorted([A, B])
    assert (await store.customer_apply("c2", [{"i": B, "v": 1, "owed": 70}])).debt == 50
    assert await store.customer_debt("other") == CustomerDebt(0, ())


# --- Redis alone


async def test_scripts_survive_a_script_cache_flush(redis_store: RedisStore) -> None:
    store = redis_store
    await store.ingest(0, [row("r1", 1)])
    await store.redis.script_flush()
    assert (await store.ingest(0, [row("r2", 1)])).unknown == 1
    await store.redis.script_flush()
    assert await put(store, CardState(A)) == 1


async def test_a_pool_is_reported_touched_by_its_members_duplicates_too(store: CardStore) -> None:
    """A batch run again after a partial failure (its other shards' scripts had run) finds
    its records counted: their pools must still be settled, so they are reported touched,
    and nothing is added to them twice."""
    plan = {
        "plan_id": "p1",
        "quota_bytes": None,
        "monthly_fee": 0,
        "auto_suspend": True,
        "pool_id": "P1",
    }
    assert await put(store, profiled(A, plan=plan)) == 1
    first = await store.ingest(0, [row("r1", 5)])
    assert (first.applied, first.duplicates, first.pools) == (1, 0, [("P1", NOV)])
    again = await store.ingest(0, [row("r1", 5), row("r1", 5)])
    assert (again.applied, again.duplicates, again.pools) == (0, 2, [("P1", NOV)])
    mixed = await store.ingest(0, [row("r1", 5), row("r2", 7)])
    assert (mixed.applied, mixed.duplicates, mixed.pools) == (1, 1, [("P1", NOV)])
    assert await store.pool_used([("P1", NOV)]) == {("P1", NOV): 12}


async def test_ingest_many_reports_new_records_and_duplicates(store: CardStore) -> None:
    older = [row(f"r{i}", 1, f"898604{i:014d}") for i in range(30)]
    newer = [row(f"r{i}", 1, f"898604{i:014d}") for i in range(30, 60)]
    first = await store.ingest_many({0: older})
    assert (first[0].unknown, first[0].duplicates) == (30, 0)
    again = await store.ingest_many({0: [*older, *newer]})
    assert (again[0].unknown, again[0].duplicates) == (30, 30)


async def test_a_node_that_lost_the_script_runs_again_only_its_own_calls(
    any_redis: AnyRedis, names: dict[str, str]
) -> None:
    """After a failover or restart, one node may lack the script while the others ran their
    calls of the same pipeline: those must not run twice, or ingest.lua would report their
    records as duplicates (their outcomes wrong), though each is counted once."""
    keys = Keys(names["USAGE_MONITOR_REDIS_PREFIX"], 12)
    store = RedisStore(any_redis, keys, record_ttl_s=3600, event_ttl_s=3600)
    cards = [f"898604{i:014d}" for i in range(120)]
    by_shard: dict[int, list[str]] = {}
    for c in cards:
        by_shard.setdefault(keys.shard(c), []).append(c)
    assert len(by_shard) == 12
    await store.ingest_many({s: [row(f"a{c}", 1, c) for c in mine] for s, mine in by_shard.items()})
    if isinstance(any_redis, RedisCluster):
        lost = any_redis.get_primaries()[0]
        await any_redis.execute_command("SCRIPT FLUSH", target_nodes=lost)
        on_lost = [s for s in by_shard if any_redis.get_node_from_key(keys.outbox(s)) == lost]
        assert 0 < len(on_lost) < 12  # the pipeline spans nodes with and without the script
    else:
        await any_redis.script_flush()
    second = {s: [row(f"b{c}", 2, c) for c in mine] for s, mine in by_shard.items()}
    results = await store.ingest_many(second)
    for shard, rows in second.items():
        assert (results[shard].unknown, results[shard].duplicates) == (len(rows), 0), shard
    snaps = await store.load(cards)
    assert {snaps[c].usage.get(NOV) for c in cards} == {3}  # each record counted once


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
                store, snaps[c], CardState(c), messages=[("t", b"k", b"v")], event_id=f"e{c}"
            )
        written = [k async for k in redis.scan_iter(match=f"{keys.tag(shard)}*")]
        assert written
        assert {key_slot(k) for k in written} == {key_slot(keys.outbox(shard).encode())}


async def test_the_scripts_write_the_keys_keys_py_names(redis_store: RedisStore) -> None:
    store, keys = redis_store, redis_store.keys
    await store.ingest(0, [row("r1", 1)])
    await put(store, CardState(A), event_id="e1", due=datetime(2027, 1, 1, tzinfo=UTC))
    written = {k.decode() async for k in store.redis.scan_iter(match=f"{keys.prefix}:*")}
    assert written == {
        keys.card(A),
        keys.dedupe_bucket(0, TODAY, dedupe.bucket(dedupe.digest("r1"), store.dedupe_buckets)),
        keys.event_seen(A, "e1"),
        keys.due(0),
    }


async def test_a_remembered_id_costs_eight_bytes_in_an_intset_and_expires_with_its_day(
    redis_store: RedisStore,
) -> None:
    store, keys = redis_store, redis_store.keys
    result = await store.ingest(0, [row(f"r{i}", 1) for i in range(300)])
    assert result.unknown == 300
    sets = [k async for k in store.redis.scan_iter(match=f"{keys.dedupe_prefix(0)}*")]
    assert sets and all(k.decode().startswith(keys.dedupe_prefix(0) + TODAY) for k in sets)
    for key in sets:
        assert await store.redis.object("encoding", key) in (b"intset", "intset")
        ttl = await store.redis.ttl(key)
        assert 0 < ttl <= store.record_ttl_s + 2 * 86_400
    again = await store.ingest(0, [row(f"r{i}", 1) for i in range(300)])
    assert again.duplicates == 300


async def test_a_card_with_a_profile_carries_no_flag_and_the_old_flag_still_reads(
    redis_store: RedisStore,
) -> None:
    """Before 2026-11-29 every card's hash had `k` ('1' with a profile, '0' without); now only
    a card without a profile is marked (`nk`), and a commit drops the old flag."""
    store, redis = redis_store, redis_store.redis
    card_a, card_b = store.keys.card(A), store.keys.card(B)
    await put(store, profiled(A))
    await put(store, CardState(B))  # committed, no profile
    assert await redis.hmget(card_a, "k", "nk") == [None, None]
    assert await redis.hmget(card_b, "k", "nk") == [None, b"1"]
    result = await store.ingest(0, [row("r1", 1, A), row("r2", 1, B)])
    assert (result.applied, result.unknown) == (1, 1)
    # As the earlier code wrote them: A known by its flag, B unknown by its flag.
    await redis.hset(card_a, "k", "1")
    await redis.hset(card_b, mapping={"k": "0"})
    await redis.hdel(card_b, "nk")
    result = await store.ingest(0, [row("r3", 1, A), row("r4", 1, B)])
    assert (result.applied, result.unknown) == (1, 1)
    await redis.hset(card_b, "k", "1")  # the old flag wins over the new reading
    assert (await store.ingest(0, [row("r5", 1, B)])).applied == 1
    await put(store, profiled(A))
    assert await redis.hmget(card_a, "k", "nk") == [None, None]
