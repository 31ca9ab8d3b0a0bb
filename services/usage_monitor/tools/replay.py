"""`usage-monitor replay --iccid ICCID [--since DATE]`: the audit proof. Re-reads the card's
`card.events` and `usage.records` (its partition only), runs them through the same rules
with the clock of their arrival (Kafka's timestamps) and the lifecycle clock, and compares
the decisions with what `card.decisions` recorded, from `--since` on (found by
offsets-for-times): "N decisions reproduced, 0 differ", or the first difference.

The card's inputs are read from the start of their partitions: a decision's id depends on
everything before it (how many transitions the card made), so the topics must retain the
card's history (card.events compacted or long-lived, as for rebuild-by-replay).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, date, datetime, time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import murmur2
from pydantic import TypeAdapter, ValidationError

from simwatch_contracts import CardDecision, UsageRecord, parse_card_event, parse_command_result
from simwatch_contracts.common import Iccid

from ..domain.audit import compare, replay
from ..domain.cycles import zone
from ..settings import Settings

_ICCID: TypeAdapter[str] = TypeAdapter(Iccid)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--iccid", required=True)
    parser.add_argument(
        "--since", help="compare decisions from this date or time on (default: all)"
    )


def run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        iccid = _ICCID.validate_python(args.iccid)
    except ValidationError:
        return _fail(f"malformed ICCID {args.iccid!r}")
    now = datetime.now(UTC)
    since = _since(args.since, settings) if args.since else None
    if args.since and since is None:
        return _fail(f"--since {args.since!r} is not a date (YYYY-MM-DD) or an ISO time")
    if since is not None and since > now:
        return _fail(f"--since {args.since} is in the future")
    recorded, replayed = asyncio.run(_collect(settings, iccid, since, now))
    result = compare(recorded, replayed)
    print(f"{iccid}: {result.reproduced} decisions reproduced, {result.differ} differ")
    if result.first is None:
        return 0
    theirs, mine = result.first
    print(f"  first difference: recorded {_show(theirs)}")
    print(f"                    replayed {_show(mine)}")
    return 1


def _fail(message: str) -> int:
    print(f"usage-monitor replay: {message}", file=sys.stderr)
    return 2


def _since(raw: str, settings: Settings) -> datetime | None:
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            return datetime.combine(day, time(0), zone(settings.default_timezone))
        at = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=zone(settings.default_timezone))


def _show(d: CardDecision | None) -> str:
    if d is None:
        return "nothing"
    trigger = f" trigger={d.trigger.value}" if d.trigger else ""
    reasons = ",".join(r.value for r in d.reasons)
    return f"{d.kind.value} {d.type}{trigger} reasons=[{reasons}] ref={d.ref} at {d.at}"


async def _collect(
    settings: Settings, iccid: str, since: datetime | None, now: datetime
) -> tuple[list[CardDecision], list[CardDecision]]:
    s = settings
    events = await _read(s, s.topic_events, iccid, None)
    usage = await _read(s, s.topic_usage, iccid, None)
    inputs: list[tuple[datetime, Any]] = []
    for at, raw in events:
        try:
            inputs.append((at, parse_card_event(raw)))
        except ValidationError:  # dead-lettered by the worker too: no decision came of it
            continue
    for at, raw in usage:
        try:
            inputs.append((at, UsageRecord.model_validate_json(raw)))
        except ValidationError:  # dead-lettered by the worker too: no decision came of it
            continue
    for at, raw in await _read(s, s.topic_command_results, iccid, None):
        try:
            inputs.append((at, parse_command_result(raw)))
        except ValidationError:  # dead-lettered by the worker too
            continue
    inputs.sort(key=lambda pair: pair[0])
    replayed = replay(iccid, inputs, now, s.policy)
    recorded = [
        CardDecision.model_validate_json(raw)
        for _, raw in await _read(s, s.topic_decisions, iccid, since)
    ]
    if since is not None:
        replayed = [d for d in replayed if d.at >= since]
        recorded = [d for d in recorded if d.at >= since]
    return recorded, replayed


async def _read(
    s: Settings, topic: str, iccid: str, since: datetime | None
) -> list[tuple[datetime, bytes]]:
    """Every message of `iccid` in its partition of `topic` (from `since`, if given)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=s.kafka_bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = consumer._client.cluster.partitions_for_topic(topic)
        if not partitions:
            return []  # no such topic: nothing was ever written
        key = iccid.encode()
        tp = TopicPartition(topic, (murmur2(key) & 0x7FFFFFFF) % len(partitions))
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        start = 0
        if since is not None:
            found = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000)})
            start = found[tp].offset if found.get(tp) else end
        consumer.seek(tp, start)
        out: list[tuple[datetime, bytes]] = []
        position = start
        while position < end:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            for msg in batch.get(tp, []):
                position = msg.offset + 1
                if msg.key == key and msg.value is not None:
                    out.append((datetime.fromtimestamp(msg.timestamp / 1000, UTC), msg.value))
            if not batch:
                position = await consumer.position(tp)
        return out
    finally:
        await consumer.stop()
