"""Shared fixtures: real Kafka and Redis (started by scripts/stack.sh), unique names per test,
and a real `usage-monitor worker` process."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from redis.exceptions import RedisError

from simwatch_runtime.durability import Barrier, Durability
from simwatch_runtime.redis_client import AnyRedis, connect

from .receiver import Receiver
from .servers import LocalRedisCluster, free_port

ROOT = Path(__file__).resolve().parent.parent
KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
# DB 15: tests never touch the data of a demo running on the same Redis. `make test-cluster`
# sets a redis+cluster:// URL: every integration flow then runs on a Redis Cluster.
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
BIN = Path(sys.executable).parent


@pytest.fixture
def names() -> dict[str, str]:
    """Topic names, Redis prefix and app id unique to one test."""
    tag = uuid.uuid4().hex[:10]
    return {
        "USAGE_MONITOR_APP_ID": f"um-{tag}",
        "USAGE_MONITOR_TOPIC_USAGE": f"t{tag}.usage.records",
        "USAGE_MONITOR_TOPIC_EVENTS": f"t{tag}.card.events",
        "USAGE_MONITOR_TOPIC_COMMANDS": f"t{tag}.card.commands",
        "USAGE_MONITOR_TOPIC_ALERTS": f"t{tag}.card.alerts",
        "USAGE_MONITOR_TOPIC_DECISIONS": f"t{tag}.card.decisions",
        "USAGE_MONITOR_TOPIC_COMMAND_RESULTS": f"t{tag}.card.command_results",
        "USAGE_MONITOR_TOPIC_POOLS": f"t{tag}.pool.events",
        "USAGE_MONITOR_TOPIC_DLQ": f"t{tag}.usage.records.dlq",
        "USAGE_MONITOR_REDIS_PREFIX": f"t{tag}",
    }


async def _forget(client: AnyRedis, prefix: str) -> None:
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
    for key in keys:  # one by one: on a cluster they live in different slots
        await client.delete(key)


@pytest.fixture
async def redis(names: dict[str, str]) -> AsyncIterator[AnyRedis]:
    """The Redis the tests' services use: one server, or a cluster (`make test-cluster`)."""
    client = connect(REDIS_URL)
    yield client
    await _forget(client, names["USAGE_MONITOR_REDIS_PREFIX"])
    await client.aclose()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    """A three-master Redis Cluster on loopback, shared by the tests that ask for it."""
    cluster = LocalRedisCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["single", "cluster"])
async def any_redis(
    request: pytest.FixtureRequest, names: dict[str, str]
) -> AsyncIterator[AnyRedis]:
    """A client for the shared single Redis, then for a Redis Cluster: the same test twice."""
    url = request.getfixturevalue("redis_cluster").url if request.param == "cluster" else REDIS_URL
    client = connect(url)
    yield client
    await _forget(client, names["USAGE_MONITOR_REDIS_PREFIX"])
    await client.aclose()


_STRONGEST: dict[str, str] = {}


def durability_for(url: str) -> str:
    """The services' default durability (`fsync`) where the server can confirm it, else
    `memory`: the shared development Redis may be Debian's 7.0 with `appendfsync everysec`
    (no WAITAOF). `TEST_DURABILITY` forces a level. The durability tests set theirs."""
    forced = os.environ.get("TEST_DURABILITY")
    if forced:
        return forced
    if url not in _STRONGEST:

        async def probe() -> str:
            client = connect(url, socket_connect_timeout=5, socket_timeout=5)
            barrier = Barrier(client, Durability.FSYNC, lambda tag: f"probe:{{{tag}}}")
            try:
                return "memory" if await barrier.check() else "fsync"
            except (RedisError, OSError):  # no server there (a test of that): any level
                return "memory"
            finally:
                await barrier.close()
                await client.aclose()

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            _STRONGEST[url] = pool.submit(asyncio.run, probe()).result(timeout=30)
    return _STRONGEST[url]


class KafkaIO:
    """Produce test input and read what the services wrote, from the beginning of a topic."""

    def __init__(self, bootstrap: str = KAFKA) -> None:
        self.bootstrap = bootstrap
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)

    async def send(self, topic: str, value: Any, key: str | None = None) -> None:
        """Returns once the broker has the message: a test that starts a service next must
        not race its own input (the producer only buffers it, and a blocking start-up in the
        test holds the loop that would send it)."""
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        await (await self.producer.send(topic, raw, key=key.encode() if key else None))

    async def send_many(self, topic: str, items: list[tuple[str | None, Any]]) -> None:
        futures = []
        for key, value in items:
            raw = value if isinstance(value, bytes) else json.dumps(value).encode()
            futures.append(await self.producer.send(topic, raw, key=key.encode() if key else None))
        await asyncio.gather(*futures)

    @staticmethod
    async def _partitions(consumer: AIOKafkaConsumer, topic: str, deadline: float) -> set[int]:
        while time.monotonic() < deadline:
            await consumer._client.force_metadata_update()
            parts = consumer._client.cluster.partitions_for_topic(topic)
            if parts:
                return set(parts)
            await asyncio.sleep(0.2)
        return set()

    async def read(
        self, topic: str, until: Callable[[list[dict[str, Any]]], bool], timeout_s: float = 60
    ) -> list[dict[str, Any]]:
        """All JSON messages of `topic` once `until(messages)` holds (or the timeout passes)."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            deadline = time.monotonic() + timeout_s
            parts = await self._partitions(consumer, topic, deadline)
            if not parts:
                return []
            tps = [TopicPartition(topic, p) for p in parts]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            out: list[dict[str, Any]] = []
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=200)
                for msgs in batch.values():
                    out += [json.loads(m.value) for m in msgs]
                if until(out):
                    break
            return out
        finally:
            await consumer.stop()


@pytest.fixture
async def kafka() -> AsyncIterator[KafkaIO]:
    io = KafkaIO()
    await io.producer.start()
    yield io
    await io.producer.stop()


class Worker:
    """A real service process (by default `usage-monitor worker`) with an HTTP health check."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        command: list[str] | None = None,
        port_var: str = "USAGE_MONITOR_WEB_PORT",
    ) -> None:
        self.env = env
        self.log_path = log_path
        self.port = int(env[port_var])
        self.command = command or [str(BIN / "usage-monitor"), "worker", "--loglevel", "warning"]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60) -> Worker:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(
            f"worker not healthy in {timeout_s}s: {self.log_path.read_text()[-3000:]}"
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)

    def stop(self) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def card(self, iccid: str) -> httpx.Response:
        return httpx.get(f"{self.url}/cards/{iccid}", timeout=5)


def worker_env(names: dict[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("USAGE_MONITOR_")}
    env.update(names)
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": KAFKA,
            "REDIS_URL": REDIS_URL,
            "USAGE_MONITOR_WEB_PORT": str(free_port()),
            "USAGE_MONITOR_TOPIC_PARTITIONS": "4",
            "USAGE_MONITOR_REDIS_SHARDS": "4",
            "USAGE_MONITOR_BROKER_SESSION_TIMEOUT_S": "6",
            "USAGE_MONITOR_OUTBOX_SWEEP_INTERVAL_S": "0.5",
            # Tansu does not implement InitProducerId (idempotent producers).
            "USAGE_MONITOR_PRODUCER_IDEMPOTENCE": str(os.environ.get("KAFKA_IMPL") != "tansu"),
        }
    )
    env.update(extra)
    env.setdefault("USAGE_MONITOR_DURABILITY", durability_for(env["REDIS_URL"]))
    return env


@pytest.fixture
def start_worker(names: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def start(**extra: str) -> Worker:
        env = worker_env(names, **extra)
        w = Worker(env, tmp_path / f"worker-{len(workers)}.log")
        workers.append(w)
        return w.start()

    yield start
    for w in workers:
        w.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver.on_free_port()
    runner = await rec.serve()
    yield rec
    await runner.cleanup()


@pytest.fixture
def topics() -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    return {
        "NOTIFIER_TOPIC_ALERTS": f"n{tag}.card.alerts",
        "NOTIFIER_TOPIC_SETTINGS": f"n{tag}.customer.settings",
        "NOTIFIER_TOPIC_DLQ": f"n{tag}.dlq",
        "NOTIFIER_TOPIC_DELIVERY_DLQ": f"n{tag}.deliveries.dlq",
        "NOTIFIER_REDIS_PREFIX": f"n{tag}",
        "NOTIFIER_GROUP_ID": f"n{tag}",
    }


@pytest.fixture
def start_notifier(topics: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def start(**extra: str) -> Worker:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
        env.update(topics)
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": KAFKA,
                "REDIS_URL": REDIS_URL,
                "NOTIFIER_WEB_PORT": str(free_port()),
                "NOTIFIER_ALLOW_PRIVATE_WEBHOOKS": "true",
                "NOTIFIER_RETRY_SCHEDULE_S": "[0.3, 0.5, 0.8]",
                "NOTIFIER_WEBHOOK_TIMEOUT_S": "1",
                "NOTIFIER_SMS_TIMEOUT_S": "1",
                "NOTIFIER_DISPATCH_INTERVAL_S": "0.05",
                "NOTIFIER_LEASE_S": "3",
                "NOTIFIER_PRODUCER_IDEMPOTENCE": str(os.environ.get("KAFKA_IMPL") != "tansu"),
            }
        )
        env.update(extra)
        env.setdefault("NOTIFIER_DURABILITY", durability_for(env["REDIS_URL"]))
        w = Worker(
            env,
            tmp_path / f"notifier-{len(started)}.log",
            command=[str(BIN / "notifier"), "--loglevel", "warning"],
            port_var="NOTIFIER_WEB_PORT",
        )
        started.append(w)
        return w.start()

    yield start
    for w in started:
        w.stop()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`deep` tests run only when asked for by marker (`-m deep`, `make test-deep`)."""
    if "deep" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="release-depth run: make test-deep")
    for item in items:
        if "deep" in item.keywords:
            item.add_marker(skip)
