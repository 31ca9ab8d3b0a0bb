"""The network to Redis, to Kafka and to a customer's webhook is delayed, black-holed and
reset mid-stream, through `FaultProxy`; afterwards the oracle holds (see `oracle.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from notifier.entrypoints.consumers import EXIT_GRACE_S as NOTIFIER_EXIT_GRACE_S
from simwatch_runtime.liveness import QUIET_S
from simwatch_runtime.redis_client import AnyRedis
from usage_monitor.entrypoints.usage_consumer import EXIT_GRACE_S

from ..conftest import KafkaIO
from ..faultproxy import FaultProxy
from ..receiver import Receiver, customer
from ..servers import PrivateKafka, PrivateRedis, free_port
from .oracle import Workload, begin, check, start_notifier_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.fault]

WORKER = {"USAGE_MONITOR_BATCH_MAX_RECORDS": "200", "USAGE_MONITOR_RETRY_BACKOFF_MAX_S": "1"}
SUPERVISED = {
    **WORKER,
    # A silent stall after the faults (seen once in CI: nothing applied, nothing logged)
    # ends the worker after this long, for the test's supervisor to restart it. Only where
    # a supervisor is: elsewhere a stop would fail the test, and the default (120 s) holds.
    "USAGE_MONITOR_CONSUMER_STALL_S": "30",
}


async def faults(proxy: FaultProxy, blackhole_s: float) -> None:
    """The same sequence for every link: slow, reset twice, then silent past its timeouts."""
    proxy.delay(0.05)
    await asyncio.sleep(2)
    proxy.delay(0)
    for _ in range(2):
        proxy.reset()
        await asyncio.sleep(1)
    proxy.blackhole()
    await asyncio.sleep(blackhole_s)
    proxy.heal()


@pytest.fixture
def kafka_behind_proxy(tmp_path: Path) -> Iterator[tuple[PrivateKafka, FaultProxy]]:
    """A private broker whose client listener is advertised at the proxy's port, so the
    services reach it only through the proxy, metadata and all."""
    if os.environ.get("KAFKA_IMPL") == "tansu" or not PrivateKafka.available():
        pytest.skip("needs the Apache Kafka jars (scripts/stack.sh fetch)")
    port = free_port()
    broker = PrivateKafka(tmp_path / "kafka", advertised=port).start()
    try:
        proxy = FaultProxy(broker.external, port=port).start()
        yield broker, proxy
        proxy.stop()
    finally:
        broker.stop()  # even when the proxy's stop failed: a broker left running competes


@pytest.fixture
async def kafka_io(kafka_behind_proxy: tuple[PrivateKafka, FaultProxy]) -> AsyncIterator[KafkaIO]:
    io = KafkaIO(kafka_behind_proxy[0].bootstrap)  # the test's own traffic: not through the proxy
    await io.producer.start()
    yield io
    await io.producer.stop()


async def test_redis_link_delayed_reset_and_blackholed_past_the_socket_timeout(
    start_worker: Any,
    start_notifier: Any,
    receiver: Receiver,
    kafka: KafkaIO,
    names: dict[str, str],
    topics: dict[str, str],
    tmp_path: Path,
) -> None:
    """The worker and the notifier both reach Redis through the proxy."""
    server = PrivateRedis(tmp_path / "redis").start()
    proxy = FaultProxy(server.port).start()
    direct = Redis.from_url(server.url)
    try:
        w = Workload.build(31, cards=100, batches=30)
        via_proxy = f"redis://{proxy.address}/0"
        worker = await asyncio.to_thread(start_worker, REDIS_URL=via_proxy, **WORKER)
        notifier = await start_notifier_for(
            w, start_notifier, receiver.url("/hook"), kafka, names, topics, REDIS_URL=via_proxy
        )
        producing = begin(w, kafka, names)
        await asyncio.sleep(1.5)
        await faults(proxy, blackhole_s=12)  # both services' Redis socket timeout is 10 s
        await producing
        # A webhook sent just before the notifier's ledger update was cut goes out again
        # when its lease ends, with the same webhook-id: at least once, never lost.
        await check(
            w, redis=direct, names=names, kafka=kafka, receiver=receiver, exactly_once=False
        )
        again = sum(n - 1 for n in Counter(receiver.webhook_ids("/hook")).values())
        assert again <= proxy.disturbed, f"{again} repeats for {proxy.disturbed} broken links"
        assert proxy.disturbed > 0
        for service in (worker, notifier):
            assert service.proc is not None and service.proc.poll() is None
    finally:
        await direct.aclose()
        proxy.stop()
        server.stop()


async def test_kafka_link_delayed_reset_and_blackholed_past_the_session_timeout(
    kafka_behind_proxy: tuple[PrivateKafka, FaultProxy],
    kafka_io: KafkaIO,
    start_worker: Any,  # after the broker: stopped before it
    names: dict[str, str],
    redis: AnyRedis,
) -> None:
    _, proxy = kafka_behind_proxy
    w = Workload.build(32, cards=100, batches=30)
    worker = await asyncio.to_thread(
        start_worker, KAFKA_BOOTSTRAP_SERVERS=proxy.address, **SUPERVISED
    )
    producing = begin(w, kafka_io, names)
    await asyncio.sleep(1.5)
    await faults(proxy, blackhole_s=9)  # the group's session timeout is 6 s
    await producing

    # aiokafka's coordinator or fetcher can die of uvloop's closed-transport RuntimeError;
    # the consumer loop then ends the worker on purpose, and its supervisor restarts it
    # (here: the test, whenever that happens, not only before the check). Known, not
    # fixed: see docs/reliability.md.
    async with _supervised(worker, start_worker, proxy, SUPERVISED):
        await check(w, redis=redis, names=names, kafka=kafka_io)
    assert proxy.disturbed > 0


@contextlib.asynccontextmanager
async def _supervised(
    worker: Any, start_worker: Any, proxy: FaultProxy, env: dict[str, str]
) -> AsyncIterator[list[Any]]:
    """Restart the worker whenever it has ended, as its supervisor would, for as long as the
    block runs; yields the workers started (a restart appends its own)."""
    workers = [worker]

    async def supervise() -> None:
        while True:
            await asyncio.sleep(0.5)
            if workers[-1].proc is not None and workers[-1].proc.poll() is not None:
                workers.append(
                    await asyncio.to_thread(
                        start_worker, KAFKA_BOOTSTRAP_SERVERS=proxy.address, **env
                    )
                )

    supervisor = asyncio.create_task(supervise())
    try:
        yield workers
    finally:
        supervisor.cancel()


async def test_broker_restarted_mid_stream(
    kafka_behind_proxy: tuple[PrivateKafka, FaultProxy],
    kafka_io: KafkaIO,
    start_worker: Any,  # after the broker: stopped before it
    names: dict[str, str],
    redis: AnyRedis,
) -> None:
    broker, proxy = kafka_behind_proxy
    w = Workload.build(33, cards=100, batches=30)
    worker = await asyncio.to_thread(start_worker, KAFKA_BOOTSTRAP_SERVERS=proxy.address, **WORKER)
    producing = begin(w, kafka_io, names)
    await asyncio.sleep(2)
    await asyncio.to_thread(broker.stop)  # SIGTERM: a controlled shutdown, then back
    await asyncio.sleep(2)
    await asyncio.to_thread(broker.start)
    await producing
    await check(w, redis=redis, names=names, kafka=kafka_io)
    assert worker.proc is not None and worker.proc.poll() is None


async def test_webhook_link_delayed_reset_and_blackholed_past_the_request_timeout(
    start_worker: Any,
    start_notifier: Any,
    receiver: Receiver,
    kafka: KafkaIO,
    names: dict[str, str],
    topics: dict[str, str],
    redis: AnyRedis,
) -> None:
    proxy = FaultProxy(receiver.port).start()
    # The endpoint answers slowly, so deliveries are in flight whenever a fault strikes.
    receiver.script["/hook"] = [("sleep", 0.3)]
    try:
        w = Workload.build(34, cards=100, batches=30)
        await asyncio.to_thread(start_worker, **WORKER)
        notifier = await start_notifier_for(
            w,
            start_notifier,
            f"http://{proxy.address}/hook",
            kafka,
            names,
            topics,
            NOTIFIER_RETRY_SCHEDULE_S="[0.3, 0.5, 1, 1, 2, 2, 3, 3, 5]",
        )
        producing = begin(w, kafka, names, pause_s=0.4)
        # Strike while alerts flow, whenever that is on this broker: from the first webhook.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while not receiver.hits["/hook"] and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for _ in range(2):
            proxy.reset()
            await asyncio.sleep(0.5)
        proxy.blackhole()
        await asyncio.sleep(4)  # the webhook timeout is 1 s
        proxy.heal()
        proxy.delay(0.05)
        await asyncio.sleep(2)
        proxy.delay(0)
        await producing
        # A request the endpoint received but whose answer the network lost is sent again,
        # with the same webhook-id (Standard Webhooks: receivers de-duplicate by it).
        await check(w, redis=redis, names=names, kafka=kafka, receiver=receiver, exactly_once=False)
        again = sum(n - 1 for n in Counter(receiver.webhook_ids("/hook")).values())
        assert again <= proxy.disturbed, f"{again} repeats for {proxy.disturbed} lost answers"
        metrics = httpx.get(f"{notifier.url}/metrics", timeout=5).text
        retried = re.search(
            r'notifier_deliveries_total\{channel="webhook",outcome="retry"\} (\S+)', metrics
        )
        assert retried and float(retried.group(1)) > 0, "the faults never hit a delivery"
    finally:
        proxy.stop()


STALL_S = 5
"""The watchdogs' stall timeout in the two tests of them below (the outage test's after the
outage is `OUTAGE_STALL_S`)."""
OUTAGE_STALL_S = 15
"""Above the group's session timeout (6 s), so that the rejoin after the outage, a rebalance
of its own, is not what the watchdogs see."""


async def _watched_worker(start_worker: Any, proxy: FaultProxy, stall_s: float = STALL_S) -> Any:
    """A worker reaching Kafka through `proxy`, with a short stall timeout."""
    return await asyncio.to_thread(
        start_worker,
        KAFKA_BOOTSTRAP_SERVERS=proxy.address,
        **{**WORKER, "USAGE_MONITOR_CONSUMER_STALL_S": str(stall_s)},
    )


async def _stops_while_cut_off(proc: subprocess.Popen[bytes], proxy: FaultProxy) -> float:
    """Seconds until `proc` exits (at most 90) while `proxy` is black-holed; then heals it."""
    loop = asyncio.get_running_loop()
    cut_at = loop.time()
    try:
        while proc.poll() is None and loop.time() - cut_at < 90:
            await asyncio.sleep(0.5)
        return loop.time() - cut_at
    finally:
        proxy.heal()


async def test_a_worker_cut_off_from_kafka_stops_by_itself_and_its_restart_counts_the_rest(
    kafka_behind_proxy: tuple[PrivateKafka, FaultProxy],
    kafka_io: KafkaIO,
    start_worker: Any,
    names: dict[str, str],
    redis: AnyRedis,
    tmp_path: Path,
) -> None:
    """The stall watchdog (`simwatch_runtime/liveness.py`), end to end: the worker's Kafka link
    goes silent (no error, no fetch response) while records wait; after its stall timeout
    the worker stops on its own, and a restart counts every record exactly once."""
    _, proxy = kafka_behind_proxy
    w = Workload.build(33, cards=50, batches=20)
    worker = await _watched_worker(start_worker, proxy)
    assert worker.proc is not None
    proxy.blackhole()
    producing = begin(w, kafka_io, names)  # straight to the broker: the records wait
    stopped_after = await _stops_while_cut_off(worker.proc, proxy)
    await producing
    assert worker.proc.poll() is not None, "the cut-off worker should have stopped by itself"
    log_text = (tmp_path / "worker-0.log").read_text()
    # Either consumer's watchdog: faust's waits on the same link (the workload's profiles).
    assert " stalled: " in log_text, log_text[-3000:]
    # No fetch response for QUIET_S makes the records waiting, then the stall timeout; the
    # stop waits on the unreachable broker until the exit grace ends it.
    assert worker.proc.returncode != 0, "a stall is a failure, for the supervisor to see"
    assert stopped_after < QUIET_S + STALL_S + EXIT_GRACE_S + 25, stopped_after
    await asyncio.to_thread(start_worker, KAFKA_BOOTSTRAP_SERVERS=proxy.address, **WORKER)
    await check(w, redis=redis, names=names, kafka=kafka_io)


async def test_a_notifier_cut_off_from_kafka_stops_by_itself_and_its_restart_delivers_the_rest(
    kafka_behind_proxy: tuple[PrivateKafka, FaultProxy],
    kafka_io: KafkaIO,
    start_notifier: Any,
    receiver: Receiver,
    topics: dict[str, str],
    tmp_path: Path,
) -> None:
    """The notifier's stall watchdogs, end to end: its Kafka link goes silent (no error, no
    fetch response) while alerts wait; after its stall timeout the notifier stops on its
    own, and a restart delivers every alert, each once."""
    _, proxy = kafka_behind_proxy
    env = {"KAFKA_BOOTSTRAP_SERVERS": proxy.address, "NOTIFIER_CONSUMER_STALL_S": str(STALL_S)}
    notifier = await asyncio.to_thread(start_notifier, **env)  # it creates the topics
    assert notifier.proc is not None
    settings = customer("acme", webhook=receiver.url("/hook"))
    await kafka_io.send(topics["NOTIFIER_TOPIC_SETTINGS"], settings, key="acme")
    stored = 'notifier_settings_total{outcome="stored"} 1.0'
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while stored not in httpx.get(f"{notifier.url}/metrics", timeout=5).text:
        assert loop.time() < deadline, "the customer's settings were not stored"
        await asyncio.sleep(0.2)
    cards = [f"8986040000000000{n:04d}" for n in range(20)]
    await kafka_io.send(topics["NOTIFIER_TOPIC_ALERTS"], _alert(cards[0]), key=cards[0])
    deadline = loop.time() + 60
    while not receiver.hits["/hook"] and loop.time() < deadline:
        await asyncio.sleep(0.1)
    assert receiver.hits["/hook"], "the first alert was not delivered before the cut"
    proxy.blackhole()
    for card in cards[1:]:  # straight to the broker: the alerts wait
        await kafka_io.send(topics["NOTIFIER_TOPIC_ALERTS"], _alert(card), key=card)
    stopped_after = await _stops_while_cut_off(notifier.proc, proxy)
    assert notifier.proc.poll() is not None, "the cut-off notifier should have stopped by itself"
    log_text = (tmp_path / "notifier-0.log").read_text()
    assert "notifier consumer of" in log_text and " stalled: " in log_text, log_text[-3000:]
    assert notifier.proc.returncode == 70, "a stall is a failure, for the supervisor to see"
    assert stopped_after < QUIET_S + STALL_S + NOTIFIER_EXIT_GRACE_S + 25, stopped_after
    await asyncio.to_thread(start_notifier, **env)
    deadline = loop.time() + 60
    while len(set(receiver.webhook_ids("/hook"))) < len(cards) and loop.time() < deadline:
        await asyncio.sleep(0.2)
    ids = receiver.webhook_ids("/hook")
    assert sorted(set(ids)) == sorted(_alert(c)["alert_id"] for c in cards)
    assert len(ids) == len(cards), f"each alert delivered once: {Counter(ids)}"


def _alert(card: str) -> dict[str, Any]:
    return {
        "alert_id": f"alr-{card[-6:]}-usage_threshold-80",
        "type": "usage_threshold",
        "iccid": card,
        "customer_id": "acme",
        "cycle": "2026-11-01",
        "occurred_at": datetime.now(UTC).isoformat(),
        "percent": 80,
        "used_bytes": 800,
        "quota_bytes": 1000,
    }


async def test_a_worker_with_no_broker_reachable_waits_instead_of_restarting(
    kafka_behind_proxy: tuple[PrivateKafka, FaultProxy],
    kafka_io: KafkaIO,
    start_worker: Any,
    names: dict[str, str],
    redis: AnyRedis,
    tmp_path: Path,
) -> None:
    """No broker accepts a connection (the proxy is gone): an outage, which aiokafka logs
    and retries, not a stall; the worker keeps its card API up and counts when it is back."""
    broker, proxy = kafka_behind_proxy
    w = Workload.build(34, cards=50, batches=20)
    worker = await _watched_worker(start_worker, proxy, OUTAGE_STALL_S)
    assert worker.proc is not None
    proxy.stop()  # every connection reset, and the port refuses new ones
    producing = begin(w, kafka_io, names)
    await asyncio.sleep(QUIET_S + OUTAGE_STALL_S + 5)  # the quiet rule, a stall timeout, some
    await producing
    assert worker.proc.poll() is None, "an outage must not restart the worker"
    log_text = (tmp_path / "worker-0.log").read_text()
    assert "no Kafka broker reachable" in log_text, log_text[-3000:]
    assert "stalled" not in log_text, log_text[-3000:]
    back = FaultProxy(broker.external, port=proxy.port).start()
    try:
        # After an outage past the session timeout, faust's own consumer rejoined its group
        # and then applied nothing, in about one run in three on a slower machine
        # (docs/reliability.md, "Known limits"); its watchdog then stops the worker, for the
        # supervisor (here the test) to restart it.
        env = {**WORKER, "USAGE_MONITOR_CONSUMER_STALL_S": str(OUTAGE_STALL_S)}
        async with _supervised(worker, start_worker, proxy, env) as workers:
            await check(w, redis=redis, names=names, kafka=kafka_io)
        if len(workers) > 1:  # only ever for a stall its watchdog saw, never a crash
            log_text = (tmp_path / "worker-0.log").read_text()
            assert "faust consumer of" in log_text and "stalled" in log_text, log_text[-3000:]
            assert worker.proc.returncode != 0
    finally:
        back.stop()
