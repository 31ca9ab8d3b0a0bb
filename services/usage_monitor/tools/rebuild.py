"""`usage-monitor rebuild --since T`: rebuild Redis by replaying Kafka, after Redis lost data.

Moves the two consumer groups of the workers back, so that the next start replays:

* `card.events` (faust's group, `<app_id>`) to the beginning of the topic: every profile,
  top-up, stop and start since the cards were created (the topic's retention must cover
  them: keep `card.events` compacted or long-lived);
* `usage.records` (`<app_id>-usage`) to the first record at or after `T`, normally the
  start of the current billing cycle: counters of earlier cycles are not needed to decide.

Replayed records count once (the record-id claims were lost with the data, so each record
is claimed again exactly once); replayed decisions carry the same deterministic ids as the
first time, so consumers that de-duplicate by id see nothing new. Kafka refuses to move the
offsets of a group with live members, so the workers must be stopped first.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from simwatch_runtime import redact
from simwatch_runtime.errors import ConfigError

from ..settings import Settings


class GroupInUseError(ConfigError):
    pass


@dataclass(frozen=True, slots=True)
class Moved:
    group: str
    topic: str
    offsets: dict[int, int]


async def _move(bootstrap: str, group: str, topic: str, since: datetime | None) -> Moved:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            raise ConfigError(f"topic {topic} does not exist")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        start = await consumer.beginning_offsets(tps)
        target = dict(start)
        if since is not None:
            end = await consumer.end_offsets(tps)
            found = await consumer.offsets_for_times(
                {tp: int(since.timestamp() * 1000) for tp in tps}
            )
            target = {tp: found[tp].offset if found[tp] else end[tp] for tp in tps}
        try:
            await consumer.commit({tp: OffsetAndMetadata(off, "") for tp, off in target.items()})
        except KafkaError as exc:  # the group has live members, whose offsets are theirs
            raise GroupInUseError(
                f"stop every worker first: Kafka refused to move group {group} "
                f"({type(exc).__name__}; a killed worker holds it until its session times out: "
                "--wait 30)"
            ) from exc
        return Moved(group, topic, {tp.partition: off for tp, off in target.items()})
    finally:
        await consumer.stop()


async def rebuild(settings: Settings, since: datetime, wait_s: float = 0) -> list[Moved]:
    """Move both groups; while a group still has members, try again for up to `wait_s`
    (a worker that was killed, not stopped, stays a member until its session times out)."""
    if since.tzinfo is None:
        raise ConfigError("--since needs a UTC offset, e.g. 2026-11-01T00:00:00+08:00")
    bootstrap = settings.kafka_bootstrap_servers
    events_group, usage_group = settings.app_id, f"{settings.app_id}-usage"
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return [
                await _move(bootstrap, events_group, settings.topic_events, None),
                await _move(bootstrap, usage_group, settings.topic_usage, since),
            ]
        except GroupInUseError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since",
        required=True,
        type=datetime.fromisoformat,
        help="replay usage records from this moment on, with its UTC offset "
        "(normally the start of the current cycle, e.g. 2026-11-01T00:00:00+08:00)",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="retry this long while a group still has members (a killed worker stays one "
        "until its session times out)",
    )


def run(settings: Settings, since: datetime, wait_s: float) -> int:
    """The command: move the groups and say where they are now; 2 on a refusal."""
    try:
        moved = asyncio.run(rebuild(settings, since, wait_s))
    except ConfigError as exc:
        print(f"usage-monitor: {redact.redact(str(exc))}", file=sys.stderr)
        return 2
    for m in moved:
        offsets = " ".join(f"{p}:{o}" for p, o in sorted(m.offsets.items()))
        print(f"usage-monitor: group {m.group} on {m.topic} now at {offsets}")
    print("usage-monitor: start the workers to replay")
    return 0
