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
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from simwatch_contracts import PoolUpserted, parse_card_event
from simwatch_runtime.process import new_event_loop
from simwatch_runtime.redis_client import AnyRedis
from usage_monitor.bootstrap import build
from usage_monitor.domain.card import CardState
from usage_monitor.domain.cycles import cycle_of, cycle_start, next_cycle
from usage_monitor.domain.lifecycle import apply_event, evaluate
from usage_monitor.domain.pools import PoolView
from usage_monitor.settings import Settings

from .boundary import forget
from .dataset import iccid, profile
from .private_redis import cpu_seconds
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


def _broker_pid() -> int | None:
    """The local broker's process (Apache Kafka's JVM or Tansu), to read its CPU time."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if b"kafka.Kafka" in cmdline or b"/tansu\x00" in cmdline:
            return int(entry.name)
    return None


def _process_cpu(pid: int | None) -> float:
    """User + system CPU seconds of `pid` so far (0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Timed:
    """One timed run: items done, wall seconds, and the CPU seconds each process spent
    (this process as the worker; Redis from INFO and the broker from /proc, both shared
    with whatever else runs: upper bounds)."""

    n: int
    wall: float
    worker: float
    redis: float
    broker: float | None  # None: no local broker process found

    def per_item(self) -> str:
        us = 1e6 / self.n
        if self.broker is None:
            broker, total = "broker unknown", f">= {(self.worker + self.redis) * us:.0f}"
        else:
            broker = f"{self.broker * us:.0f} us broker"
            total = f"{(self.worker + self.redis + self.broker) * us:.0f}"
        return (
            f"{self.wall * us:.0f} us wall; CPU {self.worker * us:.0f} us worker + "
            f"{self.redis * us:.0f} us Redis + {broker} = {total} us"
        )


async def _timed(redis: AnyRedis, fn: Callable[[], Awaitable[int]]) -> Timed:
    broker = _broker_pid()
    r0, b0 = await cpu_seconds(redis, main_thread=True), _process_cpu(broker)
    wall, cpu = time.perf_counter(), time.process_time()
    n = await fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    r1, b1 = await cpu_seconds(redis, main_thread=True), _process_cpu(broker)
    return Timed(n, wall, cpu, r1 - r0, None if broker is None else b1 - b0)


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

        stop: Timed | None = None
        for label, stopping in (("stop", True), ("start", False)):
            runs = []
            for rep in range(REPS):
                if rep:  # back to the state this run starts from
                    await fan_out(not stopping)
                runs.append(await _timed(c.redis, lambda s=stopping: fan_out(s)))  # type: ignore[misc]
            best = min(runs, key=lambda r: r.wall)
            lines.append(
                f"decisions, pool fan-out ({label}) in-process: {best.n:,} members in "
                f"{best.wall:.2f} s (per member: {best.per_item()})"
            )
            say(lines[-1])
            if stopping:
                stop = best

        boundary = cycle_start(next_cycle(cycle_of(now, TZ, 1)), TZ)
        c.service.clock = lambda: boundary + timedelta(seconds=5)
        tick = await _timed(c.redis, c.service.tick)
        lines.append(
            f"decisions, lifecycle tick at a cycle boundary in-process: {tick.n:,} cards rolled "
            f"over in {tick.wall:.2f} s (per card: {tick.per_item()})"
        )
        say(lines[-1])
        assert stop is not None
        lines.append(_floor(stop))
        say(lines[-1])
        return lines
    finally:
        await c.close()
        await forget(names.prefix)


def _floor(stop: Timed) -> str:
    """What a member's stop costs means for issue #19's goal (10 000 members stopped within
    1 s): the worker part splits over the workers that own the members' shards, each needing a
    core of its own; the Redis part runs on one server's single thread; all of it shares this
    machine's cores with the records counted meanwhile."""
    scale = 10_000 / stop.n
    worker, redis = stop.worker * scale, stop.redis * scale
    broker = f"{stop.broker * scale:.1f} s" if stop.broker is not None else "unknown"
    return (
        f"decisions, a 10,000-member pool's stop costs {worker:.1f} s of worker CPU (>= "
        f"{math.ceil(worker):.0f} workers on cores of their own for <= 1 s), {redis:.1f} s of "
        f"Redis's main thread, broker CPU {broker}; {os.cpu_count()} cores here"
    )


def run(quick: bool = False) -> list[str]:
    """The section's lines (`quick` changes nothing: the section takes about 30 s)."""
    stop, roll = domain_costs()
    lines = [
        f"decisions, domain only: pool stop {stop:.1f} us per member, rollover with its fee "
        f"{roll:.1f} us per card"
    ]
    say(lines[-1])
    # The worker's loop, and its aiokafka patch (entrypoints/worker.py).
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        lines += runner.run(service_costs(MEMBERS))
    return lines


def main() -> int:
    for line in run():
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
