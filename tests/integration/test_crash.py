"""Kill the worker mid-stream and restart it: nothing is counted twice, nothing is lost, no
command or alert is decided twice, and every notification is delivered once.

Two kinds of kill: SIGKILL at a random moment of a busy stream, and SIGKILL at a named crash
point (``usage_monitor.crash_points``), the exact window between two effects."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import time
from typing import Any

import httpx
import pytest

from simwatch_runtime.redis_client import AnyRedis

from ..conftest import KafkaIO, Worker
from ..receiver import Receiver
from .oracle import Workload, check, start_notifier_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.fault]

# Small batches: many offset commits to die between, and a stream that lasts long enough
# to be killed in the middle on either broker.
BATCH = "150"


def applied(url: str, client: httpx.Client) -> float:
    try:
        text = client.get(f"{url}/metrics", timeout=2).text
    except httpx.HTTPError:
        return 0.0
    m = re.search(r'usage_monitor_records_total\{outcome="applied"\} ([0-9.e+]+)', text)
    return float(m.group(1)) if m else 0.0


async def test_sigkill_at_a_random_moment_then_restart(
    start_worker: Any,
    start_notifier: Any,
    receiver: Receiver,
    kafka: KafkaIO,
    names: dict[str, str],
    topics: dict[str, str],
    redis: AnyRedis,
) -> None:
    w = Workload.build(7, cards=200, batches=50, per_batch=800)
    worker = await asyncio.to_thread(start_worker, USAGE_MONITOR_BATCH_MAX_RECORDS=BATCH)
    await start_notifier_for(w, start_notifier, receiver.url("/hook"), kafka, names, topics)
    await kafka.send_many(names["USAGE_MONITOR_TOPIC_EVENTS"], w.profiles())
    await asyncio.sleep(1.0)
    await kafka.send_many(names["USAGE_MONITOR_TOPIC_USAGE"], list(w.all_records()))

    def kill_when_a_fifth_is_counted() -> float:
        deadline = time.monotonic() + 60
        seen = 0.0
        with httpx.Client() as client:
            while seen < w.stats_records() * 0.2 and time.monotonic() < deadline:
                time.sleep(0.005)
                seen = applied(worker.url, client)
        worker.kill(signal.SIGKILL)
        return seen

    at_kill = await asyncio.to_thread(kill_when_a_fifth_is_counted)
    assert 0 < at_kill < w.stats_records(), f"killed at {at_kill}: not mid-stream"
    restarted = await asyncio.to_thread(start_worker, USAGE_MONITOR_BATCH_MAX_RECORDS=BATCH)
    await check(
        w,
        redis=redis,
        names=names,
        kafka=kafka,
        receiver=receiver,
        ledger=topics["NOTIFIER_REDIS_PREFIX"],
    )
    assert restarted.card(w.cards[0]).status_code == 200


@pytest.mark.parametrize(
    "point",
    [
        "usage.before_durable:10",
        "usage.before_commit:12",
        "outbox.before_publish:8",
        "outbox.before_ack:8",
    ],
)
async def test_sigkill_at_a_crash_point_then_restart(
    point: str,
    start_worker: Any,
    start_notifier: Any,
    receiver: Receiver,
    kafka: KafkaIO,
    names: dict[str, str],
    topics: dict[str, str],
    redis: AnyRedis,
) -> None:
    w = Workload.build(8, cards=120, batches=30)
    doomed: Worker = await asyncio.to_thread(
        start_worker, USAGE_MONITOR_BATCH_MAX_RECORDS="200", SIMWATCH_CRASH_AT=point
    )
    await start_notifier_for(w, start_notifier, receiver.url("/hook"), kafka, names, topics)
    await kafka.send_many(names["USAGE_MONITOR_TOPIC_EVENTS"], w.profiles())
    await w.produce(kafka, names["USAGE_MONITOR_TOPIC_USAGE"], pause_s=0.1)
    assert doomed.proc is not None
    try:
        code = await asyncio.to_thread(doomed.proc.wait, 60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker never reached {point}")
    assert code == -signal.SIGKILL, f"the worker exited {code}, not killed at {point}"
    await asyncio.to_thread(start_worker, USAGE_MONITOR_BATCH_MAX_RECORDS="200")
    await check(
        w,
        redis=redis,
        names=names,
        kafka=kafka,
        receiver=receiver,
        ledger=topics["NOTIFIER_REDIS_PREFIX"],
    )
