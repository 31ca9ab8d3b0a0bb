"""`CardService.apply_events` (a batch of card events, one load and one commit round trip per
run of distinct cards) decides exactly what applying the same events one at a time does:
the same outcomes, card states, versions and outbox messages, for any order, repetition
and redelivery of events, and when another writer wins a card mid-batch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from simwatch_contracts import CardEvent
from usage_monitor.adapters.keys import Keys
from usage_monitor.adapters.memory_store import MemoryStore
from usage_monitor.domain import lifecycle
from usage_monitor.domain.pools import Pool, PoolState
from usage_monitor.metrics import Metrics
from usage_monitor.service_layer import service as service_module
from usage_monitor.service_layer.service import CardService, EventOutcome
from usage_monitor.settings import Settings

from .factories import NOW, event, upsert

CARDS = [f"8986041234567890{n:04d}" for n in range(4)]
KINDS = (
    "upsert",
    "upsert_postpaid",
    "upsert_pooled",
    "upsert_pool_unknown",
    "card.recharged",
    "card.renewed",
    "card.suspend_requested",
    "card.resume_requested",
    "card.violation_reported",
    "card.violation_cleared",
    "card.network_observed",
)


def build(kind: str, iccid: str, n: int) -> CardEvent:
    if kind == "upsert":
        return upsert(quota=1000 + n, iccid=iccid)
    if kind == "upsert_postpaid":  # a customer who owes: held by the blacklist when new
        return upsert(quota=500, iccid=iccid, customer_id="owes", billing="postpaid")
    if kind in ("upsert_pooled", "upsert_pool_unknown"):  # a pool defined, and one not yet
        plan = {"plan_id": "p2", "quota_bytes": 800, "monthly_fee": 100, "auto_suspend": True}
        plan["pool_id"] = "P" if kind == "upsert_pooled" else "Q"
        doc = {"customer_id": "acme", "billing": "prepaid", "balance": 1000}
        return event("card.upserted", iccid, **doc, expires_at=_EXPIRES, plan=plan)
    extra: dict[str, dict[str, Any]] = {
        "card.recharged": {"amount": 100 + n},
        "card.renewed": {"expires_at": "2028-01-01T00:00:00+08:00"},
        "card.network_observed": {"network_state": "active" if n % 2 else "suspended"},
    }
    return event(kind, iccid, **extra.get(kind, {}))


def service() -> CardService:
    settings = Settings(redis_shards=4)
    store = MemoryStore(Keys(settings.redis_prefix, settings.redis_shards), lambda: 0.0)
    return CardService(
        store, _NoPublisher(), settings, Metrics.create(CollectorRegistry()), lambda: NOW
    )


class _NoPublisher:
    async def publish(self, messages: Sequence[tuple[str, bytes | None, bytes]]) -> None:
        raise AssertionError("nothing is published: the outboxes are compared")


_EXPIRES = "2027-11-25T00:00:00+08:00"


async def _seed(s: CardService) -> None:
    await s.store.customer_apply("owes", [{"i": "89860400000000000000", "v": 1, "owed": 300}])
    # Pool P stops its members (exhausted this cycle) and bills on its own calendar.
    pool = Pool("P", "acme", 10_000, (80, 90), cycle_day=15, timezone="UTC")
    await s.store.pool_define(pool)
    record = (await s.store.pool_load(["P"]))["P"]
    exhausted = PoolState(cycle=pool.cycle(NOW), fired=frozenset({100}), exhausted=True)
    await s.store.pool_commit(record, exhausted, [], fan_out=False)


async def _observed(s: CardService, outcomes: Sequence[EventOutcome]) -> tuple[object, ...]:
    snaps = await s.store.load(CARDS)
    outbox = [await s.store.outbox_read(shard, 10_000) for shard in range(s.store.shards)]
    return (
        [(o.duplicate, o.outbox, o.decision.rejected if o.decision else None) for o in outcomes],
        {i: (snap.version, snap.state) for i, snap in snaps.items()},
        [[(e.topic, e.key, e.value) for e in entries] for entries in outbox],
    )


events_strategy = st.lists(
    st.tuples(st.sampled_from(CARDS), st.sampled_from(KINDS), st.integers(0, 3)),
    min_size=1,
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(events_strategy, st.lists(st.integers(0, 24), max_size=6))
def test_a_batch_decides_as_one_event_at_a_time(
    drawn: list[tuple[str, str, int]], redelivered: list[int]
) -> None:
    events = [build(kind, iccid, n) for iccid, kind, n in drawn]
    # Redelivery: an event already in the batch comes again (the same event id).
    events += [events[i] for i in redelivered if i < len(events)]

    async def compare() -> None:
        one, batch = service(), service()
        await _seed(one)
        await _seed(batch)
        singly = [await one.apply_event(e, drain=False) for e in events]
        together = await batch.apply_events(events)
        assert await _observed(batch, together) == await _observed(one, singly)
        # With no other writer, no commit of the batch lost a race (a card's second event
        # waits for its first's decision: a conflict would be counted, and decided twice).
        assert _conflicts(batch) == 0

    asyncio.run(compare())


async def test_a_card_another_writer_wins_mid_batch_is_applied_again() -> None:
    s = service()
    first, second = CARDS[0], CARDS[1]
    await s.apply_events([upsert(iccid=first), upsert(iccid=second)])
    commit_many = s.store.commit_many
    rival = CardService(s.store, _NoPublisher(), s.settings, s.metrics, lambda: NOW)

    async def raced(requests: Any) -> list[int]:
        # Between the batch's load and its commit, another worker stops the first card.
        s.store.commit_many = commit_many  # type: ignore[method-assign]
        await rival.apply_event(event("card.suspend_requested", first), drain=False)
        return await commit_many(requests)

    s.store.commit_many = raced  # type: ignore[method-assign]
    outcomes = await s.apply_events(
        [event("card.violation_reported", first), event("card.violation_reported", second)]
    )
    assert [o.duplicate for o in outcomes] == [False, False]
    snaps = await s.store.load([first, second])
    # The first card's decision was made again on top of the rival's: both reasons hold.
    assert {r.value for r in snaps[first].state.reasons} >= {"manual", "violation"}
    assert snaps[first].version == 3 and snaps[second].version == 2
    assert _conflicts(s) == 1


def _conflicts(s: CardService) -> float:
    return s.metrics.evaluations.labels("conflict")._value.get()  # type: ignore[no-any-return]


async def test_an_event_that_cannot_be_decided_leaves_those_before_it_applied(
    monkeypatch: Any,
) -> None:
    """As one at a time: the events before a failing one apply, then the failure ends the
    batch (faust acks it, so the run's earlier events must not go down with it)."""
    s = service()
    bad = CARDS[2]
    decide = lifecycle.apply_event

    def failing(state: Any, event: CardEvent, *args: Any) -> Any:
        if event.iccid == bad:
            raise ValueError("a card state this version cannot read")
        return decide(state, event, *args)

    monkeypatch.setattr(service_module, "apply_event", failing)
    events = [upsert(iccid=c) for c in CARDS]
    with pytest.raises(ValueError, match="cannot read"):
        await s.apply_events(events)
    snaps = await s.store.load(CARDS)
    assert [snaps[c].version for c in CARDS] == [1, 1, 0, 0]


async def test_a_batch_retried_after_a_transient_failure_counts_each_event_once() -> None:
    s = service()
    load = s.store.load
    calls = 0

    async def flaky(iccids: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:  # the second run's read: Redis away for a moment
            raise ConnectionError("redis away")
        return await load(iccids)

    s.store.load = flaky  # type: ignore[method-assign]
    # Two runs: the second event for the first card starts the second.
    events = [
        upsert(iccid=CARDS[0]),
        upsert(iccid=CARDS[1]),
        event("card.suspend_requested", CARDS[0]),
    ]
    settled: list[EventOutcome | None] = [None] * len(events)
    with pytest.raises(ConnectionError):
        await s.apply_events(events, settled)
    assert [o is not None for o in settled] == [True, True, False]
    outcomes = await s.apply_events(events, settled)  # the caller's retry
    assert [o.duplicate for o in outcomes] == [False, False, False]
    assert (await s.store.load([CARDS[0]]))[CARDS[0]].version == 2
    # Counted as a batch that never failed counts them: each decision once.
    calm = service()
    await calm.apply_events(events)
    assert _counted(s) == _counted(calm)
    assert _counted(s)["commands"] == 1  # the manual stop's suspend


def _counted(s: CardService) -> dict[str, float]:
    """The decisions' counters: evaluations by result, and commands."""
    out: dict[str, float] = {}
    for metric in (s.metrics.evaluations, s.metrics.commands):
        for family in metric.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    key = "commands" if metric is s.metrics.commands else str(sample.labels)
                    out[key] = out.get(key, 0) + sample.value
    return out
