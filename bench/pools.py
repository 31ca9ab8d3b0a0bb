"""Pooled quotas (流量池, issue #19): what a pool costs, measured in one run.

* *Cost per record*: one worker's records/s on the bench's usage mix for a fleet whose
  cards are all members of 1 000 pools (quotas never reached), beside the same records for
  the same cards without pools (measured twice, before and after: drift of a shared
  machine); and `ingest.lua` driven directly on a private Redis, pooled beside unpooled, in
  Redis CPU per record. The unpooled worker's records/s is also the capacity the latency
  part runs at half of.
* *Latency*: a pool of 10 000 members (cards upserted with `plan.pool_id`) while background
  records of unpooled cards are offered at half the capacity measured above; a record of one
  member takes the pool over its quota, and the clock runs from producing it to the
  `suspend` (trigger `pool_over_quota`) of the last of the 10 000 members on
  `card.commands` (its broker timestamp). The pool is then re-armed (its quota raised above
  its usage through `pool.events`: every member resumed) and crossed again, several times;
  p50/p99 over the crossings, and the worker's `usage_monitor_pool_fanout_seconds`.
* *Memory*: a private redis-server with the deployed configuration; `INFO memory` before
  and after 100 000 unpooled cards, 100 000 members of one pool, and 100 000 members of
  1 000 pools, each written by the real commit and ingest scripts (profile, state, one
  record each), the record ids deleted before measuring; and `MEMORY USAGE` of every pool
  key (definition and state, per-shard counts, top members, member sets).

``python -m bench.pools`` (``BENCH_QUICK=1``: fewer records and crossings;
``POOLS_CROSSINGS`` sets the number of crossings). Data: Redis DB 14 under this run's own
prefixes (deleted at the end), a private redis-server, topics ``bench<id>.*``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from redis.asyncio import Redis

from simwatch_contracts import parse_card_event
from usage_monitor.adapters import dedupe
from usage_monitor.adapters.keys import Keys
from usage_monitor.adapters.redis_store import RedisStore
from usage_monitor.domain import pools as pool_rules
from usage_monitor.domain.card import CardState
from usage_monitor.domain.lifecycle import apply_event
from usage_monitor.domain.pools import Pool, PoolState
from usage_monitor.ports import CommitRequest, IngestRow

from .boundary import forget
from .dataset import Mix, iccid, profile, records, utc_now
from .latency import percentile
from .offer import TICK_S, Offer
from .private_redis import cpu_seconds, private_redis
from .procs import BIN, KAFKA, PARTITIONS, Names, WorkerProc, create_topics, produce
from .redis_cost import rows_of
from .throughput import apply_profiles, measure, start_workers

MEMBERS = 10_000  # the latency pool (issue: 10 000 members)
BIG_POOL = 100_000  # the scale pool (issue: 100 000 members)
FLEET_POOLS = 1_000  # the scale fleet (issue: 1 000 pools)
RATE_CARDS = 10_000  # the throughput fleet, pooled over FLEET_POOLS or not at all
BACKGROUND_CARDS = 10_000  # unpooled cards of the latency run's background traffic
HUGE = 2**50  # a pool quota never reached
STEP = 2_000  # bytes of the record that takes the pool over its quota
TIMEOUT_S = 120.0


def say(line: str) -> None:
    """Progress on stderr: the section's figures are the lines `run` returns."""
    print(f"  ({line})", file=sys.stderr, flush=True)


def _pool_event(pool_id: str, quota: int, n: int = 0) -> tuple[bytes, bytes]:
    doc = {
        "type": "pool.upserted",
        "event_id": f"bench-pool-{pool_id}-{n}",
        "occurred_at": utc_now().isoformat(),
        "pool_id": pool_id,
        "customer_id": "bench",
        "quota_bytes": quota,
    }
    return pool_id.encode(), orjson.dumps(doc)


def _member(card: str, pool_id: str | None) -> dict[str, object]:
    doc = profile(card, utc_now())
    if pool_id is not None:
        plan = doc["plan"]
        assert isinstance(plan, dict)
        plan["pool_id"] = pool_id
    return doc


def _fleet_pool(i: int) -> str:
    return f"fp{i % FLEET_POOLS:04d}"


def _run(names: Names, key: str) -> Names:
    """A sub-run with its own Redis prefix and card/pool/command topics (records shared)."""
    run = Names.__new__(Names)
    run.__dict__.update(
        names.__dict__,
        prefix=f"{names.prefix}-{key}",
        events=f"{names.events}.{key}",
        commands=f"{names.commands}.{key}",
        alerts=f"{names.alerts}.{key}",
    )
    run.pools = f"{names.prefix}.pool.events.{key}"  # its workers' USAGE_MONITOR_TOPIC_POOLS
    asyncio.run(create_topics([run.events, run.commands, run.alerts, run.pools]))
    return run


def _prepare(run: Names, cards: Sequence[str], pool_of: dict[str, str], quota: int) -> None:
    """Pool definitions, then profiles, applied by a set-up worker."""
    pool_ids = sorted(set(pool_of.values()))
    pool_events = [_pool_event(p, quota) for p in pool_ids]
    asyncio.run(produce(run.pools, pool_events))
    profiles = [(c.encode(), orjson.dumps(_member(c, pool_of.get(c)))) for c in cards]
    asyncio.run(produce(run.events, profiles))
    app = f"{run.prefix}-app"
    apply_profiles(run, app, len(cards) + len(pool_events), f"{run.usage}.idle")


# -- cost per record: workers, pooled and not -------------------------------------------------


def _rate(names: Names, key: str, topic: str, total: int, pooled: bool) -> float:
    run = _run(names, key)
    cards = [iccid(i) for i in range(RATE_CARDS)]
    pool_of = {c: _fleet_pool(i) for i, c in enumerate(cards)} if pooled else {}
    _prepare(run, cards, pool_of, HUGE)
    workers = start_workers(run, f"{run.prefix}-app", 1, topic)
    spy = _profile(workers[0], "pooled") if pooled else None
    try:
        return measure(workers, total)
    finally:
        _unprofile(spy)
        for w in workers:
            w.stop()


# -- latency: a pool of 10 000 members crossing its quota ------------------------------------


@dataclass
class _Commands:
    """Every command for the pool's members, as consumed: (type, trigger, iccid, broker
    timestamp in seconds, consumed at perf_counter)."""

    members: set[str]
    seen: list[tuple[str, str, str, float, float]] = field(default_factory=list)


async def _listen(topic: str, log: _Commands, stop: asyncio.Event, ready: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=KAFKA, enable_auto_commit=False, fetch_max_wait_ms=10
    )
    await consumer.start()
    try:
        parts = None
        while not parts:
            await consumer._client.force_metadata_update()
            parts = consumer._client.cluster.partitions_for_topic(topic)
            await asyncio.sleep(0.1)
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        ready.set()
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=50)
            now = time.perf_counter()
            for msgs in batch.values():
                for m in msgs:
                    doc = orjson.loads(m.value or b"{}")
                    card = doc.get("iccid", "")
                    if card in log.members:
                        entry = (doc.get("type"), doc.get("trigger", ""), card, m.timestamp / 1000)
                        log.seen.append((*entry, now))
    finally:
        await consumer.stop()


async def _background(topic: str, rate: float, stop: asyncio.Event, sent: list[float]) -> None:
    """Unique records of the background cards at `rate`/s (the bench mix's sizes) until
    `stop`; `sent` is [records produced so far, seconds]."""
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, linger_ms=2, acks=1)
    await producer.start()
    rng = random.Random(7)
    at = utc_now().isoformat()
    try:
        started = time.perf_counter()
        n = 0
        offer = Offer(producer, topic)
        while not stop.is_set():
            due = int((time.perf_counter() - started) * rate)
            chunk: list[tuple[bytes, bytes]] = []
            while n < due:
                card = iccid(rng.randrange(BACKGROUND_CARDS))
                volume = rng.randint(0, 20_000)
                doc = {
                    "record_id": f"bg-{n}",
                    "iccid": card,
                    "event_time": at,
                    "bytes_up": volume // 3,
                    "bytes_down": volume - volume // 3,
                }
                chunk.append((card.encode(), orjson.dumps(doc)))
                n += 1
            await offer.send(chunk)
            sent[:] = [n, time.perf_counter() - started]
            await asyncio.sleep(TICK_S)
        await offer.flush()
    finally:
        await producer.stop()


async def _wait_members(
    log: _Commands, start: int, kind: str, trigger: str | None, n: int
) -> tuple[float, float]:
    """(last broker timestamp, last consumed at) once `n` distinct members got `kind`
    after log entry `start`."""
    deadline = time.perf_counter() + TIMEOUT_S
    while time.perf_counter() < deadline:
        got = {
            e[2]: e
            for e in log.seen[start:]
            if e[0] == kind and (trigger is None or e[1] == trigger)
        }
        if len(got) >= n:
            return max(e[3] for e in got.values()), max(e[4] for e in got.values())
        await asyncio.sleep(0.05)
    raise RuntimeError(f"only {len(got)} of {n} members got {kind} in {TIMEOUT_S:.0f} s")


@dataclass
class Crossings:
    broker_s: list[float]  # crossing record produced -> last suspend's broker timestamp
    consumed_s: list[float]  # ... -> last suspend consumed by the bench
    first_s: list[float]  # ... -> first suspend's broker timestamp
    resume_s: list[float]  # re-arming event produced -> last resume's broker timestamp
    catch_up_s: list[float]  # waited before each crossing for the worker's backlog to drain
    offered: float  # background records/s actually offered


async def _caught_up(workers: Sequence[WorkerProc], sent: list[float], rate: float) -> float:
    """Wait until the worker's backlog of background records is under 0.2 s of traffic (a
    fan-out holds the usage stream: each crossing starts from the steady state); returns
    the seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < TIMEOUT_S:
        if sent[0] - sum(w.records_done() for w in workers) < 0.2 * rate:
            return time.perf_counter() - started
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the worker did not catch up with the background in {TIMEOUT_S:.0f} s")


async def _crossings(
    run: Names,
    workers: Sequence[WorkerProc],
    usage: str,
    members: list[str],
    pool_id: str,
    rate: float,
    rounds: int,
) -> Crossings:
    log = _Commands(set(members))
    stop_listen, ready, stop_bg = asyncio.Event(), asyncio.Event(), asyncio.Event()
    listener = asyncio.create_task(_listen(run.commands, log, stop_listen, ready))
    await asyncio.wait_for(ready.wait(), 30)
    sent: list[float] = [0, 0.0]
    background = asyncio.create_task(_background(usage, rate, stop_bg, sent))
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, linger_ms=0, acks=1)
    await producer.start()
    out = Crossings([], [], [], [], [], 0.0)
    used, quota = 0, STEP // 2  # as defined at set-up
    rng = random.Random(11)
    try:
        await asyncio.sleep(3)  # the background reaches its rate
        for n in range(rounds):
            out.catch_up_s.append(await _caught_up(workers, sent, rate))
            if n:  # re-arm: the quota raised above the usage ends the stop
                quota = used + STEP // 2
                mark = len(log.seen)
                t0 = time.time()
                key, value = _pool_event(pool_id, quota, n)
                await producer.send_and_wait(run.pools, value, key=key)
                last, _ = await _wait_members(log, mark, "resume", None, len(members))
                out.resume_s.append(last - t0)
                out.catch_up_s[-1] += await _caught_up(workers, sent, rate)
            card = members[rng.randrange(len(members))]
            doc = {
                "record_id": f"cross-{pool_id}-{n}",
                "iccid": card,
                "event_time": utc_now().isoformat(),
                "bytes_up": STEP,
                "bytes_down": 0,
            }
            mark = len(log.seen)
            t0, p0 = time.time(), time.perf_counter()
            await producer.send_and_wait(usage, orjson.dumps(doc), key=card.encode())
            used += STEP
            last, consumed = await _wait_members(
                log, mark, "suspend", "pool_over_quota", len(members)
            )
            first = min(
                e[3] for e in log.seen[mark:] if e[0] == "suspend" and e[1] == "pool_over_quota"
            )
            out.broker_s.append(last - t0)
            out.consumed_s.append(consumed - p0)
            out.first_s.append(first - t0)
            say(
                f"crossing {n + 1}: all suspended +{last - t0:.2f} s, first +{first - t0:.2f} s,"
                f" waited {out.catch_up_s[-1]:.1f} s for the backlog before it"
            )
    finally:
        stop_bg.set()
        await background
        stop_listen.set()
        await listener
        await producer.stop()
    out.offered = sent[0] / max(1.0, sent[1])
    return out


def _histogram(worker: WorkerProc, name: str) -> tuple[float, float, list[tuple[str, float]]]:
    """(count, sum, cumulative buckets) of a histogram on the worker's /metrics."""
    text = worker.http.get("/metrics").text
    count = worker.metric(f"{name}_count")
    total = worker.metric(f"{name}_sum")
    buckets = [
        (m.group(1), float(m.group(2)))
        for m in re.finditer(rf'^{name}_bucket\{{le="([^"]+)"\}} ([0-9.e+-]+)$', text, re.M)
    ]
    return count, total, buckets


def _profile(worker: WorkerProc, part: str) -> subprocess.Popen[bytes] | None:
    """POOLS_PROFILE=<prefix>: py-spy (pip-installed in the venv) records the worker of the
    pooled records/s run and of the crossings, to <prefix>-<part>.svg (flame graphs)."""
    prefix = os.environ.get("POOLS_PROFILE")
    if not prefix:
        return None
    out = f"{prefix}-{part}.svg"
    args = [str(BIN / "py-spy"), "record", "-p", str(worker.proc.pid), "-o", out, "-r", "50"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _unprofile(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is not None:
        spy.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
        spy.wait(timeout=60)


def _latency(names: Names, rate: float, rounds: int, n_workers: int = 1) -> tuple[Crossings, str]:
    run = _run(names, f"lat{n_workers}")
    usage = f"{names.usage}.lat{n_workers}"
    asyncio.run(create_topics([usage]))
    pool_id = f"lat-pool-{n_workers}"
    members = [iccid(500_000 + i) for i in range(MEMBERS)]
    background = [iccid(i) for i in range(BACKGROUND_CARDS)]
    _prepare(run, background + members, dict.fromkeys(members, pool_id), STEP // 2)
    workers = start_workers(run, f"{run.prefix}-app", n_workers, usage)
    try:
        time.sleep(2)  # joined and positioned
        spy = _profile(workers[0], "crossings") if n_workers == 1 else None
        try:
            result = asyncio.run(_crossings(run, workers, usage, members, pool_id, rate, rounds))
        finally:
            _unprofile(spy)
        count, total, buckets = _histogram(workers[0], "usage_monitor_pool_fanout_seconds")
        fanouts = sum(w.metric("usage_monitor_pool_fanouts_total") for w in workers)
    finally:
        for w in workers:
            w.stop()
    upper = next((le for le, c in buckets if c >= 0.99 * count), "?") if count else "?"
    hist = (
        f"usage_monitor_pool_fanout_seconds (first worker's part): {count:.0f} fan-outs "
        f"({fanouts:.0f} completed; suspends and resumes), mean {total / max(1, count):.2f} s, "
        f"p99 <= {upper} s (buckets: {', '.join(f'{le}:{c:.0f}' for le, c in buckets)})"
    )
    return result, hist


# -- memory and the script's cost, on a private Redis -----------------------------------------


async def _used_memory(redis: Redis) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def _write_fleet(
    store: RedisStore, keys: Keys, cards: list[str], pool_of: dict[str, str]
) -> None:
    """Profiles committed, pools defined and decided once, one record per card counted."""
    now = utc_now()
    cycle = None
    for pool_id in sorted(set(pool_of.values())):
        pool = Pool(pool_id, "bench", HUGE)
        await store.pool_define(pool)
        (record,) = (await store.pool_load([pool_id])).values()
        decided = pool_rules.decide(pool, PoolState(), 0, now)
        await store.pool_commit(record, decided.state, [], False)
    for start in range(0, len(cards), 2000):
        chunk = cards[start : start + 2000]
        snaps = await store.load(chunk)
        commits = []
        for card in chunk:
            event = parse_card_event(json.dumps(_member(card, pool_of.get(card))))
            d = apply_event(CardState(card), event, {}, now)
            commits.append(CommitRequest(snaps[card], d.state, wakes=dict(d.wakes)))
            cycle = d.state.cycle
        await store.commit_many(commits)
    assert cycle is not None
    groups: dict[int, list[IngestRow]] = defaultdict(list)
    today = dedupe.window(now)
    for n, card in enumerate(cards):
        row = IngestRow(f"mem-{card}-{n}", card, "", cycle, 1000 + n % 5000, day=today)
        groups[keys.shard(card)].append(row)
    for shard, rows in groups.items():
        for i in range(0, len(rows), 5000):
            await store.ingest(shard, rows[i : i + 5000])
    for shard in range(keys.shards):  # the record ids: measured by the usage section
        async for k in store.redis.scan_iter(match=f"{keys.dedupe_prefix(shard)}*", count=5000):
            await store.redis.unlink(k)
    await asyncio.sleep(0.5)  # lazy free


async def _pool_keys(redis: Redis, keys: Keys, pool_ids: Sequence[str]) -> dict[str, int]:
    """MEMORY USAGE of every pool key, summed by kind: P (definition, state, version),
    pc (per-shard counts of every pool in the cycle: shared by the pools, counted once),
    pt (per-shard top members), pm (per-shard member sets)."""
    kinds: dict[str, int] = defaultdict(int)
    cycle = Pool("any", "bench", 1).cycle(utc_now()).isoformat()
    for start in range(0, len(pool_ids), 100):
        named: list[tuple[str, str]] = []
        if start == 0:
            named += [("pc", keys.pool_usage(shard, cycle)) for shard in range(keys.shards)]
        for pool_id in pool_ids[start : start + 100]:
            named.append(("P", keys.pool(pool_id)))
            for shard in range(keys.shards):
                named.append(("pt", keys.pool_top(shard, pool_id, cycle)))
                named.append(("pm", keys.pool_members(shard, pool_id)))
        async with redis.pipeline(transaction=False) as pipe:
            for _, key in named:
                pipe.memory_usage(key, samples=0)
            sizes = await pipe.execute()
        for (kind, _), size in zip(named, sizes, strict=True):
            kinds[kind] += int(size or 0)
    return dict(kinds)


@dataclass
class Footprint:
    card: float  # B per unpooled card
    big_member: float  # B per card, members of one pool of BIG_POOL
    fleet_member: float  # B per card, members of FLEET_POOLS pools
    big_keys: dict[str, int]  # MEMORY USAGE of the big pool's keys, by kind
    fleet_keys: dict[str, int]  # ... of the fleet's pools, by kind (all pools)


async def footprint(big_pool: int, fleet: int, shards: int = PARTITIONS) -> Footprint:
    """`fleet` unpooled cards, then one pool of `big_pool` members, then `fleet` members of
    FLEET_POOLS pools."""
    async with private_redis() as redis:
        keys = Keys("sw", shards)
        store = RedisStore(redis, keys, record_ttl_s=86_400, event_ttl_s=86_400)
        plain = [iccid(i) for i in range(fleet)]
        big = [iccid(1_000_000 + i) for i in range(big_pool)]
        spread = [iccid(2_000_000 + i) for i in range(fleet)]
        sizes = []
        for group, pool_of in (
            (plain, {}),
            (big, dict.fromkeys(big, "big")),
            (spread, {c: _fleet_pool(i) for i, c in enumerate(spread)}),
        ):
            before = await _used_memory(redis)
            await _write_fleet(store, keys, group, pool_of)
            sizes.append((await _used_memory(redis) - before) / len(group))
        fleet_ids = sorted({_fleet_pool(i) for i in range(fleet)})
        return Footprint(
            sizes[0],
            sizes[1],
            sizes[2],
            await _pool_keys(redis, keys, ["big"]),
            await _pool_keys(redis, keys, fleet_ids),
        )


async def script_cost(total: int, passes: int = 2) -> tuple[float, float, float, float]:
    """ingest.lua driven directly, the same mix for unpooled cards and for members of
    FLEET_POOLS pools, alternated `passes` times: (records/s unpooled, pooled; Redis CPU us
    per record unpooled, pooled), means over the passes."""
    async with private_redis() as redis:
        keys = Keys("sw", PARTITIONS)
        plain = RedisStore(redis, keys, record_ttl_s=86_400, event_ttl_s=86_400)
        pooled_keys = Keys("pl", PARTITIONS)
        pooled = RedisStore(redis, pooled_keys, record_ttl_s=86_400, event_ttl_s=86_400)
        cards = [iccid(i) for i in range(RATE_CARDS)]
        await _write_fleet(plain, keys, cards, {})
        await _write_fleet(
            pooled, pooled_keys, cards, {c: _fleet_pool(i) for i, c in enumerate(cards)}
        )
        rates: dict[bool, list[float]] = defaultdict(list)
        cpus: dict[bool, list[float]] = defaultdict(list)
        for n in range(passes):
            values = [
                v for _, v in records(Mix(RATE_CARDS, total, seed=100 + n), utc_now(), f"s{n}")
            ]
            rows = rows_of(values)
            for is_pooled, store, k in ((False, plain, keys), (True, pooled, pooled_keys)):
                cpu = await cpu_seconds(redis)
                started = time.perf_counter()
                for i in range(0, len(rows), 5000):
                    groups: dict[int, list[IngestRow]] = defaultdict(list)
                    for row in rows[i : i + 5000]:
                        groups[k.shard(row.iccid)].append(row)
                    await asyncio.gather(*(store.ingest(s, g) for s, g in groups.items()))
                rates[is_pooled].append(len(rows) / (time.perf_counter() - started))
                cpus[is_pooled].append((await cpu_seconds(redis) - cpu) / len(rows) * 1e6)

        def mean(xs: list[float]) -> float:
            return sum(xs) / len(xs)

        return mean(rates[False]), mean(rates[True]), mean(cpus[False]), mean(cpus[True])


# -- the section --------------------------------------------------------------------------------


def run(quick: bool) -> list[str]:
    total = 200_000 if quick else 400_000
    rounds = int(os.environ.get("POOLS_CROSSINGS") or (4 if quick else 6))
    names = Names()
    lines: list[str] = []
    try:
        topic = f"{names.usage}.rate"
        asyncio.run(create_topics([topic, names.dlq]))
        mix = records(Mix(RATE_CARDS, total), utc_now(), f"{names.tag}rate")
        asyncio.run(produce(topic, mix))
        del mix
        plain = [_rate(names, "u1", topic, total, False)]
        pooled = _rate(names, "p1", topic, total, True)
        plain.append(_rate(names, "u2", topic, total, False))
        capacity = sum(plain) / len(plain)
        lines.append(
            f"pools, cost per record: 1 worker {capacity:,.0f} records/s unpooled (mean of "
            f"{', '.join(f'{r:,.0f}' for r in plain)}), {pooled:,.0f} records/s with every "
            f"card in one of {FLEET_POOLS:,} pools ({pooled / capacity:.2f}x); "
            f"{RATE_CARDS:,} cards, {total:,} records of the bench mix"
        )
        say(lines[-1])
        s_plain, s_pooled, c_plain, c_pooled = asyncio.run(script_cost(total // 2))
        lines.append(
            f"pools, ingest.lua driven directly (private Redis, alternated twice): "
            f"{s_pooled:,.0f} records/s pooled vs {s_plain:,.0f} unpooled "
            f"({s_pooled / s_plain:.2f}x); Redis CPU {c_pooled:.2f} us vs {c_plain:.2f} us per "
            f"record ({c_pooled / c_plain:.2f}x)"
        )
        say(lines[-1])

        half = capacity / 2
        crossings, hist = _latency(names, half, rounds)
        lat = crossings.broker_s
        lines.append(
            f"pools, latency at half capacity ({crossings.offered:,.0f}/s offered): crossing "
            f"record -> suspend of all {MEMBERS:,} members p50 {percentile(lat, 50):.2f} s, "
            f"p99 {percentile(lat, 99):.2f} s, max {max(lat):.2f} s over {len(lat)} crossings "
            f"(goal <= 1 s p99); first member's suspend p50 "
            f"{percentile(crossings.first_s, 50):.2f} s; consumed by the bench p50 "
            f"{percentile(crossings.consumed_s, 50):.2f} s"
        )
        say(lines[-1])
        if crossings.resume_s:
            lines.append(
                f"pools, re-armed (quota raised through pool.events) -> resume of all "
                f"{MEMBERS:,} members: p50 {percentile(crossings.resume_s, 50):.2f} s, "
                f"max {max(crossings.resume_s):.2f} s over {len(crossings.resume_s)}"
            )
            say(lines[-1])
        lines.append(f"pools, worker {hist}")
        say(lines[-1])
        # The same offered rate on two workers: each evaluates the members in its own shards.
        two, _ = _latency(names, half, max(2, rounds // 2), n_workers=2)
        lat2 = two.broker_s
        lines.append(
            f"pools, 2 workers at the same rate ({two.offered:,.0f}/s): crossing -> suspend of "
            f"all {MEMBERS:,} members p50 {percentile(lat2, 50):.2f} s, max {max(lat2):.2f} s "
            f"over {len(lat2)}; first member's p50 {percentile(two.first_s, 50):.2f} s"
            + (f"; resume of all p50 {percentile(two.resume_s, 50):.2f} s" if two.resume_s else "")
        )
        say(lines[-1])

        fleet = 20_000 if quick else 100_000
        fp = asyncio.run(footprint(BIG_POOL, fleet))
        per_pool = sum(v for k, v in fp.fleet_keys.items() if k != "pm") / FLEET_POOLS
        sets = fp.fleet_keys.get("pm", 0) / fleet
        big_sets = fp.big_keys.get("pm", 0) / BIG_POOL
        lines.append(
            f"pools, redis memory: {fp.card:.0f} B per unpooled card; {fp.big_member:.0f} B "
            f"per member of one {BIG_POOL:,}-member pool (+{fp.big_member - fp.card:.0f} B), "
            f"{fp.fleet_member:.0f} B per member of {FLEET_POOLS:,} pools ({fleet:,} members) "
            f"(+{fp.fleet_member - fp.card:.0f} B); member sets {big_sets:.1f} B per member "
            f"(one pool), {sets:.1f} B ({FLEET_POOLS:,} pools); a pool's own keys "
            f"(definition, 12 counts, 12 top sets) {per_pool:,.0f} B "
            f"(big pool: {sum(v for k, v in fp.big_keys.items() if k != 'pm'):,} B)"
        )
        say(lines[-1])
        lines.append(
            f"pools: {pooled / capacity:.2f}x records/s pooled, p99 "
            f"{percentile(lat, 99):.2f} s to stop {MEMBERS:,} members at "
            f"{crossings.offered:,.0f}/s (2 workers: max {max(lat2):.2f} s), "
            f"+{fp.fleet_member - fp.card:.0f} B/member, "
            f"{per_pool:,.0f} B/pool{' [quick]' if quick else ''}"
        )
        return lines
    finally:
        asyncio.run(forget(names.prefix))


def main() -> int:
    for line in run(os.environ.get("BENCH_QUICK") == "1"):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
