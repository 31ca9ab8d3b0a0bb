"""One attempt of a claimed delivery on its channel, or the reason it waits (quiet hours,
the per-number SMS limit)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from simwatch_contracts import CardAlert, CustomerSettings

from ..domain import policy
from ..domain.delivery import Channel, Claim, Delivery, DeliveryState, sms_key
from ..domain.messages import render
from ..domain.outcome import Outcome, Result
from ..ports import DeliveryLedger, SmsProvider, WebhookChannel
from ..settings import Settings


@dataclass(frozen=True, slots=True)
class Defer:
    """Not now: back to pending until `until`, for the reason `why`."""

    until: datetime
    why: str


class Sender:
    def __init__(
        self,
        ledger: DeliveryLedger,
        webhooks: WebhookChannel,
        sms: SmsProvider | None,
        settings: Settings,
    ) -> None:
        self.ledger = ledger
        self.webhooks = webhooks
        self.sms = sms
        self.settings = settings

    async def send(
        self,
        claim: Claim,
        delivery: Delivery,
        customer: CustomerSettings | None,
        now: datetime,
        gone: str | None,
    ) -> Outcome | Defer:
        """Attempt `delivery` to `customer` (their settings now; `gone`: their webhook URL
        that answered 410, if any), or defer it."""
        if delivery.channel is Channel.WEBHOOK:
            return await self._webhook(delivery.alert, customer, gone, now)
        return await self._sms(claim, delivery.alert, customer, delivery.target, now)

    async def _webhook(
        self, alert: CardAlert, customer: CustomerSettings | None, gone: str | None, now: datetime
    ) -> Outcome:
        if customer is None or customer.webhook is None:
            return Outcome(Result.FAILED, "dropped: customer has no webhook any more")
        url = customer.webhook.url
        if gone == url:
            return Outcome(Result.GONE, "endpoint disabled after 410")
        return await self.webhooks.send(url, customer.webhook.signing_secrets, alert, now)

    async def _sms(
        self,
        claim: Claim,
        alert: CardAlert,
        customer: CustomerSettings | None,
        number: str,
        now: datetime,
    ) -> Outcome | Defer:
        if self.sms is None:
            return Outcome(Result.FAILED, "no SMS provider configured")
        if customer is None or customer.sms is None or number not in customer.sms.numbers:
            return Outcome(Result.FAILED, "dropped: number no longer configured")
        if claim.previous_state is DeliveryState.SENDING and not self.sms.idempotent:
            return Outcome(Result.UNCERTAIN, "an earlier attempt's outcome is unknown")
        if alert.type.value not in self.settings.quiet_bypass_types:
            until = policy.quiet_until(customer.quiet_hours, now)
            if until is not None:
                return Defer(until, "quiet hours")
        hour = int(now.timestamp() // 3600)
        if await self.ledger.count_sms(number, hour) > self.settings.sms_rate_per_hour:
            return Defer(datetime.fromtimestamp((hour + 1) * 3600, UTC), "rate limit")
        text = render(alert, customer.language)
        # Template parameters (Aliyun): one template for every alert, so `iccid` names what
        # the alert is about, the card or, for a pool alert, the pool (`alert.key`).
        params = {"iccid": alert.key, "type": alert.type.value}
        return await self.sms.send(number, text, sms_key(alert.alert_id, number), params)
