"""Redis stalls, restarts from its AOF, and loses everything (then `usage-monitor rebuild`
replays Kafka), on a private redis-server the test owns; afterwards the oracle holds."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from redis.asyncio import Redis

from ..conftest import BIN, KafkaIO
from ..servers import PrivateRedis
from .oracle import Workload, begin, check

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.fault]
SHANGHAI = ZoneInfo("Asia/Shanghai")  # the default billing calendar


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path).start()
    yield server
    server.stop()


async def test_redis_paused_then_restarted_with_aof_mid_stream(
    start_worker: Any, kafka: KafkaIO, names: dict[str, str], private_redis: PrivateRedis
) -> None:
    w = Workload.build(11, cards=60, batches=24)
    worker = await asyncio.to_thread(
        start_worker,
        REDIS_URL=private_redis.url,
        USAGE_MONITOR_BATCH_MAX_RECORDS="200",
        USAGE_MONITOR_RETRY_BACKOFF_MAX_S="1",
    )
    producing = begin(w, kafka, names)
    admin = Redis.from_url(private_redis.url)
    await asyncio.sleep(1.5)
    await admin.execute_command("CLIENT", "PAUSE", "2500", "ALL")  # Redis stalls 2.5 s
    await asyncio.sleep(3)
    await admin.aclose()
    await asyncio.to_thread(private_redis.stop)  # and restarts, from its AOF
    await asyncio.sleep(1)
    await asyncio.to_thread(private_redis.start)
    await producing

    redis = Redis.from_url(private_redis.url)
    try:
        await check(w, redis=redis, names=names, kafka=kafka)
    finally:
        await redis.aclose()
    assert worker.card(w.cards[0]).status_code == 200


TANSU_GROUPS = pytest.mark.skipif(
    os.environ.get("KAFKA_IMPL") == "tansu",
    reason="Tansu refuses offset commits from outside a group that once had members",
)


@TANSU_GROUPS
async def test_redis_restarted_empty_then_rebuilt_by_replay(
    start_worker: Any, kafka: KafkaIO, names: dict[str, str], private_redis: PrivateRedis
) -> None:
    """The documented recovery (docs/operations.md): stop the workers, `usage-monitor rebuild
    --since <start of the cycle>`, start them. The oracle holds before and after, and the
    replayed decisions carry the ids of the first ones."""
    w = Workload.build(51, cards=80, batches=12)
    worker = await asyncio.to_thread(start_worker, REDIS_URL=private_redis.url)
    await kafka.send_many(names["USAGE_MONITOR_TOPIC_EVENTS"], w.profiles())
    await w.produce(kafka, names["USAGE_MONITOR_TOPIC_USAGE"], pause_s=0.05)
    redis = Redis.from_url(private_redis.url)
    try:
        await check(w, redis=redis, names=names, kafka=kafka)
        assert await asyncio.to_thread(worker.stop) == 0
        await redis.aclose()
        private_redis.wipe()  # the disk is gone too
        await asyncio.to_thread(private_redis.start)
        redis = Redis.from_url(private_redis.url)
        assert await redis.dbsize() == 0

        cycle_start = (
            datetime.now(UTC)
            .astimezone(SHANGHAI)
            .replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        )
        done = await asyncio.to_thread(
            subprocess.run,
            # --wait: Tansu keeps a stopped member until its session times out.
            [BIN / "usage-monitor", "rebuild", "--since", cycle_start.isoformat(), "--wait", "30"],
            env=worker.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        await asyncio.to_thread(start_worker, REDIS_URL=private_redis.url)
        await check(w, redis=redis, names=names, kafka=kafka)
    finally:
        await redis.aclose()


@TANSU_GROUPS
async def test_rebuild_refuses_while_a_worker_runs(
    start_worker: Any, names: dict[str, str]
) -> None:
    worker = await asyncio.to_thread(start_worker)
    done = await asyncio.to_thread(
        subprocess.run,
        [str(BIN / "usage-monitor"), "rebuild", "--since", "2026-11-01T00:00:00+08:00"],
        env=worker.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "stop every worker first" in done.stderr
