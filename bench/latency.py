"""Record-to-command latency: a probe record takes a small-quota card over its quota while
background traffic flows at a fixed rate; the clock runs from producing the probe to
consuming its `suspend`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from .dataset import utc_now
from .offer import TICK_S, Offer
from .procs import KAFKA


async def _commands_listener(
    topic: str, seen: dict[str, float], stop: asyncio.Event, ready: asyncio.Event
) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=KAFKA, enable_auto_commit=False, fetch_max_wait_ms=10
    )
    await consumer.start()
    try:
        parts = None
        while not parts:
            await consumer._client.force_metadata_update()
            parts = consumer._client.cluster.partitions_for_topic(topic)
            await asyncio.sleep(0.1)
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:  # resolve "end" now, before any probe: nothing published is skipped
            await consumer.position(tp)
        ready.set()
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=50)
            now = time.perf_counter()
            for msgs in batch.values():
                for m in msgs:
                    doc = json.loads(m.value or b"{}")
                    if doc.get("type") == "suspend":
                        seen.setdefault(doc["iccid"], now)
    finally:
        await consumer.stop()


async def probe_timeline(
    usage_topic: str,
    commands_topic: str,
    background: Sequence[tuple[bytes, bytes]],
    probes: Sequence[str],
    rate: float,
    duration_s: float,
) -> list[tuple[float, float]]:
    """Offer `background` at `rate` records/s for `duration_s`, with probes spread evenly:
    each probe's latency with when it was sent (seconds into the run), to show where in the
    run the slow ones were (`latencies` sorts them)."""
    seen: dict[str, float] = {}
    stop, ready = asyncio.Event(), asyncio.Event()
    listener = asyncio.create_task(_commands_listener(commands_topic, seen, stop, ready))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        started, sent_at = await _offer(usage_topic, background, probes, rate, duration_s)
        deadline = time.perf_counter() + 30
        # Background heavy users are suspended too: wait for the probes themselves.
        while any(c not in seen for c in sent_at) and time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await listener
    return [(t - started, seen[c] - t) for c, t in sent_at.items() if c in seen]


async def _offer(
    usage_topic: str,
    background: Sequence[tuple[bytes, bytes]],
    probes: Sequence[str],
    rate: float,
    duration_s: float,
) -> tuple[float, dict[str, float]]:
    """Offer `background` at `rate` records/s for `duration_s` with the probes spread evenly;
    when the offer started and when each probe was sent (`time.perf_counter`, one clock for
    every process of the machine)."""
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, linger_ms=2, acks=1)
    await producer.start()
    sent_at: dict[str, float] = {}
    try:
        started = time.perf_counter()
        total = int(rate * duration_s)
        probe_every = max(1, total // max(1, len(probes)))
        sent = 0
        offer = Offer(producer, usage_topic)
        while sent < total:
            due = min(total, int((time.perf_counter() - started) * rate))
            chunk: list[tuple[bytes, bytes]] = []
            while sent < due:
                chunk.append(background[sent % len(background)])
                if sent % probe_every == 0 and len(sent_at) < len(probes):
                    card = probes[len(sent_at)]
                    chunk.append(_probe(card))
                    sent_at[card] = time.perf_counter()
                sent += 1
            await offer.send(chunk)
            await asyncio.sleep(TICK_S)
        await offer.flush()
    finally:
        await producer.stop()
    return started, sent_at


def _probe(card: str) -> tuple[bytes, bytes]:
    doc = {
        "record_id": f"probe-{card}-{time.time_ns()}",
        "iccid": card,
        "event_time": utc_now().isoformat(),
        "bytes_up": 2000,
        "bytes_down": 0,
    }
    return card.encode(), json.dumps(doc).encode()


def latencies(timeline: Sequence[tuple[float, float]]) -> list[float]:
    """The probes' latencies alone, sorted."""
    return sorted(lat for _, lat in timeline)


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]
