"""What one card decision costs the worker, measured in one process: the lever behind a pool's
stop (issue #19) and the first of the month (issue #21), both of which decide every card of
a pool or a fleet at once.

Three figures, each the best of `DECISIONS_REPS` runs (2) to step around other work on the
machine:
* the domain alone (``lifecycle.evaluate``, no I/O): a member stopped by its pool, and a
  rollover with its fee, per card;
* a pool's fan-out through the service layer on the real Redis and Kafka (load, decide,
  commit with the outbox, publish with acks=all): a pool of `DECISIONS_MEMBERS` (10 000)
  stopped, then started, wall and CPU time per member;
* the lifecycle clock's tick at a cycle boundary for the same number of cards (a fee each).

The CPU time is this process's (the worker side); Redis and Kafka run on the other core.
The process runs as a worker does: uvloop, and the collector frozen after start-up.
Also `BENCH_SECTIONS=decisions` of ``make bench`` (and part of the full run).

``python -m bench.decisions``; data: Redis DB 14 under the run's own prefix (deleted at the
end), topics ``bench<id>.*``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from simwatch_contracts import PoolUpserted, parse_card_event
from usage_monitor.bootstrap import build
from usage_monitor.domain.card import CardState
from usage_monitor.domain.cycles import cycle_of, cycle_start, next_cycle
from usage_monitor.domain.lifecycle import apply_event, evaluate
from usage_monitor.domain.pools import PoolView
from usage_monitor.settings import Settings

from .boundary import forget
from .dataset import iccid, profile
from .procs import KAFKA, REDIS_URL, Names

MEMBERS = int(os.environ.get("DECISIONS_MEMBERS", "10000"))
REPS = int(os.environ.get("DECISIONS_REPS", "2"))
TZ = "Asia/Shanghai"


def say(line: str) -> None:
    print(f"  ({line})", file=sys.stderr, flush=True)


def _member(card: str, now: datetime) -> dict[str, object]:
    doc = profile(card, now, quota=10**12)
    doc["plan"] = {**doc["plan"], "pool_id": "bench-pool"}  # type: ignore[dict-item]
    return doc


def domain_costs(n: int = 5000) -> tuple[float, float]:
    """µs per card of the domain's decision: a pool stop, a rollover with its fee."""
    now = datetime.now(UTC)
    policy = Settings().policy
    states = []
    for i in range(n):
        event = parse_card_event(json.dumps(_member(iccid(700_000 + i), now)))
        states.append(apply_event(CardState(event.iccid), event, {}, now, policy).state)
    cycle = cycle_of(now, TZ, 1)
    stopping = PoolView("bench-pool", cycle, True)
    later = cycle_start(next_cycle(cycle), TZ) + timedelta(seconds=5)
    usage = {cycle: 5000}

    def best(fn: Callable[[], object]) -> float:
        times = []
        for _ in range(3 * REPS):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        return min(times) / n * 1e6

    stop = best(lambda: [evaluate(s, usage, now, policy, None, None, stopping) for s in states])
    roll = best(lambda: [evaluate(s, usage, later, policy) for s in states])
    return stop, roll


async def _timed(fn: Callable[[], Awaitable[int]]) -> tuple[int, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    n = await fn()
    return n, time.perf_counter() - wall, time.process_time() - cpu


async def service_costs(members: int) -> list[str]:
    names = Names()
    settings = Settings(
        kafka_bootstrap_servers=KAFKA,
        redis_url=REDIS_URL,
        redis_prefix=names.prefix,
        topic_commands=names.commands,
        topic_alerts=names.alerts,
        topic_decisions=f"{names.prefix}.card.decisions",
    )
    c = build(settings, registry=CollectorRegistry())
    lines = []
    try:
        now = datetime.now(UTC)
        await c.pools.define(
            PoolUpserted(
                type="pool.upserted",
                event_id="bench-pool-1",
                occurred_at=now,
                pool_id="bench-pool",
                customer_id="bench",
                quota_bytes=10**15,
            )
        )
        cards = [iccid(800_000 + i) for i in range(members)]
        gate = asyncio.Semaphore(32)

        async def join(card: str) -> None:
            async with gate:
                await c.service.apply_event(parse_card_event(json.dumps(_member(card, now))))

        await asyncio.gather(*(join(card) for card in cards))
        gc.collect()
        gc.freeze()  # as the worker does after start-up (entrypoints/worker.py)
        gc.set_threshold(50_000, 50, 100)

        async def fan_out(stopping: bool) -> int:
            record = (await c.store.pool_load(["bench-pool"]))["bench-pool"]
            assert record.definition is not None
            state = replace(
                record.state, cycle=record.definition.cycle(c.service.clock()), exhausted=stopping
            )
            version = await c.store.pool_commit(record, state, [], fan_out=True)
            return await c.pools.fan_out("bench-pool", version)

        for label, stopping in (("stop", True), ("start", False)):
            runs = []
            for rep in range(REPS):
                if rep:  # back to the state this run starts from
                    await fan_out(not stopping)
                runs.append(await _timed(lambda s=stopping: fan_out(s)))  # type: ignore[misc]
            n, wall, cpu = min(runs, key=lambda r: r[1])
            lines.append(
                f"decisions, pool fan-out ({label}) in-process: {n:,} members in {wall:.2f} s "
                f"({wall / n * 1e6:.0f} us wall, {cpu / n * 1e6:.0f} us CPU per member)"
            )
            say(lines[-1])

        boundary = cycle_start(next_cycle(cycle_of(now, TZ, 1)), TZ)
        c.service.clock = lambda: boundary + timedelta(seconds=5)
        n, wall, cpu = await _timed(c.service.tick)
        lines.append(
            f"decisions, lifecycle tick at a cycle boundary in-process: {n:,} cards rolled over "
            f"in {wall:.2f} s ({wall / n * 1e6:.0f} us wall, {cpu / n * 1e6:.0f} us CPU per card)"
        )
        say(lines[-1])
        return lines
    finally:
        await c.close()
        await forget(names.prefix)


def run(quick: bool = False) -> list[str]:
    """The section's lines (`quick` changes nothing: the section takes about 30 s)."""
    stop, roll = domain_costs()
    lines = [
        f"decisions, domain only: pool stop {stop:.1f} us per member, rollover with its fee "
        f"{roll:.1f} us per card"
    ]
    say(lines[-1])
    try:
        import uvloop  # the worker's loop (entrypoints/worker.py)

        lines += uvloop.run(service_costs(MEMBERS))
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        lines += asyncio.run(service_costs(MEMBERS))
    return lines


def main() -> int:
    for line in run():
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
