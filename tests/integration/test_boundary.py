"""The first of the month on real Redis and real workers: every worker settles the due cards
of the shards it owns; a rebalance mid-boundary loses and doubles nothing; a worker that
starts during the boundary picks its shards up; late records stay in the old cycle.

The workers decide by a shifted clock (``USAGE_MONITOR_CLOCK_OFFSET_S``) so that the
boundary comes a few seconds into the test; the fleet is set up in-process, an hour before
it, through the same `CardService` the workers run.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest

from simwatch_contracts import parse_card_event
from simwatch_runtime.redis_client import AnyRedis
from usage_monitor.adapters.keys import Keys
from usage_monitor.bootstrap import Components
from usage_monitor.ports import IngestRow

from ..conftest import KafkaIO
from .helpers import Clock, iccid, in_process, record, upsert, wait_for

pytestmark = pytest.mark.integration

SHANGHAI = ZoneInfo("Asia/Shanghai")
SHARDS = 4
BALANCE, FEE = 10_000, 1000  # helpers.upsert's balance and monthly fee
QUOTA = 1000


def next_boundary() -> datetime:
    """The next 1st of a month, 00:00 in Shanghai, more than two hours away."""
    local = (datetime.now(UTC) + timedelta(hours=2)).astimezone(SHANGHAI)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return datetime(year, month, 1, tzinfo=SHANGHAI)


def old_cycle(boundary: datetime) -> date:
    """The cycle that ends at `boundary` (named by its first day)."""
    return (boundary - timedelta(days=1)).date().replace(day=1)


def late_records(worker: Any) -> float:
    text = httpx.get(f"{worker.url}/metrics", timeout=5).text
    found = re.search(r'^usage_monitor_records_total\{outcome="late"\} ([0-9.e+]+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def offset_to(target: datetime, in_s: float) -> str:
    """The clock offset that makes a worker's now `target` `in_s` seconds from now."""
    return f"{target.timestamp() - time.time() - in_s:.3f}"


# The boundary's clock jumps past every command's wait for a result, and no provisioning
# adapter answers here: tracking is off, so the rollover's commands are all there is.
NO_ACKS = {"USAGE_MONITOR_COMMAND_ACK_TIMEOUT_S": "0"}


def components(names: dict[str, str], clock: Clock) -> Components:
    return in_process(names, clock, SHARDS, command_ack_timeout_s=0)


async def fleet(names: dict[str, str], n: int, boundary: datetime) -> list[str]:
    """`n` cards with profiles an hour before `boundary`; every fourth one over quota (so
    suspended) in the old cycle; their commands published. Returns the cards."""
    clock = Clock(boundary - timedelta(hours=1))
    c = components(names, clock)
    cards = [iccid(70_000 + i) for i in range(n)]
    gate = asyncio.Semaphore(64)

    async def create(card: str) -> None:
        event = parse_card_event(orjson.dumps(upsert(card, QUOTA)))
        async with gate:
            await c.service.apply_event(event)

    try:
        await asyncio.gather(*(create(card) for card in cards))
        old, day = old_cycle(boundary), clock.now.strftime("%Y%m%d")
        rows: dict[int, list[IngestRow]] = {}
        for i, card in enumerate(cards[::4]):
            row = IngestRow(f"setup-{i}", card, "", old, 2 * QUOTA, day=day)
            rows.setdefault(c.store.shard(card), []).append(row)
        for shard, batch in rows.items():
            result = await c.store.ingest(shard, batch)
            await c.service.evaluate(iccid for iccid, _, _ in result.due)
        await c.service.sweep()
    finally:
        await c.close()
    return cards


async def states(redis: AnyRedis, prefix: str, cards: list[str]) -> list[dict[str, Any]]:
    keys = Keys(prefix, SHARDS)
    async with redis.pipeline(transaction=False) as pipe:
        for card in cards:
            pipe.hget(keys.card(card), "s")
        raw = await pipe.execute()
    return [orjson.loads(s) for s in raw]


async def due_left(redis: AnyRedis, prefix: str, until: datetime) -> int:
    keys = Keys(prefix, SHARDS)
    async with redis.pipeline(transaction=False) as pipe:
        for shard in range(SHARDS):
            pipe.zcount(keys.due(shard), "-inf", until.timestamp())
        return sum(int(n) for n in await pipe.execute())


async def settled(redis: AnyRedis, prefix: str, until: datetime, timeout_s: float) -> bool:
    """Wait until no card is left due at or before `until`."""
    deadline = time.monotonic() + timeout_s
    while await due_left(redis, prefix, until):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


async def assert_rolled_over_once(
    redis: AnyRedis, kafka: KafkaIO, names: dict[str, str], cards: list[str], boundary: datetime
) -> None:
    """Every card in the new cycle with exactly one fee paid; one resume per over-quota card
    and none for the others; nothing left due at the boundary."""
    assert await due_left(redis, names["USAGE_MONITOR_REDIS_PREFIX"], boundary) == 0
    docs = await states(redis, names["USAGE_MONITOR_REDIS_PREFIX"], cards)
    assert Counter(d["c"] for d in docs) == {boundary.strftime("%Y%m%d"): len(cards)}
    assert Counter(d.get("b") for d in docs) == {BALANCE - FEE: len(cards)}
    assert not any(d.get("r") for d in docs)  # nothing holds any card any more
    over = set(cards[::4])
    commands = await kafka.read(
        names["USAGE_MONITOR_TOPIC_COMMANDS"],
        lambda ms: sum(m["type"] == "resume" for m in ms) >= len(over),
    )
    resumes = {}
    for m in commands:
        if m["type"] == "resume":
            # A re-published message keeps its id (at least once); distinct ids are decisions.
            assert resumes.setdefault(m["command_id"], m["iccid"]) == m["iccid"]
    assert sorted(resumes.values()) == sorted(over)  # one decision per over-quota card
    suspends = [m["iccid"] for m in commands if m["type"] == "suspend"]
    assert sorted(set(suspends)) == sorted(over)  # the set-up's, none since


async def test_two_clocks_on_the_same_shards_settle_each_card_once(
    names: dict[str, str], redis: AnyRedis, kafka: KafkaIO
) -> None:
    """Two owners of every shard at once (the worst a rebalance can do), on real Redis: the
    commit's version check lets one decision per card through."""
    boundary = next_boundary()
    cards = await fleet(names, 2000, boundary)
    clock = Clock(boundary + timedelta(seconds=1))
    a, b = components(names, clock), components(names, clock)
    try:
        settled = await asyncio.gather(a.service.tick(batch=150), b.service.tick(batch=150))
        assert sum(settled) >= len(cards)
        await asyncio.gather(a.service.sweep(), b.service.sweep())
        await assert_rolled_over_once(redis, kafka, names, cards, boundary)
    finally:
        await a.close()
        await b.close()


async def test_a_worker_started_during_the_boundary_settles_its_shards(
    names: dict[str, str], redis: AnyRedis, kafka: KafkaIO, start_worker: Any
) -> None:
    boundary = next_boundary()
    cards = await fleet(names, 1000, boundary)
    start_worker(
        USAGE_MONITOR_CLOCK_OFFSET_S=offset_to(boundary + timedelta(seconds=30), 0), **NO_ACKS
    )
    prefix = names["USAGE_MONITOR_REDIS_PREFIX"]
    assert await settled(redis, prefix, boundary, 60)
    await assert_rolled_over_once(redis, kafka, names, cards, boundary)


@pytest.mark.slow
async def test_a_rebalance_mid_boundary_loses_and_doubles_nothing(
    names: dict[str, str], redis: AnyRedis, kafka: KafkaIO, start_worker: Any
) -> None:
    """Worker A dies (SIGKILL) after two slices of its shards, its outbox unpublished; B takes
    A's shards over; C joins while A's cards are still due."""
    boundary = next_boundary()
    cards = await fleet(names, 4000, boundary)
    prefix = names["USAGE_MONITOR_REDIS_PREFIX"]
    offset = offset_to(boundary, 20)
    small = {
        "USAGE_MONITOR_SCHEDULER_BATCH": "100",
        "USAGE_MONITOR_CLOCK_OFFSET_S": offset,
        **NO_ACKS,
    }
    a = start_worker(SIMWATCH_CRASH_AT="outbox.before_publish:2", **small)
    b = start_worker(**small)
    assert a.proc is not None
    assert await wait_for(lambda: a.proc.poll() is not None, 60), "A never reached its crash"
    left = await due_left(redis, prefix, boundary)
    assert 0 < left < len(cards)  # A died mid-boundary with its cards still due
    c = start_worker(**small)
    assert await settled(redis, prefix, boundary, 90)
    await assert_rolled_over_once(redis, kafka, names, cards, boundary)
    assert b.proc is not None and c.proc is not None
    assert b.proc.poll() is None and c.proc.poll() is None


async def test_records_of_the_old_cycle_arriving_at_the_boundary_stay_in_it(
    names: dict[str, str], redis: AnyRedis, kafka: KafkaIO, start_worker: Any
) -> None:
    """Through the real worker: a card suspended over quota is resumed at the rollover, and
    records of the old cycle that arrive after it count there (late), never in the new one."""
    boundary = next_boundary()
    worker = start_worker(
        **NO_ACKS,
        USAGE_MONITOR_CLOCK_OFFSET_S=offset_to(boundary, 20),
        USAGE_MONITOR_SCHEDULER_INTERVAL_S="0.2",
    )
    over, under = iccid(81), iccid(82)
    events, usage = names["USAGE_MONITOR_TOPIC_EVENTS"], names["USAGE_MONITOR_TOPIC_USAGE"]
    await kafka.send(events, upsert(over, QUOTA), key=over)
    await kafka.send(events, upsert(under, QUOTA), key=under)
    before = (boundary - timedelta(minutes=1)).isoformat()
    await wait_for(lambda: worker.card(under).status_code == 200)
    await kafka.send(usage, record(over, "old-1", 2 * QUOTA, before), key=over)
    commands = await kafka.read(
        names["USAGE_MONITOR_TOPIC_COMMANDS"], lambda ms: len(ms) >= 2, timeout_s=40
    )
    assert [(m["type"], m["trigger"]) for m in commands] == [
        ("suspend", "over_quota"),
        ("resume", "over_quota"),
    ]
    # The rollover is done; the old cycle's late records arrive now.
    await kafka.send(usage, record(over, "old-2", 5 * QUOTA, before), key=over)
    await kafka.send(usage, record(under, "old-3", 5 * QUOTA, before), key=under)
    after = (boundary + timedelta(seconds=1)).isoformat()
    await kafka.send(usage, record(under, "new-1", 10, after), key=under)
    assert await wait_for(lambda: late_records(worker) >= 2)
    old, new = old_cycle(boundary), boundary.date()
    keys = Keys(names["USAGE_MONITOR_REDIS_PREFIX"], SHARDS)

    async def counters(card: str) -> tuple[int, int]:
        values = await redis.hmget(keys.card(card), [f"u:{old}", f"u:{new}"])
        return int(values[0] or 0), int(values[1] or 0)

    deadline = time.monotonic() + 30
    while await counters(under) != (5 * QUOTA, 10) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert await counters(over) == (7 * QUOTA, 0)
    assert await counters(under) == (5 * QUOTA, 10)
    assert worker.card(over).json()["state"] == "active"
    assert worker.card(under).json()["used_bytes"] == 10
    # Any decision the late records made would be on the topic by now: read it all.
    commands = await kafka.read(names["USAGE_MONITOR_TOPIC_COMMANDS"], lambda _: False, 3)
    assert len(commands) == 2  # neither card suspended by the old cycle's usage
