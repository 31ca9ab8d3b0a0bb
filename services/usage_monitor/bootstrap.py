"""The composition root: builds every component of a worker from its settings, once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from simwatch_runtime.dead_letters import DeadLetters
from simwatch_runtime.durability import Barrier
from simwatch_runtime.kafka_publisher import KafkaPublisher
from simwatch_runtime.progress import Progress
from simwatch_runtime.redis_client import AnyRedis, connect

from .adapters.keys import Keys
from .adapters.redis_store import RedisStore
from .metrics import Metrics
from .service_layer.pooling import PoolService
from .service_layer.service import CardService
from .settings import Settings


def utc_now() -> datetime:
    return datetime.now(UTC)


def clock_of(settings: Settings) -> Callable[[], datetime]:
    """The wall clock a worker decides by: `utc_now`, moved by `clock_offset_s` in tests and
    benchmarks (to reach a cycle boundary without waiting for it)."""
    offset = timedelta(seconds=settings.clock_offset_s)
    if not offset:
        return utc_now
    return lambda: datetime.now(UTC) + offset


@dataclass(frozen=True, slots=True)
class Components:
    settings: Settings
    registry: CollectorRegistry
    metrics: Metrics
    redis: AnyRedis
    store: RedisStore
    publisher: KafkaPublisher
    service: CardService
    pools: PoolService
    usage_dead_letters: DeadLetters
    event_dead_letters: DeadLetters
    result_dead_letters: DeadLetters
    barrier: Barrier
    agents: dict[str, Progress] = field(default_factory=dict)
    """What each of faust's agents tells the watchdog on its topic (`entrypoints/app.py`), by
    topic (`card.events`, `card.command_results`, `pool.events`)."""

    async def close(self) -> None:
        await self.publisher.close()
        await self.barrier.close()
        await self.redis.aclose()


def build(
    settings: Settings,
    clock: Callable[[], datetime] | None = None,
    registry: CollectorRegistry | None = None,
) -> Components:
    clock = clock or clock_of(settings)
    registry = registry or CollectorRegistry()
    metrics = Metrics.create(registry)
    redis = connect(
        settings.redis_url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30
    )
    keys = Keys(settings.redis_prefix, settings.redis_shards)
    store = RedisStore(
        redis,
        keys,
        record_ttl_s=settings.record_dedupe_ttl_s,
        dedupe_buckets=settings.dedupe_buckets,
        history_length=settings.history_length,
        entry_per_decision=settings.outbox_entry_per_decision,
        event_ttl_s=settings.event_dedupe_ttl_s,
    )
    publisher = KafkaPublisher(
        settings.kafka_bootstrap_servers,
        client_id=settings.app_id,
        idempotence=settings.producer_idempotence,
        on_renew=metrics.producer_renewals.inc,
    )
    service = CardService(store, publisher, settings, metrics, clock)
    usage_dlq = DeadLetters(publisher, settings.topic_dlq, metrics.count_dead_letter, clock)
    event_dlq = DeadLetters(publisher, settings.topic_dlq, metrics.count_dead_letter, clock)
    result_dlq = DeadLetters(publisher, settings.topic_dlq, metrics.count_dead_letter, clock)
    return Components(
        settings=settings,
        registry=registry,
        metrics=metrics,
        redis=redis,
        store=store,
        publisher=publisher,
        service=service,
        pools=PoolService(service),
        usage_dead_letters=usage_dlq,
        event_dead_letters=event_dlq,
        result_dead_letters=result_dlq,
        barrier=durability_barrier(redis, settings, keys),
        agents={
            t: Progress()
            for t in (settings.topic_events, settings.topic_command_results, settings.topic_pools)
        },
    )


def durability_barrier(redis: AnyRedis, settings: Settings, keys: Keys) -> Barrier:
    """What confirms a batch durable before its offsets are committed (issue #16)."""
    return Barrier(
        redis, settings.durability, keys.durability, timeout_s=settings.durability_timeout_s
    )
