"""usage_monitor's start-up checks: its Redis (and that it can confirm the durability
level asked for), and its topics."""

from __future__ import annotations

import asyncio
import logging
import sys

from simwatch_runtime import redact
from simwatch_runtime.errors import ConfigError
from simwatch_runtime.preflight import check_durability, check_redis, ensure_topics

from ..adapters.keys import Keys
from ..settings import Settings


async def preflight(s: Settings) -> None:
    await check_redis(s.redis_url)
    keys = Keys(s.redis_prefix, s.redis_shards)
    await check_durability(s.redis_url, s.durability, "USAGE_MONITOR_DURABILITY", keys.durability)
    await ensure_topics(
        s.kafka_bootstrap_servers,
        [
            s.topic_usage,
            s.topic_events,
            s.topic_command_results,
            s.topic_pools,
            s.topic_commands,
            s.topic_alerts,
            s.topic_decisions,
            s.topic_dlq,
        ],
        s.topic_partitions,
        s.create_topics,
    )


def run(settings: Settings) -> int:
    """Run the checks once, quietly: 0 when they pass, 2 (with one line on stderr) if not."""
    # aiokafka logs each refused connection itself; the check reports it once, in one line.
    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    try:
        asyncio.run(preflight(settings))
    except ConfigError as exc:
        print(f"usage-monitor: {redact.redact(str(exc))}", file=sys.stderr)
        return 2
    finally:
        kafka_log.setLevel(level)
    return 0
