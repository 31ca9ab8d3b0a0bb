"""usage_monitor's start-up checks: its Redis and its five topics."""

from __future__ import annotations

from simwatch_runtime.preflight import check_redis, ensure_topics

from .settings import Settings


async def preflight(s: Settings) -> None:
    await check_redis(s.redis_url)
    await ensure_topics(
        s.kafka_bootstrap_servers,
        [s.topic_usage, s.topic_events, s.topic_commands, s.topic_alerts, s.topic_dlq],
        s.topic_partitions,
        s.create_topics,
    )
