"""The due-time sorted sets on real Redis: the clock finds exactly the cards that fell due,
in slices, and a worker that was down catches up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from simwatch_runtime.redis_client import AnyRedis

from ..unit.factories import upsert
from .helpers import Clock, iccid, in_process

pytestmark = pytest.mark.integration


async def test_rollover_of_many_cards_through_the_sorted_sets(
    names: dict[str, str], redis: AnyRedis, kafka: Any
) -> None:
    clock = Clock(datetime(2026, 11, 20, 4, tzinfo=UTC))
    c = in_process(names, clock)
    try:
        cards = [iccid(5000 + i) for i in range(120)]
        for i, card in enumerate(cards):
            # Half the cards cannot pay December's fee (100): they fall into arrears.
            await c.service.apply_event(
                upsert(
                    iccid=card, balance=0 if i % 2 else 1000, expires_at="2099-01-01T00:00:00+08:00"
                )
            )
        assert await c.service.tick() == 0  # nothing due yet

        clock.now = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai: after rollover
        # One evaluation per card settles all its due steps (balance check, then rollover),
        # read from the sorted sets in slices of 50.
        assert await c.service.tick(batch=50) == 120
        assert await c.service.tick() == 0  # each step fired once
        commands = await kafka.read(names["USAGE_MONITOR_TOPIC_COMMANDS"], lambda ms: len(ms) >= 60)
        assert sorted(m["iccid"] for m in commands) == sorted(cards[1::2])
        assert {(m["type"], m["trigger"]) for m in commands} == {("suspend", "arrears")}

        # A worker down for five months catches up, every card, in order.
        clock.now += timedelta(days=150)
        assert await c.service.tick() > 0
        snaps = await c.store.load(cards[:2])
        assert snaps[cards[0]].state.cycle is not None
        assert snaps[cards[0]].state.cycle.isoformat() == "2027-04-01"
        assert snaps[cards[0]].state.balance == 1000 - 5 * 100
    finally:
        await c.close()
