"""Kafka helpers and worker processes for the benchmark."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from .offer import Offer

KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
PARTITIONS = 12
BIN = Path(sys.executable).parent
LOGS = Path(".local/bench")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Names:
    """Topics and ids unique to one benchmark run (nothing collides with a demo)."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.tag = tag
        self.usage = f"bench{tag}.usage.records"
        self.events = f"bench{tag}.card.events"
        self.commands = f"bench{tag}.card.commands"
        self.alerts = f"bench{tag}.card.alerts"
        self.dlq = f"bench{tag}.usage.records.dlq"
        self.results = f"bench{tag}.card.command_results"
        self.pools = f"bench{tag}.pool.events"
        self.prefix = f"bench{tag}"

    def env(self, app_id: str, port: int, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("USAGE_MONITOR_")}
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": KAFKA,
                "REDIS_URL": REDIS_URL,
                "USAGE_MONITOR_APP_ID": app_id,
                "USAGE_MONITOR_WEB_PORT": str(port),
                "USAGE_MONITOR_TOPIC_USAGE": self.usage,
                "USAGE_MONITOR_TOPIC_EVENTS": self.events,
                "USAGE_MONITOR_TOPIC_COMMANDS": self.commands,
                "USAGE_MONITOR_TOPIC_ALERTS": self.alerts,
                "USAGE_MONITOR_TOPIC_DLQ": self.dlq,
                "USAGE_MONITOR_TOPIC_COMMAND_RESULTS": self.results,
                "USAGE_MONITOR_TOPIC_POOLS": self.pools,
                "USAGE_MONITOR_REDIS_PREFIX": self.prefix,
                "USAGE_MONITOR_TOPIC_PARTITIONS": str(PARTITIONS),
                "USAGE_MONITOR_REDIS_SHARDS": str(PARTITIONS),
                "USAGE_MONITOR_PRODUCER_IDEMPOTENCE": str(os.environ.get("KAFKA_IMPL") != "tansu"),
            }
        )
        # The in-memory commit unless BENCH_DURABILITY says otherwise: the figures stay
        # comparable across Redis servers (Debian's 7.0 cannot confirm fsync with everysec);
        # bench/durability.py measures what durable commits cost beside it.
        env.setdefault("USAGE_MONITOR_DURABILITY", os.environ.get("BENCH_DURABILITY", "memory"))
        env.update(extra)
        return env


async def create_topics(names: Sequence[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])
    finally:
        await admin.close()


async def drop_topics(prefix: str = "bench") -> int:
    """Delete every topic a bench run made (its own, and the ones its workers' faust apps
    made, all named from "bench<tag>"): a long-lived broker otherwise keeps thousands of
    partitions from earlier runs, and at 16 000 of them its 512 MB heap was full, with
    second-long collections in the middle of the latency runs. Like the bench's Redis flush,
    it assumes one bench at a time on the broker."""
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if t.startswith(prefix)]
        for i in range(0, len(doomed), 100):
            await admin.delete_topics(doomed[i : i + 100])
        return len(doomed)
    finally:
        await admin.close()


async def flush_bench_db() -> None:
    """The bench writes only to its own Redis DB (BENCH_REDIS_URL, db 14): start and end clean.
    ASYNC: millions of keys are freed by Redis in the background; a blocking FLUSHDB of them
    outlasted the client's timeout on a slower machine and failed the bench at its very end."""
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        await client.flushdb(asynchronous=True)
    finally:
        await client.aclose()


OFFER_SLICE = 20_000
"""Messages handed over at a time by `produce` (the producer's queue stays bounded)."""


async def produce(topic: str, items: Sequence[tuple[bytes, bytes]]) -> float:
    """Produce keyed messages as fast as the broker takes them, appended straight into record
    batches (`offer.Offer`: one `send` a message cost ~40 µs here, 25 s of a slower
    machine's quick bench for its 600 000 records), and wait for them all (acks=1); returns
    seconds taken."""
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks=1, max_batch_size=1024 * 1024)
    await producer.start()
    started = time.perf_counter()
    try:
        offer = Offer(producer, topic)
        for i in range(0, len(items), OFFER_SLICE):
            await offer.send(items[i : i + OFFER_SLICE])
        await offer.flush()
    finally:
        await producer.stop()
    return time.perf_counter() - started


class WorkerProc:
    def __init__(self, env: dict[str, str], name: str) -> None:
        self.port = int(env["USAGE_MONITOR_WEB_PORT"])
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log = LOGS / f"{name}.log"
        self.proc = subprocess.Popen(
            [str(BIN / "usage-monitor"), "worker", "--loglevel", "warning"],
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=5)

    def wait_healthy(self, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker died: {self.log.read_text()[-2000:]}")
            try:
                if self.http.get("/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"worker not healthy: {self.log}")

    def metric(self, name: str, label: str = "") -> float:
        """Sum of a counter's samples whose labels contain `label`."""
        try:
            text = self.http.get("/metrics").text
        except httpx.HTTPError:
            return 0.0
        pattern = rf"^{re.escape(name)}(\{{[^}}]*\}})? ([0-9.e+-]+)$"
        return sum(
            float(m.group(2))
            for m in re.finditer(pattern, text, re.M)
            if label in (m.group(1) or "")
        )

    def records_done(self) -> float:
        return self.metric("usage_monitor_records_total")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.http.close()
