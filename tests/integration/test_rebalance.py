"""Workers join and leave a consumer group mid-stream: every record is counted exactly once
and every partition keeps being processed."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from typing import Any

import pytest

from simwatch_runtime.redis_client import AnyRedis

from ..conftest import KafkaIO
from .helpers import iccid, record, upsert, wait_for_totals

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_add_and_remove_a_worker_mid_stream(
    start_worker: Any, kafka: KafkaIO, names: dict[str, str], redis: AnyRedis
) -> None:
    rng = random.Random(3)
    cards = [iccid(20_000 + i) for i in range(300)]
    expected: dict[str, int] = defaultdict(int)
    batches = []
    for b in range(30):
        batch = []
        for i in range(1000):
            card = rng.choice(cards)
            nbytes = rng.randint(0, 5000)
            batch.append((card, record(card, f"rb-{b}-{i}", nbytes)))
            expected[card] += nbytes
        batches.append(batch + rng.sample(batch, 50))  # and redeliveries
    first = start_worker(USAGE_MONITOR_BATCH_MAX_RECORDS="300")
    await kafka.send_many(
        names["USAGE_MONITOR_TOPIC_EVENTS"], [(c, upsert(c, 10**9)) for c in cards]
    )

    async def stream() -> None:
        for batch in batches:
            await kafka.send_many(names["USAGE_MONITOR_TOPIC_USAGE"], batch)
            await asyncio.sleep(0.25)

    producing = asyncio.create_task(stream())
    await asyncio.sleep(2)
    second = await asyncio.to_thread(start_worker, USAGE_MONITOR_BATCH_MAX_RECORDS="300")
    await asyncio.sleep(3)
    assert first.stop() == 0  # SIGTERM: finishes its batch, commits, leaves the group
    await producing

    got = await wait_for_totals(redis, names["USAGE_MONITOR_REDIS_PREFIX"], dict(expected), 90)
    assert got == expected
    assert second.card(cards[0]).json()["used_bytes"] == expected[cards[0]]
    assert second.proc is not None and second.proc.poll() is None
