"""Kill the worker mid-stream and restart it: nothing is counted twice, nothing is lost."""

from __future__ import annotations

import asyncio
import random
import re
import signal
import time
from collections import defaultdict
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from ..conftest import KafkaIO
from .helpers import iccid, now_iso, record, upsert, wait_for_totals

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CARDS = 200
RECORDS = 40_000
QUOTA = 1_000_000
# Small batches: many offset commits to die between, and a stream that lasts long enough
# to be killed in the middle on either broker.
BATCH = "150"


def applied(url: str, client: httpx.Client) -> float:
    try:
        text = client.get(f"{url}/metrics", timeout=2).text
    except httpx.HTTPError:
        return 0.0
    m = re.search(r'usage_monitor_records_total\{outcome="applied"\} ([0-9.e+]+)', text)
    return float(m.group(1)) if m else 0.0


async def test_sigkill_mid_stream_then_restart_keeps_every_promise(
    start_worker: Any, kafka: KafkaIO, names: dict[str, str], redis: Redis
) -> None:
    rng = random.Random(7)
    cards = [iccid(10_000 + i) for i in range(CARDS)]
    # A quarter of the cards are heavy users that go far over quota.
    heavy = set(cards[: CARDS // 4])
    stream: list[dict[str, Any]] = []
    expected: dict[str, int] = defaultdict(int)
    for i in range(RECORDS):
        card = rng.choice(cards)
        nbytes = rng.randint(40_000, 120_000) if card in heavy else rng.randint(0, 2_000)
        stream.append(record(card, f"cdr-{i}", nbytes, at=now_iso()))
        expected[card] += nbytes
    duplicates = rng.sample(stream, RECORDS // 20)
    stream += duplicates
    rng.shuffle(stream)

    worker = start_worker(USAGE_MONITOR_BATCH_MAX_RECORDS=BATCH)
    events = names["USAGE_MONITOR_TOPIC_EVENTS"]
    await kafka.send_many(events, [(c, upsert(c, QUOTA)) for c in cards])
    await asyncio.sleep(1.0)
    await kafka.send_many(names["USAGE_MONITOR_TOPIC_USAGE"], [(r["iccid"], r) for r in stream])

    deadline = time.monotonic() + 60
    at_kill = 0.0
    with httpx.Client() as client:
        while at_kill < RECORDS * 0.2 and time.monotonic() < deadline:
            time.sleep(0.005)  # noqa: ASYNC251 - a tight poll; nothing else runs meanwhile
            at_kill = applied(worker.url, client)
    worker.kill(signal.SIGKILL)
    assert 0 < at_kill < RECORDS, f"killed at {at_kill}: not mid-stream"

    restarted = start_worker(USAGE_MONITOR_BATCH_MAX_RECORDS=BATCH)
    got = await wait_for_totals(redis, names["USAGE_MONITOR_REDIS_PREFIX"], dict(expected), 120)
    assert got == expected, "a card's total differs from the sum of its distinct records"

    over = {c for c, total in expected.items() if total >= QUOTA}
    assert over, "the scenario must push some cards over quota"
    commands = await kafka.read(
        names["USAGE_MONITOR_TOPIC_COMMANDS"],
        lambda ms: len({m["iccid"] for m in ms}) >= len(over),
        timeout_s=60,
    )
    suspend_ids: dict[str, set[str]] = defaultdict(set)
    for c in commands:
        assert c["type"] == "suspend" and c["trigger"] == "over_quota"
        suspend_ids[c["iccid"]].add(c["command_id"])
    assert set(suspend_ids) == over
    assert all(len(ids) == 1 for ids in suspend_ids.values()), "a card was suspended twice"

    alerts = await kafka.read(
        names["USAGE_MONITOR_TOPIC_ALERTS"],
        lambda ms: len({m["alert_id"] for m in ms}) >= 4 * len(over),
        timeout_s=60,
    )
    steps: dict[str, set[tuple[str, int | None]]] = defaultdict(set)
    ids_per_step: dict[tuple[str, str, int | None], set[str]] = defaultdict(set)
    for a in alerts:
        steps[a["iccid"]].add((a["type"], a.get("percent")))
        ids_per_step[(a["iccid"], a["type"], a.get("percent"))].add(a["alert_id"])
    for c in cards:
        want = {("usage_threshold", p) for p in (80, 90) if expected[c] * 100 >= QUOTA * p}
        if c in over:
            want |= {("quota_exhausted", 100), ("suspended", None)}
        assert steps.get(c, set()) == want, f"alerts of card {c[-4:]}"
    assert all(len(ids) == 1 for ids in ids_per_step.values()), "an alert was decided twice"
    assert restarted.card(cards[0]).status_code == 200
