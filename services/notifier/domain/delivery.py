"""Deliveries: which ones an alert makes (one per channel target the customer configured), the
typed record of one, the states it goes through, and what an attempt's outcome makes of it.

    pending ──claim──> sending ──> delivered | disabled | refused | uncertain | gave_up
       ^                  │
       └── retry <────────┘   (deferred: back to pending with a note)

A delivery found in `sending` when claimed was being attempted by a replica that died:
whether that attempt reached the provider is unknown.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import cached_property

from simwatch_contracts import AlertType, CardAlert, CustomerSettings, Reason
from simwatch_contracts.ids import stable_id

from .outcome import Result


class Channel(StrEnum):
    WEBHOOK = "webhook"
    SMS = "sms"


class DeliveryState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    RETRY = "retry"
    DELIVERED = "delivered"
    DISABLED = "disabled"
    REFUSED = "refused"
    UNCERTAIN = "uncertain"
    GAVE_UP = "gave_up"


FINAL_STATE = {
    Result.DELIVERED: DeliveryState.DELIVERED,
    Result.GONE: DeliveryState.DISABLED,
    Result.REFUSED: DeliveryState.REFUSED,
    Result.UNCERTAIN: DeliveryState.UNCERTAIN,
    Result.FAILED: DeliveryState.GAVE_UP,
}
"""The state a delivery ends in after an attempt with this result (RETRY never ends one)."""

DEAD_LETTERED = frozenset({DeliveryState.GAVE_UP, DeliveryState.REFUSED})
"""Final states whose alert goes to the delivery dead-letter topic."""


@dataclass(frozen=True, slots=True)
class Planned:
    delivery_id: str
    channel: Channel
    target: str
    """`webhook` for the customer's (current) webhook; the phone number for SMS."""


@dataclass(frozen=True)
class Delivery:
    """One delivery as the ledger keeps it. `alert_json` is the alert as scheduled (the bytes a
    dead letter carries); `alert` parses it on first use, once per loaded record."""

    delivery_id: str
    alert_json: str
    customer_id: str
    channel: Channel
    target: str
    state: DeliveryState = DeliveryState.PENDING
    attempts: int = 0
    partition: int = 0
    offset: int = 0
    created: float = 0.0

    @cached_property
    def alert(self) -> CardAlert:
        """The alert (raises pydantic's ValidationError when the stored text is unreadable)."""
        return CardAlert.model_validate_json(self.alert_json)


@dataclass(frozen=True, slots=True)
class Claim:
    """The right to attempt a delivery until its lease ends; `token` proves it on finish."""

    delivery_id: str
    previous_state: DeliveryState
    token: int


@dataclass(frozen=True, slots=True)
class Progress:
    """What an attempt records on its delivery (fields left None are not changed)."""

    state: DeliveryState
    attempts: int | None = None
    last: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Claimed:
    """A claim and its delivery as loaded by the same ledger call; `delivery` is None when the
    stored record cannot be read (its lease brings it back, and the error is logged)."""

    claim: Claim
    delivery: Delivery | None


@dataclass(frozen=True, slots=True)
class Finish:
    """One attempt's record for `finish_many`: what `DeliveryLedger.finish` takes."""

    claim: Claim
    next_at: datetime | None
    progress: Progress


def endpoint_of(customer_id: str, channel: Channel) -> str:
    """What the per-endpoint limit counts attempts of: a customer's webhook, or its SMS."""
    return f"{customer_id}/{channel.value}"


CLAIM_SCAN = 2
"""A claim with an endpoint limit looks at up to this many due deliveries per one it may
claim, so that one busy endpoint's backlog at the head of the queue cannot hide the others."""


def plan(alert: CardAlert, settings: CustomerSettings | None, sms_enabled: bool) -> list[Planned]:
    """Deliveries of `alert`; the id is deterministic, so a redelivered alert plans the same."""
    if settings is None:
        return []
    out = []
    if settings.webhook is not None:
        out.append(_planned(alert, Channel.WEBHOOK, "webhook"))
    if settings.sms is not None and sms_enabled and by_sms(alert):
        out += [_planned(alert, Channel.SMS, number) for number in settings.sms.numbers]
    return out


POOL_ONLY = (Reason.POOL_OVER_QUOTA,)


def by_sms(alert: CardAlert) -> bool:
    """Whether `alert` is for a person's phone. A pool's stop, and its end, reach every
    member at once: 10 000 `suspended` alerts, and as many `resumed` when the pool's next
    cycle lifts it. A member stopped by its pool alone (`reasons`), or resumed from that alone
    (`lifted`), goes to the webhook (a system that tracks each card); the phone hears of the
    stop once, from the pool's own `pool_exhausted`. One SMS per member would flood it, and at
    `NOTIFIER_SMS_RATE_PER_HOUR` (10) the backlog of a 10 000-member pool would still be
    sending weeks later. A member stopped or resumed for any reason of its own as well (its
    `member_cap`, a manual stop) is texted as any card is, and so is a `resumed` alert that
    does not say what it lifted (one published before `lifted` existed)."""
    if alert.type is AlertType.SUSPENDED:
        return tuple(alert.reasons or ()) != POOL_ONLY
    if alert.type is AlertType.RESUMED:
        return tuple(alert.lifted or ()) != POOL_ONLY
    return True


def _planned(alert: CardAlert, channel: Channel, target: str) -> Planned:
    return Planned(stable_id("dlv", alert.alert_id, channel.value, target), channel, target)


def sms_key(alert_id: str, number: str) -> str:
    """The idempotency key of one SMS: the same for every attempt of (alert, number)."""
    return hashlib.sha256(f"{alert_id}|{number}".encode()).hexdigest()[:40]
