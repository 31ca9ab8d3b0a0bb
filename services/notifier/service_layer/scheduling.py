"""What a valid input does: an alert schedules one delivery per channel target its customer
configured (once, however often the alert arrives); customer settings are kept or forgotten.
Delivering is the dispatcher's job."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from simwatch_contracts import CardAlert

from ..domain.delivery import Delivery, plan
from ..metrics import Metrics
from ..ports import DeliveryLedger


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
        read, for a dead letter); counted as scheduled, duplicate or no_channel."""
        customer = await self.ledger.customer(alert.customer_id)
        planned = plan(alert, customer, self.sms_enabled)
        if not planned:
            self.metrics.alerts.labels("no_channel").inc()
            return
        now = self.clock()
        alert_json = alert.model_dump_json(exclude_none=True)
        fresh = 0
        for p in planned:
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
            fresh += await self.ledger.schedule(delivery, now)
        self.metrics.alerts.labels("scheduled" if fresh else "duplicate").inc()

    async def store_settings(self, customer_id: str, raw: bytes) -> None:
        """Keep a customer's validated settings as received."""
        await self.ledger.store_customer(customer_id, raw)
        self.metrics.settings.labels("stored").inc()

    async def delete_settings(self, customer_id: str) -> None:
        """Forget a customer's settings (a tombstone)."""
        await self.ledger.delete_customer(customer_id)
        self.metrics.settings.labels("deleted").inc()
