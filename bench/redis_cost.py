"""Redis CPU per counted record: the ingest script's CPU time (Redis's own INFO counters, on a
private server) per record, beside a plain pipelined SET on the same server in the same run.
The ratio holds across machines where records/s do not."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from redis.asyncio import Redis

from simwatch_contracts import UsageRecord
from usage_monitor.adapters import dedupe
from usage_monitor.adapters.keys import Keys
from usage_monitor.adapters.redis_store import RedisStore
from usage_monitor.domain.cycles import cycle_of
from usage_monitor.ports import IngestRow

from .private_redis import cpu_seconds, private_redis

BATCH = 5000
PIPELINE = 1000


def rows_of(values: list[bytes]) -> list[IngestRow]:
    rows = []
    for raw in values:
        r = UsageRecord.model_validate_json(raw)
        cycle = cycle_of(r.event_time, "Asia/Shanghai")
        day = dedupe.window(r.event_time)
        rows.append(IngestRow(r.record_id, r.iccid, "", cycle, r.total_bytes, day=day))
    return rows


async def _ingest_all(store: RedisStore, keys: Keys, rows: list[IngestRow]) -> None:
    for i in range(0, len(rows), BATCH):
        groups: dict[int, list[IngestRow]] = defaultdict(list)
        for row in rows[i : i + BATCH]:
            groups[keys.shard(row.iccid)].append(row)
        await asyncio.gather(*(store.ingest(s, g) for s, g in groups.items()))


async def _sets(redis: Redis, n: int) -> None:
    for start in range(0, n, PIPELINE):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(start, min(n, start + PIPELINE)):
                pipe.set(f"set:{i}", "1")
            await pipe.execute()


async def cost(values: list[bytes], shards: int = 12) -> tuple[float, float]:
    """(Redis CPU microseconds per counted record, per pipelined SET)."""
    rows = rows_of(values)
    async with private_redis() as redis:
        keys = Keys("sw", shards)
        store = RedisStore(redis, keys, record_ttl_s=86_400, event_ttl_s=86_400)
        await _ingest_all(store, keys, rows[:BATCH])  # scripts loaded, connections open
        before = await cpu_seconds(redis)
        await _ingest_all(store, keys, rows[BATCH:])
        per_record = (await cpu_seconds(redis) - before) / max(1, len(rows) - BATCH)
        await _sets(redis, PIPELINE)
        before = await cpu_seconds(redis)
        await _sets(redis, len(rows))
        per_set = (await cpu_seconds(redis) - before) / len(rows)
    return per_record * 1e6, per_set * 1e6
