"""What this machine allows at all: raw Kafka reads, and the ingest script driven directly."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

from aiokafka import AIOKafkaConsumer
from redis.asyncio import Redis

from simwatch_contracts import UsageRecord
from usage_monitor.adapters import dedupe
from usage_monitor.adapters.keys import Keys
from usage_monitor.adapters.redis_store import RedisStore
from usage_monitor.domain.cycles import cycle_of
from usage_monitor.ports import IngestRow

from .procs import KAFKA, PARTITIONS, REDIS_URL, Names


async def getmany_rate(topic: str, total: int, group: str) -> float:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=KAFKA,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        seen, started = 0, 0.0
        while seen < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            started = started or time.perf_counter()
            seen += sum(len(v) for v in batch.values())
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def script_rate(names: Names, values: list[bytes], batch: int = 5000) -> float:
    """ingest.lua at full speed from one client (records parsed beforehand, not timed)."""
    redis = Redis.from_url(REDIS_URL)
    keys = Keys(f"{names.prefix}-ceiling", PARTITIONS)
    store = RedisStore(redis, keys, record_ttl_s=86400, event_ttl_s=86400)
    rows = []
    for raw in values:
        r = UsageRecord.model_validate_json(raw)
        rows.append(
            IngestRow(
                r.record_id,
                r.iccid,
                "",
                cycle_of(r.event_time, "Asia/Shanghai"),
                r.total_bytes,
                day=dedupe.window(r.event_time),
            )
        )
    try:
        started = time.perf_counter()
        for i in range(0, len(rows), batch):
            groups: dict[int, list[IngestRow]] = defaultdict(list)
            for row in rows[i : i + batch]:
                groups[keys.shard(row.iccid)].append(row)
            await asyncio.gather(*(store.ingest(s, g) for s, g in groups.items()))
        return len(rows) / (time.perf_counter() - started)
    finally:
        await redis.aclose()
