"""What a valid input does: an alert schedules one delivery per channel target its customer
configured (once, however often the alert arrives); customer settings are kept or forgotten.
Delivering is the dispatcher's job."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from simwatch_contracts import CardAlert

from ..domain.delivery import Delivery, by_sms, plan
from ..metrics import Metrics
from ..ports import DeliveryLedger

SCHEDULE_BATCH = 500
"""At most this many deliveries per ledger call."""


class Scheduler:
    def __init__(
        self,
        ledger: DeliveryLedger,
        metrics: Metrics,
        sms_enabled: bool,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.ledger = ledger
        self.metrics = metrics
        self.sms_enabled = sms_enabled
        self.clock = clock

    async def alert(self, alert: CardAlert, partition: int, offset: int) -> None:
        """Schedule `alert`'s deliveries, due now (`partition` and `offset` say where it was
        read, for a dead letter); counted as scheduled, duplicate, no_channel or webhook_only."""
        await self.alerts([(alert, partition, offset)])

    async def alerts(self, batch: Sequence[tuple[CardAlert, int, int]]) -> None:
        """`alert` for each (alert, partition, offset), with one read of the customers'
        settings and one ledger call for all the deliveries."""
        customers = await self.ledger.customers({a.customer_id for a, _, _ in batch})
        now = self.clock()
        planned: list[tuple[Delivery, datetime]] = []
        owners: list[int] = []  # the index in `batch` of each planned delivery
        for n, (alert, partition, offset) in enumerate(batch):
            customer = customers.get(alert.customer_id)
            plans = plan(alert, customer, self.sms_enabled)
            if not plans:
                # A member stopped or resumed by its pool alone goes to the webhook only; a
                # customer with SMS and no webhook is not missing a channel for it.
                texts = customer is not None and customer.sms is not None and self.sms_enabled
                outcome = "webhook_only" if texts and not by_sms(alert) else "no_channel"
                self.metrics.alerts.labels(outcome).inc()
                continue
            alert_json = alert.model_dump_json(exclude_none=True)
            for p in plans:
                delivery = Delivery(
                    delivery_id=p.delivery_id,
                    alert_json=alert_json,
                    customer_id=alert.customer_id,
                    channel=p.channel,
                    target=p.target,
                    partition=partition,
                    offset=offset,
                    created=now.timestamp(),
                )
                planned.append((delivery, now))
                owners.append(n)
        fresh = [False] * len(batch)
        for start in range(0, len(planned), SCHEDULE_BATCH):
            flags = await self.ledger.schedule_many(planned[start : start + SCHEDULE_BATCH])
            for n, flag in zip(owners[start : start + SCHEDULE_BATCH], flags, strict=True):
                fresh[n] = fresh[n] or flag
        for n in sorted(set(owners)):
            self.metrics.alerts.labels("scheduled" if fresh[n] else "duplicate").inc()

    async def store_settings(self, customer_id: str, raw: bytes) -> None:
        """Keep a customer's validated settings as received."""
        await self.ledger.store_customer(customer_id, raw)
        self.metrics.settings.labels("stored").inc()

    async def delete_settings(self, customer_id: str) -> None:
        """Forget a customer's settings (a tombstone)."""
        await self.ledger.delete_customer(customer_id)
        self.metrics.settings.labels("deleted").inc()
