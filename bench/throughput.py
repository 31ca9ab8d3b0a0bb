"""Sustained records/s of real workers, and of the naive design, on the same records."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis.asyncio import Redis

from simwatch_contracts import UsageRecord

from .procs import KAFKA, REDIS_URL, Names, WorkerProc, free_port


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


WARM_UP = 0.05
"""The window opens once this share of the records is done: the first batches pay for the
worker's first reads of every card and template, which a running worker has long paid."""
MIN_WINDOW_S = 1.0
"""A window shorter than this measures nothing: then the run goes on to the last record."""


def measure(workers: list[WorkerProc], total: int, timeout_s: float = 600) -> float:
    """records/s while every worker is working: from the moment each has counted records
    until `total` records have an outcome or, with several workers, until one of them has
    read all of its partitions (its consumer lag is 0: the records were produced
    beforehand, so it has nothing left to do).

    Workers join the group one after the other, so the first may drain part of its
    partitions alone; it then runs dry before the others, and the tail of the run is one
    worker's rate. That tail was counted before, and two workers read anywhere from 1.1x to
    1.9x one worker from run to run."""
    deadline = time.monotonic() + timeout_s
    first_at = first_done = 0.0
    while True:
        each = [w.records_done() for w in workers]
        done = sum(each)
        now = time.perf_counter()
        if all(each) and done >= WARM_UP * total and not first_at:
            first_at, first_done = now, done
        finished = done >= total
        if first_at and not finished and len(workers) > 1 and now - first_at > MIN_WINDOW_S:
            finished = any(w.metric("usage_monitor_consumer_lag") == 0 for w in workers)
        if finished:
            return (done - first_done) / (now - first_at) if now > first_at else float("nan")
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done:.0f} of {total} records in {timeout_s} s")
        time.sleep(0.05)


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
