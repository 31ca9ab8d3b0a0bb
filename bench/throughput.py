"""Sustained records/s of real workers, and of the naive design, on the same records."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio import Redis

from simwatch_contracts import UsageRecord

from .procs import KAFKA, PARTITIONS, REDIS_URL, Names, WorkerProc, free_port, produce


def start_workers(names: Names, app_id: str, n: int, usage_topic: str) -> list[WorkerProc]:
    # Started together, so that they join the group at about the same time.
    workers = [
        WorkerProc(
            names.env(app_id, free_port(), USAGE_MONITOR_TOPIC_USAGE=usage_topic), f"{app_id}-{i}"
        )
        for i in range(n)
    ]
    for w in workers:
        w.wait_healthy()
    return workers


def apply_profiles(names: Names, app_id: str, n_profiles: int, idle_topic: str) -> None:
    """Let the app's card-events group apply every profile before any usage flows."""
    workers = start_workers(names, app_id, 1, idle_topic)
    try:
        deadline = time.monotonic() + 300
        while workers[0].metric("usage_monitor_card_events_total") < n_profiles:
            if time.monotonic() > deadline:
                raise RuntimeError("profiles were not applied in 300 s")
            time.sleep(0.2)
    finally:
        for w in workers:
            w.stop()


async def clone_cards(source: Names, target: Names, app_id: str) -> int:
    """Give a run the cards `source` applied (`apply_profiles`), instead of applying every
    profile again: each run needs fresh cards (no usage yet), and applying them took ~450
    card events/s on a slower machine, 97 s of the quick bench's five minutes for its four
    runs. Copies every key under `source`'s Redis prefix to `target`'s (card hashes, event
    ids, templates, due index: nothing in a value names the prefix), then commits the
    target app's `card.events` offsets at the end, so that its worker does not apply them
    again. Returns the keys copied. On one Redis server, as the bench runs (`SCAN` on a
    Redis Cluster client would walk one node)."""
    redis = Redis.from_url(REDIS_URL)
    copied = 0
    try:
        cut = len(source.prefix)
        pipe = redis.pipeline(transaction=False)
        async for key in redis.scan_iter(match=f"{source.prefix}:*", count=5000):
            pipe.copy(key, target.prefix.encode() + key[cut:])
            copied += 1
            if len(pipe) >= 5000:
                await pipe.execute()
        await pipe.execute()
    finally:
        await redis.aclose()
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, group_id=app_id, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(source.events, p) for p in range(PARTITIONS)]  # create_topics'
        ends = await consumer.end_offsets(tps)
        consumer.assign(tps)
        await consumer.commit({tp: offset for tp, offset in ends.items()})
    finally:
        await consumer.stop()
    return copied


WARM_UP = 0.05
"""The window opens once this share of the records is done: the first batches pay for the
worker's first reads of every card and template, which a running worker has long paid."""
SAMPLE_S = 0.25
"""With several workers, progress is summed over intervals this long in which every one of
them counted records (a worker does several batches in one, at any rate the bench sees)."""


def measure(workers: list[WorkerProc], total: int, timeout_s: float = 600) -> float:
    """records/s while every worker is working, once `WARM_UP` of the records are done.

    One worker: from then until `total` records have an outcome. Several: the records
    counted over the `SAMPLE_S` intervals in which each of them counted some, over those
    intervals' time. Workers join the group one after the other, so the first drains part
    of its partitions alone, and each join is a rebalance during which nobody counts for a
    few seconds; the first to run dry leaves one worker's tail. A window from the first
    record of the last to join until one ran dry read anywhere from 0.12x to 1.9x one
    worker from run to run, as the join fell."""
    deadline = time.monotonic() + timeout_s
    several = len(workers) > 1
    last: list[float] = [0.0] * len(workers)
    last_at = time.perf_counter()
    first_at = first_done = 0.0
    busy_s = busy_records = 0.0
    while True:
        time.sleep(SAMPLE_S if several else 0.05)
        each = [w.records_done() for w in workers]
        done, now = sum(each), time.perf_counter()
        if done >= WARM_UP * total:
            if not first_at:
                first_at, first_done = now, done
            elif several and all(e > n for e, n in zip(each, last, strict=True)):
                busy_s += now - last_at
                busy_records += done - sum(last)
        last, last_at = each, now
        if done >= total:
            if several:
                return busy_records / busy_s if busy_s else float("nan")
            return (done - first_done) / (now - first_at) if now > first_at else float("nan")
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done:.0f} of {total} records in {timeout_s} s")


def run_joined(
    names: Names, app_id: str, n: int, usage_topic: str, items: Sequence[tuple[bytes, bytes]]
) -> float:
    """`n` workers' records/s on `items`, produced once every worker has joined the usage
    group (the local broker assigns at once, `group.initial.rebalance.delay.ms=0`). With
    the records there before, the first worker to join drained most of them alone while the
    others joined, and two workers read anywhere from 0.12x to 1.9x one worker."""
    workers = start_workers(names, app_id, n, usage_topic)
    try:
        asyncio.run(joined(f"{app_id}-usage", n))
        asyncio.run(produce(usage_topic, items))
        return measure(workers, len(items))
    finally:
        for w in workers:
            w.stop()


async def joined(group: str, n: int, timeout_s: float = 60) -> None:
    """Wait until `n` members have joined the consumer group and it is stable."""
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            (reply,) = await admin.describe_consumer_groups([group])
            _, _, state, _, _, members, *_ = reply.groups[0]
            if state == "Stable" and len(members) == n:
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{n} workers did not join {group} in {timeout_s} s")
    finally:
        await admin.close()


def run_workers(names: Names, app_id: str, n: int, usage_topic: str, total: int) -> float:
    workers = start_workers(names, app_id, n, usage_topic)
    try:
        return measure(workers, total)
    finally:
        for w in workers:
            w.stop()


async def naive(
    names: Names, usage_topic: str, cards: list[str], quota: int, limit_s: float
) -> tuple[float, int]:
    """One Redis round trip per record, one awaited produce per decision."""
    redis = Redis.from_url(REDIS_URL)
    script = redis.register_script((Path(__file__).parent / "naive.lua").read_text())
    prefix = f"{names.prefix}-naive"
    async with redis.pipeline(transaction=False) as pipe:
        for card in cards:
            pipe.hset(f"{prefix}:c:{card}", "q", quota)
        await pipe.execute()
    consumer = AIOKafkaConsumer(
        usage_topic,
        bootstrap_servers=KAFKA,
        group_id=f"{prefix}-g",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all")
    await consumer.start()
    await producer.start()
    done = decisions = 0
    started = 0.0
    try:
        while not started or time.perf_counter() - started < limit_s:
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            if not batch:
                if started:
                    break
                continue
            started = started or time.perf_counter()
            for msgs in batch.values():
                for m in msgs:
                    r = UsageRecord.model_validate_json(m.value or b"")
                    keys = [f"{prefix}:r:{r.record_id}", f"{prefix}:c:{r.iccid}"]
                    if await script(keys=keys, args=[86400, r.total_bytes]):
                        decisions += 1
                        cmd = {"type": "suspend", "iccid": r.iccid, "trigger": "over_quota"}
                        await producer.send_and_wait(names.commands, json.dumps(cmd).encode())
                    done += 1
            await consumer.commit()
        return done / (time.perf_counter() - started), decisions
    finally:
        await consumer.stop()
        await producer.stop()
        await redis.aclose()


def naive_rate(
    names: Names, usage_topic: str, cards: list[str], quota: int, limit_s: float
) -> float:
    rate, _ = asyncio.run(naive(names, usage_topic, cards, quota, limit_s))
    return rate
