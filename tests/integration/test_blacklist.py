"""The customer-level blacklist on real Redis and Kafka: a postpaid card cancelled for its
debt blacklists its customer; a new card of that customer is held (`blacklisted`) until the
debt is paid, whether it is paid through the new card or on the cancelled card's account;
the customer's record is visible and every step is idempotent (the drain runs twice)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from simwatch_runtime.redis_client import AnyRedis
from usage_monitor.bootstrap import Components
from usage_monitor.service_layer.status import customer_status

from ..unit.factories import event, upsert
from .helpers import Clock, iccid, in_process

pytestmark = pytest.mark.integration


async def _cancel_for_debt(c: Components, clock: Clock, card: str, customer: str) -> None:
    """A postpaid card whose first bill (100) is never paid: arrears at its due date (Dec 16),
    cancelled three months later, owing the bills of Dec, Jan and Feb (and March's)."""
    await c.service.apply_event(
        upsert(iccid=card, billing="postpaid", balance=0, customer_id=customer)
    )
    for day in (datetime(2026, 12, 16, tzinfo=UTC), datetime(2027, 3, 17, tzinfo=UTC)):
        clock.now = day
        await c.service.tick()
    state = (await c.store.load([card]))[card].state
    assert state.cancelled and state.blacklisted


async def test_a_new_card_of_a_blacklisted_customer_is_held_until_the_debt_is_paid(
    names: dict[str, str], redis: AnyRedis, kafka: Any
) -> None:
    clock = Clock(datetime(2026, 11, 20, 4, tzinfo=UTC))
    c = in_process(names, clock)
    old, new, other = iccid(7001), iccid(7002), iccid(7003)
    try:
        await _cancel_for_debt(c, clock, old, "deadbeat")
        owed = await c.store.customer_debt("deadbeat")
        debt = -(await c.store.load([old]))[old].state.balance
        assert owed.debt == debt > 0 and owed.held == ()
        await c.service.sweep()  # a second drain changes nothing
        assert (await c.store.customer_debt("deadbeat")).debt == debt

        clock.now += timedelta(days=1)
        await c.service.apply_event(upsert(iccid=new, customer_id="deadbeat", balance=0))
        await c.service.apply_event(upsert(iccid=other, customer_id="deadbeat", balance=0))
        held = (await c.store.load([new]))[new].state
        assert held.reasons == {"blacklisted"} and held.held_debt == debt
        assert sorted((await c.store.customer_debt("deadbeat")).held) == sorted([new, other])
        view = customer_status("deadbeat", await c.store.customer_view("deadbeat"))
        assert view["blacklisted"] and view["debt"] == debt
        assert view["cancelled_cards"] == {old: debt}
        assert view["held_cards"] == sorted([new, other])

        # Part of it through the new card, the rest on the cancelled card's own account.
        pay = event("card.recharged", iccid=new, amount=debt - 50)
        await c.service.apply_event(pay)
        await c.service.apply_event(pay)  # redelivered: counted once
        assert (await c.store.customer_debt("deadbeat")).debt == 50
        await c.service.apply_event(event("card.recharged", iccid=old, amount=80))
        await c.service.sweep()
        after = await c.store.load([new, other])
        assert after[new].state.reasons == set() and after[new].state.balance == 0
        assert after[other].state.reasons == set()
        assert await c.store.customer_debt("deadbeat") == type(owed)(0, ())

        commands = await kafka.read(names["USAGE_MONITOR_TOPIC_COMMANDS"], lambda ms: len(ms) >= 6)
        mine = [(m["iccid"], m["type"], m["trigger"]) for m in commands if m["iccid"] != old]
        assert sorted(mine) == sorted(
            [
                (new, "suspend", "blacklisted"),
                (new, "resume", "blacklisted"),
                (other, "suspend", "blacklisted"),
                (other, "resume", "blacklisted"),
            ]
        )
        # A customer in good standing is not held.
        fresh = iccid(7004)
        await c.service.apply_event(upsert(iccid=fresh, customer_id="deadbeat"))
        assert (await c.store.load([fresh]))[fresh].state.reasons == set()
    finally:
        await c.close()
