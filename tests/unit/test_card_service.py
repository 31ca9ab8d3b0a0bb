"""CardService (decide -> commit -> publish) without Redis or Kafka: the in-memory store
(proven equal to Redis by tests/integration/test_redis_store.py) and a publisher that
records what it was given."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from usage_monitor.adapters.keys import Keys
from usage_monitor.adapters.memory_store import MemoryStore
from usage_monitor.metrics import Metrics
from usage_monitor.ports import CommitRequest, IngestRow, Publisher, new_token
from usage_monitor.service_layer.blacklist import LEDGER
from usage_monitor.service_layer.service import OUTBOX_LOCK_MS, CardService
from usage_monitor.settings import Settings

from .factories import CYCLE, ICCID, NOW, event, upsert


class RecordingPublisher(Publisher):
    """The Publisher port, keeping every message; `down` makes it fail like Kafka away."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.down = False

    async def publish(self, messages: Sequence[tuple[str, bytes | None, bytes]]) -> None:
        if self.down:
            raise ConnectionError("kafka away")
        self.sent += messages

    def of(self, topic: str) -> list[dict[str, object]]:
        return [json.loads(v) for t, _, v in self.sent if t == topic]


class Clock:
    """Wall clock of the service, and the monotonic clock of the store's lock expiry."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.elapsed_s = 0.0

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.elapsed_s


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def service(clock: Clock, publisher: RecordingPublisher) -> CardService:
    settings = Settings(redis_shards=4)
    store = MemoryStore(Keys(settings.redis_prefix, settings.redis_shards), clock.monotonic)
    return CardService(store, publisher, settings, Metrics.create(CollectorRegistry()), clock)


async def use(service: CardService, nbytes: int, record_id: str) -> int:
    """Count a record in the store as the usage pipeline does, then settle what is due."""
    result = await service.store.ingest(
        service.store.shard(ICCID), [IngestRow(record_id, ICCID, "", CYCLE, nbytes, day="20261125")]
    )
    return await service.evaluate(iccid for iccid, _, _ in result.due)


async def test_an_event_applies_once_and_its_decision_is_published(
    service: CardService, publisher: RecordingPublisher
) -> None:
    first = upsert(quota=1000)
    outcome = await service.apply_event(first)
    assert outcome.decision is not None and not outcome.duplicate
    assert (await service.apply_event(first)).duplicate
    snap = (await service.store.load([ICCID]))[ICCID]
    assert snap.version == 1 and snap.state.profile is not None
    assert await service.store.outbox_depth([service.store.shard(ICCID)]) == {
        service.store.shard(ICCID): 0
    }
    assert all(topic != LEDGER for topic, _, _ in publisher.sent)  # the ledger stays in Redis


async def test_usage_over_quota_suspends_and_alerts_once(
    service: CardService, publisher: RecordingPublisher
) -> None:
    await service.apply_event(upsert(quota=1000))
    assert await use(service, 850, "r1") == 1  # the 80 % warning
    assert await use(service, 200, "r2") == 1  # 90 %, exhausted, suspended
    assert await use(service, 200, "r2") == 0  # the same record again: nothing new
    alerts = publisher.of(service.settings.topic_alerts)
    assert [(a["type"], a.get("percent")) for a in alerts] == [
        ("usage_threshold", 80),
        ("usage_threshold", 90),
        ("quota_exhausted", 100),
        ("suspended", None),
    ]
    commands = publisher.of(service.settings.topic_commands)
    assert [(c["type"], c["trigger"]) for c in commands] == [("suspend", "over_quota")]
    assert await service.store.suspended_cards() == 1


async def test_a_decision_waits_in_the_outbox_while_kafka_is_away(
    service: CardService, publisher: RecordingPublisher, clock: Clock
) -> None:
    await service.apply_event(upsert(quota=1000))
    publisher.down = True
    await service.apply_event(event("card.suspend_requested"))  # drain fails: left for sweep
    shard = service.store.shard(ICCID)
    # one entry: the command, the alert, and their two audit records
    assert (await service.store.outbox_depth([shard]))[shard] == 1
    assert len(await service.store.outbox_read(shard, 10)) == 4
    assert publisher.sent == []
    publisher.down = False
    assert await service.sweep() == 0  # the failed drain's lock holds until it expires
    clock.elapsed_s += OUTBOX_LOCK_MS / 1000
    assert await service.sweep() == 4
    assert [c["trigger"] for c in publisher.of(service.settings.topic_commands)] == ["manual"]


async def test_a_drain_under_another_holders_lock_leaves_the_outbox_to_it(
    service: CardService, publisher: RecordingPublisher
) -> None:
    await service.apply_event(upsert(quota=1000))
    shard = service.store.shard(ICCID)
    holder = new_token()
    assert await service.store.outbox_claim(shard, holder, 10_000, 10) is not None
    await service.apply_event(event("card.suspend_requested"))
    assert publisher.sent == []  # the holder publishes it
    waiting = await service.store.outbox_settle(shard, holder, 10_000, [], 10)
    assert waiting  # entries remain: the holder reads them and keeps the lock
    assert await service.drain(shard) == 0  # still held by `holder`


async def test_evaluate_decides_again_after_a_conflict(service: CardService, clock: Clock) -> None:
    await service.apply_event(upsert(quota=1000))
    store = service.store
    original = store.load

    async def load_then_race(iccids: object) -> object:
        snaps = await original(iccids)  # type: ignore[arg-type]
        if not raced:
            raced.append(True)
            snap = snaps[ICCID]
            await store.commit(CommitRequest(snap, snap.state))  # someone else writes first
        return snaps

    raced: list[bool] = []
    store.load = load_then_race  # type: ignore[method-assign]
    clock.now += timedelta(days=400)  # expired long ago: a change to decide
    assert await service.evaluate([ICCID]) == 1
    assert service.metrics.evaluations.labels("conflict")._value.get() == 1


async def test_tick_settles_the_cards_that_fell_due(
    service: CardService, clock: Clock, publisher: RecordingPublisher
) -> None:
    await service.apply_event(upsert(quota=1000, expires_at="2026-12-01T00:00:00+08:00"))
    assert await service.tick() == 0
    clock.now = datetime(2026, 12, 2, tzinfo=UTC)
    assert await service.tick() >= 1
    state = (await service.store.load([ICCID]))[ICCID].state
    assert "expired" in state.reasons
    assert any(a["type"] == "suspended" for a in publisher.of(service.settings.topic_alerts))
