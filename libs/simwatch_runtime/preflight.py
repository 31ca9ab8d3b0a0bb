"""Start-up checks both services run: Redis answers (waiting while it loads its data set),
every topic exists (created where allowed, and led before anyone subscribes), or one clear
line naming the setting at fault. Also what a health endpoint reports for Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from redis.exceptions import BusyLoadingError, RedisError

from .durability import Barrier, Durability
from .errors import ConfigError
from .redact import redact, redact_url
from .redis_client import AnyRedis, connect


async def check_redis(url: str, loading_wait_s: float = 120.0) -> None:
    """Redis must answer; one that is still loading its data set is waited for."""
    try:
        client = connect(url, socket_connect_timeout=5, socket_timeout=5)
    except ValueError as exc:
        raise ConfigError(f"REDIS_URL={redact_url(url)}: {redact(str(exc))}") from exc
    deadline = asyncio.get_running_loop().time() + loading_wait_s
    try:
        while True:
            try:
                await client.ping()
                return
            except BusyLoadingError:  # replaying its AOF after a restart: not an error
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.5)
    except (RedisError, OSError) as exc:
        raise ConfigError(
            f"REDIS_URL={redact_url(url)}: Redis does not answer ({redact(str(exc))})"
        ) from exc
    finally:
        await client.aclose()


async def check_durability(
    url: str, level: Durability, setting: str, key_of: Callable[[str], str]
) -> None:
    """Every Redis primary can confirm writes durable at `level` (WAITAOF or appendfsync
    always for ``fsync``, a connected replica for ``replica``), or one line naming `setting`."""
    if level is Durability.MEMORY:
        return
    client = connect(url, socket_connect_timeout=5, socket_timeout=5)
    barrier = Barrier(client, level, key_of)
    try:
        problem = await barrier.check()
    except (RedisError, OSError) as exc:
        raise ConfigError(
            f"REDIS_URL={redact_url(url)}: Redis does not answer ({redact(str(exc))})"
        ) from exc
    finally:
        await barrier.close()
        await client.aclose()
    if problem:
        raise ConfigError(
            f"{setting}={level.value}: {redact(problem)}; use a server that can confirm it "
            f"(docs/operations.md), or set {setting}=memory to accept the loss"
        )


async def ensure_topics(
    bootstrap: str, topics: list[str], partitions: int, create: bool, timeout_s: float = 15.0
) -> None:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing and create:
            # Another worker may create them at the same moment: that is fine.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in missing]
                )
            await _until_led(admin, missing, timeout_s)
    except (KafkaError, OSError, TimeoutError) as exc:
        raise ConfigError(
            f"KAFKA_BOOTSTRAP_SERVERS={bootstrap}: Kafka does not answer ({type(exc).__name__})"
        ) from exc
    finally:
        await admin.close()


async def _until_led(admin: AIOKafkaAdminClient, topics: list[str], timeout_s: float) -> None:
    """Wait until every new topic has a leader for each partition.

    CreateTopics returns before the metadata spreads; faust subscribes right after, and its
    consumer *ignores* a topic it cannot see yet, for good (seen on a fresh broker: the
    `card.events` agent never received an event).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        described = await admin.describe_topics(topics)
        led = {
            t["topic"]
            for t in described
            if t["error_code"] == 0
            and t["partitions"]
            and all(p["leader"] >= 0 for p in t["partitions"])
        }
        if led >= set(topics):
            return
        if loop.time() > deadline:
            raise TimeoutError(f"topics without a leader: {sorted(set(topics) - led)}")
        await asyncio.sleep(0.1)


async def redis_status(client: AnyRedis) -> str:
    """`ok`, or the error's class name: what a health endpoint reports for Redis."""
    try:
        await client.ping()
    except (RedisError, OSError) as exc:  # unreachable or refusing: unhealthy, said in words
        return f"error: {type(exc).__name__}"
    return "ok"
