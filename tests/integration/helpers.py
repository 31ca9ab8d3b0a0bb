"""Message builders for tests that drive the real services."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from simwatch_runtime.redis_client import AnyRedis
from usage_monitor.adapters.keys import Keys
from usage_monitor.bootstrap import Components, build
from usage_monitor.domain.cycles import cycle_of
from usage_monitor.settings import Settings

_seq = iter(range(1, 10**12))


def metric(url: str, pattern: str) -> float:
    """The sum of the samples whose name and labels match `pattern` on a service's /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    found = re.findall(pattern + r" ([0-9.e+]+)", text)
    return sum(float(v) for v in found)


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def iccid(i: int) -> str:
    return f"898604{i:014d}"


def record(card: str, rid: str, nbytes: int, at: str | None = None) -> dict[str, Any]:
    return {
        "record_id": rid,
        "iccid": card,
        "event_time": at or now_iso(),
        "bytes_up": nbytes // 2,
        "bytes_down": nbytes - nbytes // 2,
    }


def card_event(kind: str, card: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "event_id": f"evt-{next(_seq)}",
        "occurred_at": now_iso(),
        "iccid": card,
        **fields,
    }


def upsert(card: str, quota: int | None, *, auto: bool = True, **fields: Any) -> dict[str, Any]:
    plan = {"plan_id": "iot-test", "quota_bytes": quota, "monthly_fee": 1000, "auto_suspend": auto}
    base = {
        "customer_id": "acme",
        "plan": plan,
        "billing": "prepaid",
        "balance": 10_000,
        "expires_at": "2099-01-01T00:00:00+08:00",
    }
    return card_event("card.upserted", card, **{**base, **fields})


async def wait_for(check: Callable[[], Any], timeout_s: float = 30) -> Any:
    """Poll a blocking `check` (in a thread) until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = await asyncio.to_thread(check)
        if result or loop.time() > deadline:
            return result
        await asyncio.sleep(0.2)


async def wait_for_totals(
    redis: AnyRedis,
    prefix: str,
    expected: dict[str, int],
    timeout_s: float = 120,
    shards: int = 4,
) -> dict[str, int]:
    """Poll every card's counters until they equal `expected`; returns the last reading
    (default calendar; `shards` as the workers were given). A card's count is its current
    cycle's plus that of ten minutes before the call, when that was another cycle: records
    made just before a cycle boundary are counted in the cycle they were made in (a CI run
    that crossed midnight of the 1st, Asia/Shanghai, read 0 for every card)."""
    keys = Keys(prefix, shards)
    called = datetime.now(UTC)
    cards = list(expected)
    deadline = time.monotonic() + timeout_s
    while True:
        cycles = {
            cycle_of(at, "Asia/Shanghai").isoformat()
            for at in (called - timedelta(minutes=10), datetime.now(UTC))
        }
        async with redis.pipeline(transaction=False) as pipe:
            for c in cards:
                pipe.hmget(keys.card(c), [f"u:{cycle}" for cycle in sorted(cycles)])
            values = await pipe.execute()
        got = {c: sum(int(v or 0) for v in counts) for c, counts in zip(cards, values, strict=True)}
        if got == expected or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.5)


class Clock:
    """An injected clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def in_process(names: dict[str, str], clock: Clock, shards: int = 4, **settings: Any) -> Components:
    """usage_monitor's components in the test's process, on the real Kafka and Redis, on the
    test's own topics and Redis prefix, with `clock` for time (and `settings` overridden)."""
    from ..conftest import KAFKA, REDIS_URL

    config = Settings(
        kafka_bootstrap_servers=KAFKA,
        redis_url=REDIS_URL,
        redis_shards=shards,
        producer_idempotence=os.environ.get("KAFKA_IMPL") != "tansu",  # Tansu lacks it
        redis_prefix=names["USAGE_MONITOR_REDIS_PREFIX"],
        topic_commands=names["USAGE_MONITOR_TOPIC_COMMANDS"],
        topic_alerts=names["USAGE_MONITOR_TOPIC_ALERTS"],
        topic_decisions=names["USAGE_MONITOR_TOPIC_DECISIONS"],
        **settings,
    )
    return build(config, clock=clock, registry=CollectorRegistry())
