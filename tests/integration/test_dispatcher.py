"""The dispatcher on a real Redis ledger: whatever an attempt meets, every delivery reaches a
final state (delivered, or given up into the delivery dead-letter topic) in a bounded number
of attempts."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from notifier.adapters.redis_ledger import RedisLedger
from notifier.channels.webhook import WebhookSender
from notifier.domain.delivery import Channel, Delivery, DeliveryState
from notifier.domain.outcome import Outcome
from notifier.metrics import Metrics
from notifier.service_layer.dispatcher import Dispatcher
from notifier.settings import Settings
from simwatch_contracts import CardAlert
from simwatch_runtime.redis_client import AnyRedis

from ..receiver import SECRET
from .helpers import iccid, now_iso

pytestmark = pytest.mark.integration


class ExplodingSender(WebhookSender):
    """A sender with a bug: every attempt raises something nobody planned for."""

    def __init__(self) -> None:
        super().__init__(allow_private=True, timeout_s=1)
        self.calls = 0

    async def send(
        self, url: str, secrets: str | Sequence[str], alert: CardAlert, now: datetime
    ) -> Outcome:
        self.calls += 1
        raise KeyError("a bug")


@pytest.fixture
async def ledger(redis: AnyRedis) -> AsyncIterator[RedisLedger]:
    prefix = f"d{uuid.uuid4().hex[:10]}"
    yield RedisLedger(redis, prefix)
    keys = [k async for k in redis.scan_iter(match=f"{{{prefix}}}:*", count=1000)]
    for key in keys:
        await redis.delete(key)


@contextlib.asynccontextmanager
async def running(
    ledger: RedisLedger, sender: WebhookSender, **settings: Any
) -> AsyncIterator[tuple[Dispatcher, list[dict[str, Any]], Metrics]]:
    """A dispatcher over `ledger` with one webhook delivery scheduled; yields it, the dead
    letters it wrote and its metrics."""
    letters: list[dict[str, Any]] = []

    async def publish(_topic: str, _key: bytes | None, value: bytes) -> None:
        letters.append(json.loads(value))

    metrics = Metrics.create(CollectorRegistry())
    config = Settings(dispatch_interval_s=0.02, lease_s=2, webhook_timeout_s=1, **settings)
    dispatcher = Dispatcher(ledger, sender, None, config, metrics, publish)
    card = iccid(61_001)
    alert = {
        "alert_id": f"alr-{uuid.uuid4().hex[:8]}",
        "type": "suspended",
        "iccid": card,
        "customer_id": "acme",
        "cycle": "2026-11-01",
        "occurred_at": now_iso(),
        "trigger": "over_quota",
        "reasons": ["over_quota"],
    }
    task = asyncio.create_task(dispatcher.run())
    try:
        yield dispatcher, letters, metrics
        delivery = Delivery("dlv-1", json.dumps(alert), "acme", Channel.WEBHOOK, "webhook")
        await ledger.schedule(delivery, datetime.now(UTC))
        dispatcher.wake.set()
        for _ in range(200):
            if letters:
                break
            await asyncio.sleep(0.05)
    finally:
        await dispatcher.stop(grace_s=2)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sender.close()


def customer(url: str) -> bytes:
    return json.dumps({"customer_id": "acme", "webhook": {"url": url, "secret": SECRET}}).encode()


async def test_an_unexpected_error_is_retried_on_schedule_then_dead_lettered(
    ledger: RedisLedger,
) -> None:
    await ledger.store_customer("acme", customer("http://127.0.0.1:9/hook"))
    sender = ExplodingSender()
    async with running(ledger, sender, retry_schedule_s=(0.05, 0.05)) as (_, letters, metrics):
        pass
    record = await ledger.load("dlv-1")
    assert record is not None, "the delivery is kept"
    assert record.state is DeliveryState.GAVE_UP and record.attempts == 3, record
    assert sender.calls == 3
    assert len(letters) == 1 and "KeyError" in letters[0]["error"], letters
    assert "a bug" not in letters[0]["error"]  # the type only: a message may carry data
    errors = metrics.delivery_errors.labels("webhook")._value.get()
    assert errors == 3


@pytest.fixture
async def busy_endpoint() -> AsyncIterator[tuple[str, list[float]]]:
    """An endpoint that always answers 503 with `Retry-After: 0`; yields its URL and hits."""
    hits: list[float] = []

    async def busy(_: web.Request) -> web.Response:
        hits.append(asyncio.get_running_loop().time())
        return web.Response(status=503, headers={"Retry-After": "0"})

    app = web.Application()
    app.router.add_post("/busy", busy)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/busy", hits
    await runner.cleanup()


async def test_retry_after_zero_counts_against_the_schedule_and_is_floored(
    ledger: RedisLedger, busy_endpoint: tuple[str, list[float]]
) -> None:
    url, hits = busy_endpoint
    await ledger.store_customer("acme", customer(url))
    sender = WebhookSender(allow_private=True, timeout_s=1)
    async with running(
        ledger, sender, retry_schedule_s=(0.05, 0.05, 0.05), retry_after_min_s=0.2
    ) as (_, letters, _metrics):
        pass
    assert len(hits) == 4, f"{len(hits)} attempts"
    assert all(b - a >= 0.19 for a, b in itertools.pairwise(hits)), hits
    assert len(letters) == 1 and "HTTP 503" in letters[0]["error"]
