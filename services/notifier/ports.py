"""The notifier's ports: what the service layer needs from storage, Kafka and the channels.

Adapters implement them (`adapters.redis_ledger`, `adapters.memory_ledger`, `channels.*`,
the Kafka publisher wired in `bootstrap`); the service layer sees only these.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from simwatch_contracts import CardAlert, CustomerSettings

from .domain.delivery import Claim, Claimed, Delivery, Finish, Progress
from .domain.outcome import Outcome


class DeliveryLedger(Protocol):
    """Deliveries, their due times and leases, and what the notifier knows of customers."""

    async def schedule(self, delivery: Delivery, at: datetime) -> bool:
        """Record `delivery`, first due `at`; False (and no change) when it exists already."""
        ...

    async def schedule_many(self, deliveries: Sequence[tuple[Delivery, datetime]]) -> list[bool]:
        """`schedule` for each (delivery, first due) in one call, in order; one flag each."""
        ...

    async def claim(self, now: datetime, lease_s: float, limit: int) -> list[Claim]:
        """At most `limit` deliveries due by `now`, each leased to the caller for `lease_s`:
        nobody else claims it before the lease ends, and it is claimed again if the caller
        never finishes it."""
        ...

    async def claim_due(
        self,
        now: datetime,
        lease_s: float,
        limit: int,
        *,
        cap: int = 0,
        in_flight: Mapping[str, int] | None = None,
    ) -> list[Claimed]:
        """`claim`, each claim with its delivery loaded in the same call. With `cap` > 0, an
        endpoint (`endpoint_of`) with `cap` attempts in flight (`in_flight`, those claimed in
        this call included) gets no more: its due deliveries are looked at (up to
        `CLAIM_SCAN` times `limit` in all) and at most `limit` of them move, unchanged and still
        due, behind every delivery due by `now`, so that other endpoints' come forward."""
        ...

    async def load(self, delivery_id: str) -> Delivery | None:
        """The delivery; None when it is not (or no longer) known."""
        ...

    async def finish(self, claim: Claim, next_at: datetime | None, progress: Progress) -> bool:
        """Record an attempt's `progress` if `claim` still holds the delivery; due again at
        `next_at`, or finished (kept for a while, then forgotten) when None. False when a
        newer claim owns the delivery (nothing changes)."""
        ...

    async def finish_many(self, finishes: Sequence[Finish]) -> list[bool]:
        """`finish` for each in one call, in order; one flag each."""
        ...

    async def depth(self) -> int:
        """How many deliveries wait for an attempt (leased ones included)."""
        ...

    async def store_customer(self, customer_id: str, raw: bytes) -> None:
        """Keep the customer's settings as received (validated JSON)."""
        ...

    async def delete_customer(self, customer_id: str) -> None:
        """Forget the customer's settings (a tombstone on the compacted topic)."""
        ...

    async def customer(self, customer_id: str) -> CustomerSettings | None:
        """The customer's settings; None when unknown or no longer valid."""
        ...

    async def customers(self, ids: Collection[str]) -> dict[str, CustomerSettings | None]:
        """`customer` of each id, read in one call."""
        ...

    async def webhooks_gone(self, ids: Collection[str]) -> dict[str, str]:
        """`webhook_gone` of each id that has one, read in one call."""
        ...

    async def webhook_gone(self, customer_id: str) -> str | None:
        """The customer's webhook URL that answered 410, if any."""
        ...

    async def mark_webhook_gone(self, customer_id: str, url: str) -> None: ...

    async def count_sms(self, number: str, hour: int) -> int:
        """Count one SMS to `number` in epoch-hour `hour`; the count so far, this one included."""
        ...


class Publisher(Protocol):
    """Writes one record to a Kafka topic (durably, before returning)."""

    async def __call__(self, topic: str, key: bytes | None, value: bytes, /) -> None: ...


class WebhookChannel(Protocol):
    async def send(
        self, url: str, secrets: str | Sequence[str], alert: CardAlert, now: datetime
    ) -> Outcome:
        """One signed attempt of `alert` to `url`; never raises for the endpoint's faults."""
        ...


class SmsProvider(Protocol):
    name: str
    idempotent: bool
    """True when sending again with the same key cannot make a second SMS."""

    async def send(self, to: str, text: str, key: str, params: dict[str, str]) -> Outcome: ...
