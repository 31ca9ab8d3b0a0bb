"""The lifecycle clock through the real worker: expiry fired by the owner's timer,
renewal, and a card upserted past its grace period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ..conftest import KafkaIO
from .helpers import card_event, iccid, upsert, wait_for

pytestmark = pytest.mark.integration


async def test_expiry_suspends_on_time_and_renewal_restores(
    start_worker: Any, kafka: KafkaIO, names: dict[str, str]
) -> None:
    worker = start_worker(USAGE_MONITOR_SCHEDULER_INTERVAL_S="0.2")
    card = iccid(41)
    expires = datetime.now(UTC) + timedelta(seconds=4)
    events = names["USAGE_MONITOR_TOPIC_EVENTS"]
    await kafka.send(events, upsert(card, 10**9, expires_at=expires.isoformat()), key=card)

    status = await wait_for(lambda: worker.card(card).status_code == 200 and worker.card(card))
    assert status.json()["next_scheduled"]["kind"] == "expire"

    commands = await kafka.read(names["USAGE_MONITOR_TOPIC_COMMANDS"], lambda ms: len(ms) >= 1)
    (suspend,) = commands
    assert (suspend["type"], suspend["trigger"], suspend["reasons"]) == (
        "suspend",
        "expired",
        ["expired"],
    )
    issued = datetime.fromisoformat(suspend["issued_at"])
    assert issued == expires.replace(microsecond=issued.microsecond)  # at expiry, not later

    renewed = (datetime.now(UTC) + timedelta(days=365)).isoformat()
    await kafka.send(events, card_event("card.renewed", card, expires_at=renewed), key=card)
    commands = await kafka.read(names["USAGE_MONITOR_TOPIC_COMMANDS"], lambda ms: len(ms) >= 2)
    assert [(c["type"], c["trigger"]) for c in commands] == [
        ("suspend", "expired"),
        ("resume", "expired"),
    ]
    alerts = await kafka.read(names["USAGE_MONITOR_TOPIC_ALERTS"], lambda ms: len(ms) >= 3)
    kinds = [a["type"] for a in alerts]
    assert kinds[0] == "expiry_upcoming" and alerts[0]["days_left"] == 1
    assert kinds[1:] == ["suspended", "resumed"]


async def test_card_upserted_past_its_grace_is_cancelled_at_once(
    start_worker: Any, kafka: KafkaIO, names: dict[str, str]
) -> None:
    worker = start_worker()
    card = iccid(42)
    expired = (datetime.now(UTC) - timedelta(days=200)).isoformat()
    await kafka.send(
        names["USAGE_MONITOR_TOPIC_EVENTS"], upsert(card, 1000, expires_at=expired), key=card
    )
    commands = await kafka.read(names["USAGE_MONITOR_TOPIC_COMMANDS"], lambda ms: len(ms) >= 2)
    assert [(c["type"], c["trigger"]) for c in commands] == [
        ("suspend", "expired"),
        ("cancel", "expired"),
    ]
    view = worker.card(card).json()
    assert view["state"] == "cancelled" and view["next_scheduled"] is None
