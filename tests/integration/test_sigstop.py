"""A worker frozen (SIGSTOP) past the group's session timeout: the other worker takes its
partitions; when it thaws it finds itself out of the group, drops what it held and rejoins.
Its late writes must neither double-count nor double-decide."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import httpx
import pytest

from simwatch_runtime.redis_client import AnyRedis

from ..conftest import KafkaIO
from .oracle import Workload, begin, check

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.fault]

SESSION_TIMEOUT_S = 6  # worker_env's USAGE_MONITOR_BROKER_SESSION_TIMEOUT_S


async def test_worker_frozen_past_the_session_timeout_then_thawed(
    start_worker: Any, kafka: KafkaIO, names: dict[str, str], redis: AnyRedis
) -> None:
    w = Workload.build(41, cards=100, batches=40)
    frozen = await asyncio.to_thread(start_worker, USAGE_MONITOR_BATCH_MAX_RECORDS="200")
    other = await asyncio.to_thread(start_worker, USAGE_MONITOR_BATCH_MAX_RECORDS="200")
    producing = begin(w, kafka, names)
    await asyncio.sleep(2)
    assert frozen.proc is not None
    frozen.proc.send_signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(SESSION_TIMEOUT_S + 5)  # the group moves on without it
    finally:
        frozen.proc.send_signal(signal.SIGCONT)
    await producing
    await check(w, redis=redis, names=names, kafka=kafka)

    async def healthy(worker: Any) -> bool:
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                try:
                    if (await client.get(f"{worker.url}/health", timeout=2)).status_code == 200:
                        return True
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.3)
        return False

    assert await healthy(frozen), "the thawed worker should rejoin and serve again"
    assert await healthy(other)
