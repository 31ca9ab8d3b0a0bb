"""Scale out: several workers in one group over a 12-partition topic, a three-master Redis
Cluster behind them and the notifier, with a worker joining and another leaving mid-stream."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from simwatch_runtime.redis_client import connect

from ..conftest import KafkaIO
from ..receiver import Receiver
from ..servers import LocalRedisCluster
from .oracle import Workload, begin, check, start_notifier_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.cluster]

PARTITIONS = "12"


async def test_workers_join_and_leave_over_a_redis_cluster(
    start_worker: Any,
    start_notifier: Any,
    receiver: Receiver,
    kafka: KafkaIO,
    names: dict[str, str],
    topics: dict[str, str],
    redis_cluster: LocalRedisCluster,
) -> None:
    w = Workload.build(21, cards=150, batches=24)
    extra = {
        "REDIS_URL": redis_cluster.url,
        "USAGE_MONITOR_TOPIC_PARTITIONS": PARTITIONS,
        "USAGE_MONITOR_REDIS_SHARDS": PARTITIONS,
        "USAGE_MONITOR_BATCH_MAX_RECORDS": "300",
    }
    first = await asyncio.to_thread(start_worker, **extra)
    second = await asyncio.to_thread(start_worker, **extra)
    await start_notifier_for(
        w, start_notifier, receiver.url("/hook"), kafka, names, topics, REDIS_URL=redis_cluster.url
    )
    await kafka.send_many(names["USAGE_MONITOR_TOPIC_EVENTS"], w.profiles())

    producing = asyncio.create_task(w.produce(kafka, names["USAGE_MONITOR_TOPIC_USAGE"]))
    await asyncio.sleep(2)
    third = await asyncio.to_thread(start_worker, **extra)  # joins mid-stream
    await asyncio.sleep(2)
    assert await asyncio.to_thread(first.stop) == 0  # leaves mid-stream, after committing
    await producing

    client = connect(redis_cluster.url)
    try:
        await check(
            w,
            redis=client,
            names=names,
            kafka=kafka,
            shards=int(PARTITIONS),
            receiver=receiver,
            ledger=topics["NOTIFIER_REDIS_PREFIX"],
        )
    finally:
        await client.aclose()
    assert all(n > 0 for n in redis_cluster.key_counts()), "every master holds some shards"
    for card in w.cards[:: len(w.cards) // 10]:  # the status API reads the cluster
        body = third.card(card).json()
        assert body["used_bytes"] == w.expected[card]
        assert body["state"] == ("suspended" if card in w.over else "active")
    assert second.proc is not None and second.proc.poll() is None


@pytest.mark.fault
async def test_a_cluster_master_restarted_mid_stream(
    start_worker: Any, kafka: KafkaIO, names: dict[str, str], tmp_path: Path
) -> None:
    """One of three masters goes down (SIGTERM) for 3 s and comes back from its AOF: the
    slots it serves are unavailable meanwhile, the workers retry, the oracle holds."""
    cluster = LocalRedisCluster(tmp_path / "cluster").start()
    try:
        w = Workload.build(22, cards=100, batches=30)
        extra = {
            "REDIS_URL": cluster.url,
            "USAGE_MONITOR_TOPIC_PARTITIONS": PARTITIONS,
            "USAGE_MONITOR_REDIS_SHARDS": PARTITIONS,
            "USAGE_MONITOR_BATCH_MAX_RECORDS": "200",
            "USAGE_MONITOR_RETRY_BACKOFF_MAX_S": "1",
        }
        for _ in range(2):
            await asyncio.to_thread(start_worker, **extra)
        producing = begin(w, kafka, names)
        await asyncio.sleep(2)
        victim = cluster.nodes[1]
        await asyncio.to_thread(victim.stop)
        await asyncio.sleep(3)
        await asyncio.to_thread(victim.start)
        await producing
        client = connect(cluster.url)
        try:
            await check(w, redis=client, names=names, kafka=kafka, shards=int(PARTITIONS))
        finally:
            await client.aclose()
    finally:
        cluster.stop()
