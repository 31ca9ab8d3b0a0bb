"""`notifier`: validate settings and dependencies, then deliver alerts until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from pydantic import ValidationError

from simwatch_runtime import redact
from simwatch_runtime.errors import ConfigError as MonitorConfigError
from simwatch_runtime.liveness import ConsumerStalledError
from simwatch_runtime.preflight import check_durability, check_redis, ensure_topics
from simwatch_runtime.process import new_event_loop, settings_error

from .adapters.keys import Keys
from .bootstrap import ConfigError, build, validate_sms
from .settings import Settings


async def preflight(s: Settings) -> None:
    await check_redis(s.redis_url)
    key_of = Keys(s.redis_prefix).durability
    await check_durability(s.redis_url, s.durability, "NOTIFIER_DURABILITY", key_of)
    await ensure_topics(
        s.kafka_bootstrap_servers,
        [s.topic_alerts, s.topic_settings, s.topic_dlq, s.topic_delivery_dlq],
        partitions=12,
        create=True,
    )


async def _run(settings: Settings) -> None:
    from .entrypoints.run import serve

    await serve(build(settings))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="notifier", description=__doc__)
    parser.add_argument("--check", action="store_true", help="validate and reach deps, then exit")
    parser.add_argument("--loglevel", default="info")
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"notifier: invalid setting: {settings_error(exc, 'NOTIFIER_')}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    redact.install(args.loglevel)  # before any client exists: no URL or secret in any line
    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)  # one line from us, not a refused connection per try
    try:
        validate_sms(settings)
        asyncio.run(preflight(settings))
    except (MonitorConfigError, ConfigError) as exc:
        print(f"notifier: {redact.redact(str(exc))}", file=sys.stderr)
        return 2
    finally:
        kafka_log.setLevel(level)
    if args.check:
        print("notifier: settings valid, Kafka and Redis reachable")
        return 0
    loop = new_event_loop()
    try:
        loop.run_until_complete(_run(settings))
    except ConsumerStalledError:
        return 70  # EX_SOFTWARE: logged (CRITICAL) by the watchdog; the supervisor restarts
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
