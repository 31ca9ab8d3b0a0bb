"""The notifier's service layer on the in-memory ledger (held to the Redis ledger by
tests/integration/test_notifier_ledger.py), with recording fakes of the channels and a clock
the test moves: scheduling, then claim → send → finish."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError
from prometheus_client import CollectorRegistry
from redis.exceptions import ConnectionError as RedisConnectionError

from notifier.adapters.memory_ledger import MemoryLedger
from notifier.domain.delivery import Channel, DeliveryState, plan
from notifier.domain.outcome import Outcome, Result
from notifier.metrics import Metrics
from notifier.service_layer.dispatcher import Dispatcher
from notifier.service_layer.scheduling import Scheduler
from notifier.settings import Settings
from simwatch_contracts import CardAlert, CustomerSettings

from ..receiver import SECRET

T0 = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)  # noon in Shanghai: no quiet hours
NUMBER = "+8613800000000"
URL = "https://hooks.acme.example/simwatch"


@dataclass
class FakeWebhooks:
    answers: list[Outcome] = field(default_factory=list)
    sent: list[tuple[str, str]] = field(default_factory=list)

    async def send(
        self, url: str, secrets: str | Sequence[str], alert: CardAlert, now: datetime
    ) -> Outcome:
        self.sent.append((url, alert.alert_id))
        return self.answers.pop(0) if self.answers else Outcome(Result.DELIVERED, "200")


@dataclass
class FakeSms:
    idempotent: bool = False
    name: str = "fake"
    answers: list[Outcome] = field(default_factory=list)
    sent: list[tuple[str, str, str]] = field(default_factory=list)

    async def send(self, to: str, text: str, key: str, params: dict[str, str]) -> Outcome:
        self.sent.append((to, text, key))
        return self.answers.pop(0) if self.answers else Outcome(Result.DELIVERED, "ok")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class World:
    ledger: MemoryLedger
    webhooks: FakeWebhooks
    sms: FakeSms
    clock: Clock
    dispatcher: Dispatcher
    scheduler: Scheduler
    metrics: Metrics
    published: list[tuple[str, bytes | None, dict[str, Any]]]

    async def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.published.append((topic, key, json.loads(value)))

    async def step(self, seconds: float = 0.0) -> None:
        """Move the clock, then claim what is due and wait for the attempts."""
        self.clock.advance(seconds)
        await self.dispatcher.claim_some()
        await self.dispatcher.settle()

    async def state(self, channel: Channel = Channel.WEBHOOK) -> DeliveryState:
        customer = CustomerSettings.model_validate_json(customer_settings(sms=[NUMBER]))
        (p,) = [p for p in plan(alert(), customer, True) if p.channel is channel]
        d = await self.ledger.load(p.delivery_id)
        assert d is not None
        return d.state

    def count(self, channel: str, outcome: str) -> float:
        value = self.metrics.deliveries.labels(channel, outcome)._value.get()
        return float(value)


def world(sms_idempotent: bool = False, **settings: Any) -> World:
    ledger, clock = MemoryLedger(), Clock()
    webhooks, sms = FakeWebhooks(), FakeSms(idempotent=sms_idempotent)
    metrics = Metrics.create(CollectorRegistry())
    config = Settings(**({"lease_s": 60, "retry_schedule_s": (5.0, 30.0)} | settings))
    w = World(ledger, webhooks, sms, clock, None, None, metrics, [])  # type: ignore[arg-type]
    w.dispatcher = Dispatcher(ledger, webhooks, sms, config, metrics, w.publish, clock)
    w.dispatcher.rng.seed(1)
    w.scheduler = Scheduler(ledger, metrics, sms_enabled=True, clock=clock)
    return w


def alert(n: int = 1, kind: str = "suspended") -> CardAlert:
    doc = {
        "alert_id": f"alr-{n}",
        "type": kind,
        "iccid": "89860412345678901234",
        "customer_id": "acme",
        "cycle": "2026-11-01",
        "occurred_at": T0.isoformat(),
        "trigger": "over_quota",
        "reasons": ["over_quota"],
    }
    if kind == "usage_threshold":
        doc |= {"percent": 80, "used_bytes": 800, "quota_bytes": 1000}
    return CardAlert.model_validate_json(json.dumps(doc))


def customer_settings(webhook: bool = True, sms: list[str] | None = None, **extra: Any) -> bytes:
    doc: dict[str, Any] = {"customer_id": "acme", **extra}
    if webhook:
        doc["webhook"] = {"url": URL, "secret": SECRET}
    if sms:
        doc["sms"] = {"numbers": sms}
    return json.dumps(doc).encode()


async def test_an_alert_is_scheduled_once_per_target_and_delivered() -> None:
    w = world()
    await w.scheduler.store_settings("acme", customer_settings(sms=[NUMBER]))
    await w.scheduler.alert(alert(), partition=2, offset=41)
    await w.scheduler.alert(alert(), partition=2, offset=41)  # redelivered
    assert await w.ledger.depth() == 2
    await w.step()
    assert w.webhooks.sent == [(URL, "alr-1")]
    assert [to for to, _, _ in w.sms.sent] == [NUMBER]
    assert await w.state(Channel.WEBHOOK) is DeliveryState.DELIVERED
    assert await w.state(Channel.SMS) is DeliveryState.DELIVERED
    assert await w.ledger.depth() == 0
    assert w.metrics.alerts.labels("duplicate")._value.get() == 1
    assert w.count("webhook", "delivered") == w.count("sms", "delivered") == 1


async def test_an_alert_of_a_customer_without_channels_schedules_nothing() -> None:
    w = world()
    await w.scheduler.alert(alert(), partition=0, offset=0)
    assert await w.ledger.depth() == 0
    assert w.metrics.alerts.labels("no_channel")._value.get() == 1


async def test_a_pool_members_stop_for_a_customer_with_sms_only_is_counted_apart() -> None:
    """Stopped by its pool alone: webhook only (the phone gets the pool's alert). A customer
    without a webhook is not missing a channel for it: `webhook_only`, not `no_channel`."""
    w = world()
    await w.scheduler.store_settings("acme", customer_settings(webhook=False, sms=[NUMBER]))
    doc = alert().model_dump(mode="json") | {
        "trigger": "pool_over_quota",
        "reasons": ["pool_over_quota"],
    }
    await w.scheduler.alert(CardAlert.model_validate_json(json.dumps(doc)), partition=0, offset=0)
    assert await w.ledger.depth() == 0
    assert w.metrics.alerts.labels("webhook_only")._value.get() == 1
    assert w.metrics.alerts.labels("no_channel")._value.get() == 0


async def test_a_failing_webhook_is_retried_on_schedule_then_dead_lettered() -> None:
    w = world()
    w.webhooks.answers = [Outcome(Result.RETRY, "HTTP 503")] * 3
    await w.scheduler.store_settings("acme", customer_settings())
    await w.scheduler.alert(alert(), partition=2, offset=41)
    await w.step()
    assert await w.state() is DeliveryState.RETRY
    await w.step(3.0)  # backoff of 5 s ±20 %: not due yet
    assert len(w.webhooks.sent) == 1
    await w.step(3.0)
    await w.step(40.0)
    assert len(w.webhooks.sent) == 3
    assert await w.state() is DeliveryState.GAVE_UP
    ((topic, key, letter),) = w.published
    assert topic == "notifier.deliveries.dlq" and key == b"89860412345678901234"
    assert (letter["partition"], letter["offset"]) == (2, 41)
    assert letter["error"] == "webhook delivery gave_up: gave up after 3 attempts: HTTP 503"
    assert json.loads(letter["original"])["alert_id"] == "alr-1"


async def test_a_410_disables_the_webhook_for_later_alerts() -> None:
    w = world()
    w.webhooks.answers = [Outcome(Result.GONE, "410 Gone")]
    await w.scheduler.store_settings("acme", customer_settings())
    await w.scheduler.alert(alert(1), partition=0, offset=1)
    await w.step()
    await w.scheduler.alert(alert(2), partition=0, offset=2)
    await w.step()
    assert w.webhooks.sent == [(URL, "alr-1")]
    assert await w.ledger.webhook_gone("acme") == URL
    assert w.count("webhook", "disabled") == 2
    assert not w.published  # disabled is not a dead letter


async def test_an_sms_whose_attempt_died_is_uncertain_not_sent_again() -> None:
    w = world(sms_idempotent=False)
    await w.scheduler.store_settings("acme", customer_settings(webhook=False, sms=[NUMBER]))
    await w.scheduler.alert(alert(), partition=0, offset=0)
    await w.ledger.claim(w.clock(), 60, 10)  # a replica claims it, then dies
    await w.step(61.0)
    assert w.sms.sent == []
    assert await w.state(Channel.SMS) is DeliveryState.UNCERTAIN
    assert w.count("sms", "uncertain") == 1


async def test_an_idempotent_gateway_is_sent_again_after_a_dead_attempt() -> None:
    w = world(sms_idempotent=True)
    w.sms.answers = [Outcome(Result.UNCERTAIN, "no answer")]
    await w.scheduler.store_settings("acme", customer_settings(webhook=False, sms=[NUMBER]))
    await w.scheduler.alert(alert(), partition=0, offset=0)
    await w.ledger.claim(w.clock(), 60, 10)
    await w.step(61.0)  # outcome unknown: the same key again is safe, and retried
    assert await w.state(Channel.SMS) is DeliveryState.RETRY
    await w.step(10.0)
    assert len(w.sms.sent) == 2 and w.sms.sent[0][2] == w.sms.sent[1][2]
    assert await w.state(Channel.SMS) is DeliveryState.DELIVERED


async def test_quiet_hours_and_the_hourly_limit_defer_sms() -> None:
    w = world(sms_rate_per_hour=1)
    quiet = {"start": "11:00", "end": "13:00", "timezone": "Asia/Shanghai"}
    raw = customer_settings(webhook=False, sms=[NUMBER], quiet_hours=quiet)
    await w.scheduler.store_settings("acme", raw)
    await w.scheduler.alert(alert(1, "usage_threshold"), partition=0, offset=0)
    await w.step()
    assert w.sms.sent == [] and w.count("sms", "deferred") == 1
    await w.step(3600.0)  # 13:00 local: quiet hours over
    assert len(w.sms.sent) == 1
    await w.scheduler.alert(alert(2), partition=0, offset=1)
    await w.step()
    assert len(w.sms.sent) == 1 and w.count("sms", "deferred") == 2  # the hourly limit
    await w.step(3600.0)
    assert len(w.sms.sent) == 2


async def test_each_attempt_parses_its_alert_once(monkeypatch: pytest.MonkeyPatch) -> None:
    w = world(retry_schedule_s=(5.0,))
    w.webhooks.answers = [Outcome(Result.RETRY, "HTTP 503")] * 2
    await w.scheduler.store_settings("acme", customer_settings())
    await w.scheduler.alert(alert(), partition=0, offset=0)
    parsed: list[str] = []
    original = CardAlert.model_validate_json

    def counting(data: str | bytes, *args: Any, **kwargs: Any) -> CardAlert:
        parsed.append("alert")
        return original(data, *args, **kwargs)

    monkeypatch.setattr(CardAlert, "model_validate_json", counting)
    await w.step()
    await w.step(10.0)  # the second attempt gives up and dead-letters
    assert len(parsed) == 2, parsed
    assert len(w.published) == 1


def flaky_finishes(w: World, failures: int) -> list[int]:
    """The ledger's `finish_many` fails `failures` times as if Redis were away (-1: until
    the returned count is set to 0)."""
    real = w.dispatcher.finishes.call
    left = [failures]

    async def call(batch: Sequence[Any]) -> list[bool]:
        if left[0] != 0:
            left[0] -= 1
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379.")
        return await real(batch)

    w.dispatcher.finishes.call = call
    return left


async def test_an_answered_webhook_whose_outcome_redis_missed_is_not_sent_again() -> None:
    """Redis away for a moment when the 200 is recorded: recorded again in place, not left to
    the lease, whose end would make the delivery look like a dead attempt and send it again."""
    w = world()
    flaky_finishes(w, 2)
    await w.scheduler.store_settings("acme", customer_settings())
    await w.scheduler.alert(alert(), partition=2, offset=41)
    await w.step()
    assert await w.state() is DeliveryState.DELIVERED
    await w.step(120.0)  # long after the lease
    assert len(w.webhooks.sent) == 1
    assert w.metrics.transient_errors.labels("redis")._value.get() == 2


async def test_an_outcome_not_recorded_by_the_end_of_the_lease_is_left_to_the_next_claim() -> None:
    w = world(lease_s=0.6, webhook_timeout_s=0.3)
    failing = flaky_finishes(w, -1)
    await w.scheduler.store_settings("acme", customer_settings())
    await w.scheduler.alert(alert(), partition=2, offset=41)
    started = time.monotonic()
    await w.step()  # gives up recording as the lease ends
    assert time.monotonic() - started < 0.6 + 0.2
    assert await w.state() is DeliveryState.SENDING
    failing[0] = 0  # Redis is back
    await w.step(1.0)  # the lease has ended: claimed again, the outcome unknown, sent again
    assert len(w.webhooks.sent) == 2
    assert await w.state() is DeliveryState.DELIVERED


async def test_only_the_ledger_writes_are_repeated_not_the_metrics_or_the_dead_letter() -> None:
    w = world()
    w.webhooks.answers = [Outcome(Result.REFUSED, "not a global address")]
    flaky_finishes(w, 1)
    published: list[str] = []

    async def publish(topic: str, key: bytes | None, value: bytes) -> None:
        published.append(topic)
        raise KafkaTimeoutError("the broker did not answer")

    w.dispatcher.recorder.publish = publish
    await w.scheduler.store_settings("acme", customer_settings())
    await w.scheduler.alert(alert(), partition=2, offset=41)
    await w.step()
    assert await w.state() is DeliveryState.REFUSED
    assert published == ["notifier.deliveries.dlq"]
    assert w.count("webhook", "refused") == 1
    assert w.metrics.transient_errors.labels("redis")._value.get() == 1
