"""The first of the month: how long real workers take to roll a whole fleet over.

Every card shares cycle day 1 and Asia/Shanghai, so at 00:00 on the 1st all of them fall
due at once: a fee each, and a quarter of them (over quota in the old cycle) resumed. The
workers decide by a shifted clock (``USAGE_MONITOR_CLOCK_OFFSET_S``, a tests-and-benchmarks
setting), so the boundary arrives a few seconds after they start, at a known wall instant.

For each run (one worker, then two on a fresh fleet): a set-up worker applies the profiles
and counts the old cycle's usage (one worker's records/s is measured there, on the same
cards), then stops; the measured workers start before the boundary. The clock runs from the
boundary to the last fee committed (no card of the fleet is left due at or before it, read
from the due sets) and to the last `resume` on `card.commands` (its broker timestamp).

``python -m bench.boundary`` (``BENCH_QUICK=1``: 20 000 cards instead of 100 000;
``BOUNDARY_CARDS`` sets the fleet's size; ``BOUNDARY_RECORDS_PER_S`` replaces the measured
records/s in the ratio).
Data: Redis DB 14 under this run's own prefixes (deleted at the end), topics ``bench<id>.*``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
from aiokafka import AIOKafkaConsumer
from redis.asyncio import Redis

from usage_monitor.adapters.keys import Keys

from .dataset import iccid, profile
from .private_redis import cpu_seconds
from .procs import (
    KAFKA,
    PARTITIONS,
    REDIS_URL,
    Names,
    WorkerProc,
    create_topics,
    free_port,
    produce,
)
from .throughput import measure

QUOTA = 10_000_000
BALANCE = 100_000
FEE = 100  # dataset.profile's monthly fee
RECORDS_PER_CARD = 10  # enough records for a steady records/s at set-up
LEAD_S = 25.0  # wall seconds from starting the measured workers to the boundary
TIMEOUT_S = 900.0
SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True, slots=True)
class Boundary:
    cards: int
    workers: int
    first_s: float  # boundary -> the first card settled
    fees_s: float  # boundary -> the last fee committed
    resumes_s: float  # boundary -> the last resume published
    resumes: int
    charged_once: bool
    redis_cpu_s: float  # Redis's CPU seconds from the boundary to the last fee (shared)

    @property
    def per_worker(self) -> float:
        """Rollovers/s per worker, while the workers were settling (first to last card)."""
        return self.cards / max(1e-9, self.fees_s - self.first_s) / self.workers


def next_boundary(now: datetime) -> datetime:
    """The first 1st of a month, 00:00 in Shanghai, more than two hours after `now`."""
    local = (now + timedelta(hours=2)).astimezone(SHANGHAI)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return datetime(year, month, 1, tzinfo=SHANGHAI)


def _offset(target: datetime, wall_s: float) -> str:
    """The clock offset that makes a worker's now `target` at wall time `wall_s`."""
    return f"{target.timestamp() - wall_s:.3f}"


def _start(names: Names, app: str, n: int, offset: str, tag: str) -> list[WorkerProc]:
    workers = [
        WorkerProc(
            names.env(
                app,
                free_port(),
                USAGE_MONITOR_CLOCK_OFFSET_S=offset,
                # Last cycle's commands were answered long before its end: none is re-sent.
                USAGE_MONITOR_COMMAND_ACK_TIMEOUT_S="0",
            ),
            f"{app}-{tag}{i}",
        )
        for i in range(n)
    ]
    for w in workers:
        w.wait_healthy()
    return workers


def _stop(workers: list[WorkerProc]) -> None:
    for w in workers:
        w.stop()


def _usage(cards: list[str], at: datetime, run: str) -> list[tuple[bytes, bytes]]:
    """RECORDS_PER_CARD records per card in the old cycle; every fourth card ends over
    quota (auto-suspended), the others well under it."""
    out = []
    when = at.isoformat()
    for n in range(RECORDS_PER_CARD):
        for i, card in enumerate(cards):
            volume = QUOTA // 5 if i % 4 == 0 else 1000
            doc = {
                "record_id": f"b{run}-{i}-{n}",
                "iccid": card,
                "event_time": when,
                "bytes_up": volume // 3,
                "bytes_down": volume - volume // 3,
            }
            out.append((card.encode(), orjson.dumps(doc)))
    return out


def prepare(names: Names, app: str, cards: list[str], boundary: datetime) -> float:
    """Profiles and the old cycle's usage, applied by one worker an hour before the
    boundary; returns that worker's records/s."""
    setup_at = boundary - timedelta(hours=1)
    events = [
        (c.encode(), json.dumps(profile(c, setup_at, quota=QUOTA) | {"balance": BALANCE}).encode())
        for c in cards
    ]
    asyncio.run(produce(names.events, events))
    (worker,) = _start(names, app, 1, _offset(setup_at, time.time()), "setup")
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while worker.metric("usage_monitor_card_events_total") < len(cards):
            if time.monotonic() > deadline:
                raise RuntimeError("profiles not applied in time")
            time.sleep(0.2)
        records = _usage(cards, setup_at + timedelta(minutes=1), names.tag + app)
        asyncio.run(produce(names.usage, records))
        rate = measure([worker], len(records), TIMEOUT_S)
        suspended = len(cards) // 4
        _wait(lambda: worker.metric("usage_monitor_commands_total") >= suspended, "suspends")
        keys = Keys(names.prefix, PARTITIONS)
        _wait(lambda: asyncio.run(_outbox(keys)) == 0, "outbox drained")
        return rate
    finally:
        worker.stop()


def _wait(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not done in {TIMEOUT_S:.0f} s")
        time.sleep(0.05)


async def _outbox(keys: Keys) -> int:
    redis = Redis.from_url(REDIS_URL)
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for shard in range(keys.shards):
                pipe.xlen(keys.outbox(shard))
            return sum(int(n) for n in await pipe.execute())
    finally:
        await redis.aclose()


async def _due(redis: Redis, keys: Keys, until: float) -> int:
    async with redis.pipeline(transaction=False) as pipe:
        for shard in range(keys.shards):
            pipe.zcount(keys.due(shard), "-inf", until)
        return sum(int(n) for n in await pipe.execute())


async def _watch_due(
    keys: Keys, boundary: datetime, wall_b: float, cards: int
) -> tuple[float, float, float]:
    """(first, last, redis_cpu): wall seconds after the boundary when the first card left the
    due sets, and when none was left due at or before the boundary; Redis's CPU seconds
    between the boundary and then. Not from the workers' start: their idle lead of 25 s
    (the server's timers, the workers' sweeps and polls, ~1 % of a core) added ~10 us to
    each rollover of a 20 000-card fleet (63 vs 53 us in two runs of the same code)."""
    redis = Redis.from_url(REDIS_URL)
    first, cpu_at_boundary = 0.0, None
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            if cpu_at_boundary is None and time.time() >= wall_b:
                cpu_at_boundary = await cpu_seconds(redis)
            left = await _due(redis, keys, boundary.timestamp())
            now = time.time() - wall_b
            if left < cards and not first:
                first = max(0.0, now)
            if left == 0 and now >= 0:
                assert cpu_at_boundary is not None, "sampled once the boundary passed"
                return first, now, await cpu_seconds(redis) - cpu_at_boundary
            await asyncio.sleep(0.02)
    finally:
        await redis.aclose()
    raise RuntimeError("the fleet was not rolled over in time")


async def _resumes(topic: str, expected: int) -> list[tuple[int, int]]:
    """(partition, broker timestamp in ms) of every `resume` on `topic`, once `expected`."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=KAFKA, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    out: list[tuple[int, int]] = []
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while len(out) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for tp, msgs in batch.items():
                out += [
                    (tp.partition, m.timestamp)
                    for m in msgs
                    if orjson.loads(m.value or b"{}").get("type") == "resume"
                ]
        return out
    finally:
        await consumer.stop()


async def _charged_once(keys: Keys, cards: list[str]) -> bool:
    """Every card paid exactly one fee: its balance is BALANCE - FEE."""
    redis = Redis.from_url(REDIS_URL)
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for card in cards:
                pipe.hget(keys.card(card), "s")
            states = await pipe.execute()
    finally:
        await redis.aclose()
    return all(orjson.loads(s).get("b") == BALANCE - FEE for s in states)


def boundary_run(names: Names, key: str, n_cards: int, n_workers: int) -> tuple[Boundary, float]:
    """One fleet across one boundary with `n_workers`; returns it and the set-up's records/s."""
    run = Names.__new__(Names)
    run.__dict__.update(names.__dict__, prefix=f"{names.prefix}-{key}")
    run.usage, run.events = f"{names.usage}.{key}", f"{names.events}.{key}"
    run.commands, run.alerts = f"{names.commands}.{key}", f"{names.alerts}.{key}"
    asyncio.run(create_topics([run.usage, run.events, run.commands, run.alerts]))
    app = f"{run.prefix}-app"
    cards = [iccid(i) for i in range(n_cards)]
    boundary = next_boundary(datetime.now(UTC))
    rate = prepare(run, app, cards, boundary)
    keys = Keys(run.prefix, PARTITIONS)
    wall_b = time.time() + LEAD_S
    workers = _start(run, app, n_workers, _offset(boundary, wall_b), "b")
    try:
        if time.time() > wall_b - 1:
            raise RuntimeError("workers started too slowly to be ready before the boundary")
        first, fees, cpu = asyncio.run(_watch_due(keys, boundary, wall_b, n_cards))
        resumes = asyncio.run(_resumes(run.commands, n_cards // 4))
    finally:
        _stop(workers)
    last = max((ts for _, ts in resumes), default=0) / 1000 - wall_b
    charged = asyncio.run(_charged_once(keys, cards))
    result = Boundary(n_cards, n_workers, first, fees, last, len(resumes), charged, cpu)
    return result, rate


async def forget(prefix: str) -> None:
    """Delete a run's keys from the bench's Redis (shared with bench.pools)."""
    redis = Redis.from_url(REDIS_URL)
    try:
        batch = []
        async for key in redis.scan_iter(match=f"{prefix}*", count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                await redis.unlink(*batch)
                batch = []
        if batch:
            await redis.unlink(*batch)
    finally:
        await redis.aclose()


def _line(b: Boundary) -> str:
    return (
        f"boundary, {b.workers} worker{'s' if b.workers > 1 else ''}: {b.cards:,} cards; "
        f"first settled +{b.first_s:.1f} s, last fee committed +{b.fees_s:.1f} s, last resume "
        f"published +{b.resumes_s:.1f} s ({b.resumes:,} resumes); "
        f"{b.per_worker:,.0f} rollovers/s per worker; fees charged once: "
        f"{'yes' if b.charged_once else 'NO'}; Redis CPU {b.redis_cpu_s * 1e6 / b.cards:.0f} us "
        "per rollover"
    )


def run(quick: bool) -> list[str]:
    """Lines to print: the boundary with one and two workers, the ratio to one worker's
    records/s and the projection to 1 M cards on 8 workers."""
    names = Names()
    n_cards = int(os.environ.get("BOUNDARY_CARDS") or (20_000 if quick else 100_000))
    try:
        one, rate = boundary_run(names, "b1", n_cards, 1)
        two, _ = boundary_run(names, "b2", n_cards, 2)
    finally:
        asyncio.run(forget(names.prefix))
    records = float(os.environ.get("BOUNDARY_RECORDS_PER_S") or rate)
    ratio = one.per_worker / records
    scale = two.per_worker * 2 / one.per_worker
    projected = 1_000_000 / (8 * one.per_worker)
    redis_ceiling = one.cards / max(1e-9, one.redis_cpu_s)
    return [
        _line(one),
        _line(two),
        f"boundary: one worker {records:,.0f} records/s "
        f"({'given' if os.environ.get('BOUNDARY_RECORDS_PER_S') else 'measured at set-up'}) "
        f"-> a rollover costs {records / one.per_worker:.1f} records' worth "
        f"({ratio:.0%} of records/s; goal >= 50 %); 2 workers {scale:.2f}x one",
        f"boundary: projected 1,000,000 cards on 8 workers (linear in workers, Redis not "
        f"the bound): {projected:.0f} s (goal <= 60 s); one Redis core's ceiling "
        f"~{redis_ceiling:,.0f} rollovers/s -> >= {1_000_000 / redis_ceiling:.0f} s on one "
        f"Redis server{' [quick]' if quick else ''}",
    ]


def main() -> int:
    for line in run(os.environ.get("BENCH_QUICK") == "1"):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
