"""One contract for the notifier's delivery ledger, held by every implementation: the
in-memory ledger, the Redis ledger on one server, and on a Redis Cluster. The in-memory
ledger the unit tests use is only as good as its agreement with the Lua scripts."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from notifier.adapters.memory_ledger import MemoryLedger
from notifier.adapters.redis_ledger import RedisLedger
from notifier.domain.delivery import (
    Channel,
    Delivery,
    DeliveryState,
    Finish,
    Progress,
    endpoint_of,
    plan,
)
from notifier.ports import DeliveryLedger
from simwatch_contracts import CardAlert, CustomerSettings
from simwatch_runtime.redis_client import connect

from ..conftest import REDIS_URL
from ..receiver import SECRET

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
LEASE_S = 60.0


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture(params=["memory", "single", "cluster"])
async def ledger(request: pytest.FixtureRequest) -> AsyncIterator[DeliveryLedger]:
    if request.param == "memory":
        yield MemoryLedger()
        return
    url = request.getfixturevalue("redis_cluster").url if request.param == "cluster" else REDIS_URL
    client = connect(url)
    prefix = f"lc{uuid.uuid4().hex[:10]}"
    yield RedisLedger(client, prefix)
    keys = [k async for k in client.scan_iter(match=f"{{{prefix}}}:*", count=1000)]
    for key in keys:
        await client.delete(key)
    await client.aclose()


def alert(n: int = 1) -> CardAlert:
    return CardAlert.model_validate_json(
        json.dumps(
            {
                "alert_id": f"alr-{n}",
                "type": "suspended",
                "iccid": "89860412345678901234",
                "customer_id": "acme",
                "cycle": "2026-11-01",
                "occurred_at": T0.isoformat(),
                "trigger": "over_quota",
                "reasons": ["over_quota"],
            }
        )
    )


def delivery(n: int = 1, channel: Channel = Channel.WEBHOOK, target: str = "webhook") -> Delivery:
    a = alert(n)
    return Delivery(
        delivery_id=f"dlv-{n}-{channel.value}-{target}",
        alert_json=a.model_dump_json(exclude_none=True),
        customer_id=a.customer_id,
        channel=channel,
        target=target,
        partition=3,
        offset=1000 + n,
        created=T0.timestamp() + 0.125,
    )


def settings(customer_id: str = "acme", **extra: object) -> bytes:
    doc = {"customer_id": customer_id, "webhook": {"url": "https://h.example/x", "secret": SECRET}}
    return json.dumps(doc | extra).encode()


# Scheduling


async def test_a_scheduled_delivery_reads_back_as_it_was_written(ledger: DeliveryLedger) -> None:
    d = delivery()
    assert await ledger.schedule(d, T0)
    loaded = await ledger.load(d.delivery_id)
    assert loaded == d
    assert loaded is not None and loaded.alert == alert()
    assert await ledger.depth() == 1


async def test_scheduling_is_idempotent_by_alert_and_channel_target(
    ledger: DeliveryLedger,
) -> None:
    customer = CustomerSettings.model_validate_json(settings(sms={"numbers": ["+8613800000000"]}))
    text = alert().model_dump_json(exclude_none=True)
    deliveries = [
        Delivery(p.delivery_id, text, "acme", p.channel, p.target)
        for p in plan(alert(), customer, sms_enabled=True)
    ]
    assert [await ledger.schedule(d, T0) for d in deliveries] == [True, True]
    again = [p.delivery_id for p in plan(alert(), customer, sms_enabled=True)]
    assert again == [d.delivery_id for d in deliveries]  # a redelivered alert plans the same
    changed = Delivery(again[0], "{}", "other", Channel.WEBHOOK, "webhook", attempts=7)
    assert not await ledger.schedule(changed, at(-100))  # known: nothing changes
    assert await ledger.load(again[0]) == deliveries[0]
    assert await ledger.depth() == 2
    assert [c.delivery_id for c in await ledger.claim(at(-1), LEASE_S, 10)] == []


async def test_an_unknown_delivery_loads_as_none_and_cannot_be_finished(
    ledger: DeliveryLedger,
) -> None:
    assert await ledger.load("dlv-nope") is None
    d = delivery()
    await ledger.schedule(d, T0)
    (claim,) = await ledger.claim(T0, LEASE_S, 1)
    ghost = type(claim)("dlv-nope", claim.previous_state, claim.token)
    assert not await ledger.finish(ghost, None, Progress(DeliveryState.DELIVERED, 1))


# Claims and leases


async def test_only_due_deliveries_are_claimed_earliest_first_up_to_the_limit(
    ledger: DeliveryLedger,
) -> None:
    for n, due in [(1, 30.0), (2, 10.0), (3, 20.0), (4, 40.0)]:
        await ledger.schedule(delivery(n), at(due))
    assert await ledger.claim(at(5), LEASE_S, 10) == []
    claims = await ledger.claim(at(30), LEASE_S, 2)
    assert [c.delivery_id for c in claims] == [delivery(2).delivery_id, delivery(3).delivery_id]
    assert all(c.previous_state is DeliveryState.PENDING and c.token == 1 for c in claims)
    (third,) = await ledger.claim(at(30), LEASE_S, 10)  # due at exactly now counts
    assert third.delivery_id == delivery(1).delivery_id
    assert await ledger.depth() == 4  # leased deliveries still wait for their outcome


async def test_a_claimed_delivery_is_nobody_elses_until_its_lease_ends(
    ledger: DeliveryLedger,
) -> None:
    d = delivery()
    await ledger.schedule(d, T0)
    (first,) = await ledger.claim(T0, LEASE_S, 10)
    loaded = await ledger.load(d.delivery_id)
    assert loaded is not None and loaded.state is DeliveryState.SENDING
    assert await ledger.claim(at(LEASE_S - 1), LEASE_S, 10) == []
    (second,) = await ledger.claim(at(LEASE_S), LEASE_S, 10)  # the claimer died
    # The earlier attempt's outcome is unknown: a non-idempotent SMS must not go again.
    assert second.previous_state is DeliveryState.SENDING
    assert second.token == first.token + 1


async def test_finish_needs_the_current_claim(ledger: DeliveryLedger) -> None:
    d = delivery()
    await ledger.schedule(d, T0)
    (stale,) = await ledger.claim(T0, LEASE_S, 10)
    (current,) = await ledger.claim(at(LEASE_S), LEASE_S, 10)
    slow = Progress(DeliveryState.DELIVERED, attempts=1, last="200")
    assert not await ledger.finish(stale, None, slow)  # a slower replica's late outcome
    loaded = await ledger.load(d.delivery_id)
    assert loaded is not None and loaded.state is DeliveryState.SENDING
    assert await ledger.depth() == 1
    assert await ledger.finish(current, None, Progress(DeliveryState.GAVE_UP, 2, "HTTP 500"))
    loaded = await ledger.load(d.delivery_id)
    assert loaded is not None and (loaded.state, loaded.attempts) == (DeliveryState.GAVE_UP, 2)


# Finishing


@pytest.mark.parametrize(
    "state",
    [
        DeliveryState.DELIVERED,
        DeliveryState.DISABLED,
        DeliveryState.REFUSED,
        DeliveryState.UNCERTAIN,
        DeliveryState.GAVE_UP,
    ],
)
async def test_a_finished_delivery_leaves_the_queue_and_keeps_its_record(
    ledger: DeliveryLedger, state: DeliveryState
) -> None:
    d = delivery()
    await ledger.schedule(d, T0)
    (claim,) = await ledger.claim(T0, LEASE_S, 10)
    assert await ledger.finish(claim, None, Progress(state, attempts=1, last="why"))
    assert await ledger.depth() == 0
    assert await ledger.claim(at(10 * LEASE_S), LEASE_S, 10) == []
    loaded = await ledger.load(d.delivery_id)
    assert loaded is not None
    assert (loaded.state, loaded.attempts, loaded.alert_json) == (state, 1, d.alert_json)
    assert not await ledger.schedule(d, at(20 * LEASE_S))  # still a duplicate


async def test_a_retry_is_due_again_at_its_time_and_counts_its_attempts(
    ledger: DeliveryLedger,
) -> None:
    d = delivery()
    await ledger.schedule(d, T0)
    (claim,) = await ledger.claim(T0, LEASE_S, 10)
    assert await ledger.finish(claim, at(5), Progress(DeliveryState.RETRY, 1, "HTTP 503"))
    assert await ledger.claim(at(4.5), LEASE_S, 10) == []
    (again,) = await ledger.claim(at(5), LEASE_S, 10)
    assert (again.previous_state, again.token) == (DeliveryState.RETRY, 2)
    loaded = await ledger.load(d.delivery_id)
    assert loaded is not None and loaded.attempts == 1


async def test_a_deferral_keeps_the_attempt_count(ledger: DeliveryLedger) -> None:
    d = delivery(channel=Channel.SMS, target="+8613800000000")
    await ledger.schedule(d, T0)
    (claim,) = await ledger.claim(T0, LEASE_S, 10)
    quiet = Progress(DeliveryState.PENDING, note="quiet hours")
    assert await ledger.finish(claim, at(3600), quiet)
    loaded = await ledger.load(d.delivery_id)
    assert loaded is not None and (loaded.state, loaded.attempts) == (DeliveryState.PENDING, 0)
    (again,) = await ledger.claim(at(3600), LEASE_S, 10)
    assert again.previous_state is DeliveryState.PENDING


# Customers


async def test_settings_are_stored_replaced_and_deleted_per_customer(
    ledger: DeliveryLedger,
) -> None:
    assert await ledger.customer("acme") is None
    await ledger.store_customer("acme", settings(language="en"))
    await ledger.store_customer("beta", settings("beta"))
    stored = await ledger.customer("acme")
    assert stored is not None and stored.language == "en"
    await ledger.store_customer("acme", settings(language="zh-CN"))
    stored = await ledger.customer("acme")
    assert stored is not None and stored.language == "zh-CN"
    await ledger.delete_customer("acme")  # a tombstone
    await ledger.delete_customer("never-seen")
    assert await ledger.customer("acme") is None
    assert await ledger.customer("beta") is not None


async def test_stored_settings_that_are_invalid_now_are_not_used(ledger: DeliveryLedger) -> None:
    short = settings(webhook={"url": "https://h.example/x", "secret": "whsec_c2hvcnQ="})
    await ledger.store_customer("acme", short)
    assert await ledger.customer("acme") is None


async def test_a_webhook_gone_is_remembered_per_customer(ledger: DeliveryLedger) -> None:
    assert await ledger.webhook_gone("acme") is None
    await ledger.mark_webhook_gone("acme", "https://h.example/x")
    assert await ledger.webhook_gone("acme") == "https://h.example/x"
    assert await ledger.webhook_gone("beta") is None


async def test_sms_are_counted_per_number_and_hour(ledger: DeliveryLedger) -> None:
    hour = int(T0.timestamp() // 3600)
    assert [await ledger.count_sms("+8613800000000", hour) for _ in range(3)] == [1, 2, 3]
    assert await ledger.count_sms("+8613800000001", hour) == 1
    assert await ledger.count_sms("+8613800000000", hour + 1) == 1


# Batches: one call for many deliveries, each one as if called alone


async def test_schedule_many_flags_each_delivery_and_keeps_the_known_ones(
    ledger: DeliveryLedger,
) -> None:
    assert await ledger.schedule(delivery(2), at(-5))
    batch = [(delivery(1), T0), (delivery(2), T0), (delivery(3), at(10)), (delivery(1), at(1))]
    assert await ledger.schedule_many(batch) == [True, False, True, False]
    assert await ledger.schedule_many([]) == []
    assert await ledger.load(delivery(3).delivery_id) == delivery(3)
    assert await ledger.depth() == 3
    claims = await ledger.claim(T0, LEASE_S, 10)  # delivery 2 kept its first due time
    assert [c.delivery_id for c in claims] == [delivery(2).delivery_id, delivery(1).delivery_id]


async def test_claim_due_loads_each_claimed_delivery_in_the_same_call(
    ledger: DeliveryLedger,
) -> None:
    await ledger.schedule_many([(delivery(n), at(n)) for n in (1, 2, 3)])
    claimed = await ledger.claim_due(at(2), LEASE_S, 10)
    assert [c.claim.delivery_id for c in claimed] == [
        delivery(1).delivery_id,
        delivery(2).delivery_id,
    ]
    for n, c in enumerate(claimed, start=1):
        assert (c.claim.previous_state, c.claim.token) == (DeliveryState.PENDING, 1)
        assert c.delivery == replace(delivery(n), state=DeliveryState.SENDING)
        assert c.delivery == await ledger.load(c.claim.delivery_id)


async def test_an_endpoint_at_its_limit_gets_no_more_and_its_backlog_steps_aside(
    ledger: DeliveryLedger,
) -> None:
    busy = [delivery(n) for n in range(1, 4)]  # acme's webhook: due first
    other = replace(delivery(20), customer_id="beta")
    sms = delivery(21, Channel.SMS, "+8613800000000")  # acme's SMS: another endpoint
    await ledger.schedule_many([(d, at(n)) for n, d in enumerate(busy)])
    await ledger.schedule_many([(other, at(50)), (sms, at(51))])
    hook = endpoint_of("acme", Channel.WEBHOOK)
    claimed = await ledger.claim_due(at(60), LEASE_S, 3, cap=2, in_flight={hook: 1})
    ids = [c.claim.delivery_id for c in claimed]
    assert ids == [busy[0].delivery_id, other.delivery_id, sms.delivery_id], ids
    # The busy endpoint's skipped deliveries are still due, now behind the others.
    again = await ledger.claim_due(at(60), LEASE_S, 10, cap=2, in_flight={hook: 2})
    assert again == []
    again = await ledger.claim_due(at(61), LEASE_S, 10, cap=2)
    assert [c.claim.delivery_id for c in again] == [d.delivery_id for d in busy[1:3]]
    assert await ledger.depth() == 5


async def test_a_claim_moves_at_most_its_limit_of_a_busy_endpoints_deliveries(
    ledger: DeliveryLedger,
) -> None:
    await ledger.schedule_many([(delivery(n), at(n)) for n in range(1, 11)])
    hook = endpoint_of("acme", Channel.WEBHOOK)
    assert await ledger.claim_due(at(20), LEASE_S, 3, cap=1, in_flight={hook: 1}) == []
    (first,) = await ledger.claim_due(at(20), LEASE_S, 1)  # deliveries 4..10 did not move
    assert first.claim.delivery_id == delivery(4).delivery_id


async def test_finish_many_records_each_outcome_that_still_holds_its_claim(
    ledger: DeliveryLedger,
) -> None:
    await ledger.schedule_many([(delivery(n), T0) for n in (1, 2, 3)])
    (stale, *_) = await ledger.claim(T0, LEASE_S, 10)
    one, two, three = await ledger.claim(at(LEASE_S), LEASE_S, 10)
    flags = await ledger.finish_many(
        [
            Finish(stale, None, Progress(DeliveryState.DELIVERED, 1, "200")),
            Finish(two, at(100), Progress(DeliveryState.RETRY, 1, "HTTP 503")),
            Finish(three, None, Progress(DeliveryState.GAVE_UP, 1, "HTTP 500")),
        ]
    )
    assert flags == [False, True, True]
    assert await ledger.finish_many([]) == []
    states = [await ledger.load(delivery(n).delivery_id) for n in (1, 2, 3)]
    assert [(s.state, s.attempts) for s in states if s] == [
        (DeliveryState.SENDING, 0),
        (DeliveryState.RETRY, 1),
        (DeliveryState.GAVE_UP, 1),
    ]
    assert await ledger.depth() == 2
    assert await ledger.finish_many([Finish(one, None, Progress(DeliveryState.DELIVERED, 1))])
    (due,) = await ledger.claim(at(100), LEASE_S, 10)
    assert (due.delivery_id, due.previous_state) == (delivery(2).delivery_id, DeliveryState.RETRY)


async def test_customers_and_gone_webhooks_are_read_for_many_at_once(
    ledger: DeliveryLedger,
) -> None:
    await ledger.store_customer("acme", settings(language="en"))
    await ledger.store_customer("bad", settings("bad", webhook={"url": "x", "secret": "s"}))
    await ledger.mark_webhook_gone("acme", "https://h.example/x")
    got = await ledger.customers(["acme", "bad", "nobody"])
    assert set(got) == {"acme", "bad", "nobody"}
    assert got["acme"] == await ledger.customer("acme") and got["acme"] is not None
    assert got["bad"] is None and got["nobody"] is None
    assert await ledger.customers([]) == {}
    assert await ledger.webhooks_gone(["acme", "beta"]) == {"acme": "https://h.example/x"}
