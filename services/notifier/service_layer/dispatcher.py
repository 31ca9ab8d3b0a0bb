"""Attempts deliveries that are due, a bounded number at a time, and records each outcome.

Deliveries are claimed from Redis under a lease, so a slow endpoint never blocks a Kafka
partition, two replicas never attempt the same delivery at once, and a replica that dies
mid-attempt leaves the delivery to be claimed again when its lease ends. Such an orphaned
attempt (state still `sending`) may or may not have reached the provider: webhooks and the
idempotent SMS gateway are sent again with the same id/key; other SMS providers are marked
uncertain and never sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from simwatch_contracts import CardAlert, CustomerSettings, DeadLetter
from simwatch_runtime.errors import component_of, is_transient

from ..adapters.redis_ledger import Claim, Ledger
from ..channels.sms import SmsProvider, sms_key
from ..channels.webhook import Outcome, Result, WebhookSender
from ..domain import policy
from ..domain.delivery import Channel
from ..domain.messages import mask_iccid, render
from ..metrics import Metrics
from ..settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Defer:
    until: datetime
    why: str


class Dispatcher:
    def __init__(
        self,
        ledger: Ledger,
        webhooks: WebhookSender,
        sms: SmsProvider | None,
        settings: Settings,
        metrics: Metrics,
        dead_letter: Callable[[bytes, bytes], Any],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.ledger = ledger
        self.webhooks = webhooks
        self.sms = sms
        self.settings = settings
        self.metrics = metrics
        self.dead_letter = dead_letter
        self.clock = clock
        self.rng = random.Random()
        self.wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = False

    async def run(self) -> None:
        """Claim and attempt until stopped; woken early when new deliveries are scheduled."""
        while not self._stopping:
            try:
                await self._claim_some()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                # Redis away: claims wait (leases keep other replicas off them meanwhile).
                self.metrics.transient_errors.labels(component_of(exc)).inc()
                log.warning("claiming deliveries: %s: %s", type(exc).__name__, exc)
            self.wake.clear()
            with contextlib.suppress(TimeoutError):  # no wake-up: look again anyway
                await asyncio.wait_for(self.wake.wait(), self.settings.dispatch_interval_s)

    async def _claim_some(self) -> None:
        free = self.settings.concurrency - len(self._inflight)
        if free > 0:
            for claim in await self.ledger.claim(self.clock(), self.settings.lease_s, free):
                task = asyncio.create_task(self._attempt(claim))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
        self.metrics.retry_queue.set(await self.ledger.depth())

    async def stop(self, grace_s: float = 20.0) -> None:
        """Stop claiming; let attempts in flight finish (their leases cover the rest)."""
        self._stopping = True
        self.wake.set()
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=grace_s)

    async def _attempt(self, claim: Claim) -> None:
        try:
            record = await self.ledger.load(claim.delivery_id)
            if not record:
                return
            try:
                outcome = await self._deliver(claim, record)
            except Exception as exc:
                if is_transient(exc):
                    raise  # Redis away: not this delivery's fault, the lease brings it back
                outcome = self._unexpected(record, exc)
            await self._record(claim, record, outcome)
        except Exception as exc:  # one delivery's failure must not stop the others:
            # the lease ends and the delivery is claimed again.
            if is_transient(exc):
                self.metrics.transient_errors.labels(component_of(exc)).inc()
                log.warning("delivery %s: %s: %s", claim.delivery_id, type(exc).__name__, exc)
            else:
                log.exception("delivery %s failed unexpectedly", claim.delivery_id)

    def _unexpected(self, record: dict[str, str], exc: Exception) -> Outcome:
        """An attempt that raised is a failed attempt like any other: retried on the schedule,
        then dead-lettered. Logged by type only (a message may carry a secret or a number)."""
        channel = record.get("channel", "unknown")
        self.metrics.delivery_errors.labels(channel).inc()
        log.error("%s delivery attempt raised %s", channel, type(exc).__name__)
        return Outcome(Result.RETRY, f"unexpected error: {type(exc).__name__}")

    async def _deliver(self, claim: Claim, record: dict[str, str]) -> Outcome | _Defer:
        alert = CardAlert.model_validate_json(record["alert"])
        customer = await self.ledger.customer(record["customer"])
        now = self.clock()
        if Channel(record["channel"]) is Channel.WEBHOOK:
            return await self._webhook(alert, customer, now)
        return await self._sms(claim, alert, customer, record["target"], now)

    async def _webhook(
        self, alert: CardAlert, customer: CustomerSettings | None, now: datetime
    ) -> Outcome:
        if customer is None or customer.webhook is None:
            return Outcome(Result.FAILED, "dropped: customer has no webhook any more")
        url = customer.webhook.url
        if await self.ledger.webhook_gone(customer.customer_id) == url:
            return Outcome(Result.GONE, "endpoint disabled after 410")
        return await self.webhooks.send(url, customer.webhook.signing_secrets, alert, now)

    async def _sms(
        self,
        claim: Claim,
        alert: CardAlert,
        customer: CustomerSettings | None,
        number: str,
        now: datetime,
    ) -> Outcome | _Defer:
        if self.sms is None:
            return Outcome(Result.FAILED, "no SMS provider configured")
        if customer is None or customer.sms is None or number not in customer.sms.numbers:
            return Outcome(Result.FAILED, "dropped: number no longer configured")
        if claim.previous_state == "sending" and not self.sms.idempotent:
            return Outcome(Result.UNCERTAIN, "an earlier attempt's outcome is unknown")
        if alert.type.value not in self.settings.quiet_bypass_types:
            until = policy.quiet_until(customer.quiet_hours, now)
            if until is not None:
                return _Defer(until, "quiet hours")
        hour = int(now.timestamp() // 3600)
        if await self.ledger.count_sms(number, hour) > self.settings.sms_rate_per_hour:
            return _Defer(datetime.fromtimestamp((hour + 1) * 3600, UTC), "rate limit")
        text = render(alert, customer.language)
        params = {"iccid": alert.iccid, "type": alert.type.value}
        return await self.sms.send(number, text, sms_key(alert.alert_id, number), params)

    async def _record(self, claim: Claim, record: dict[str, str], got: Outcome | _Defer) -> None:
        channel = record["channel"]
        now = self.clock()
        if isinstance(got, _Defer):
            await self.ledger.finish(claim, got.until, {"state": "pending", "note": got.why})
            self.metrics.deliveries.labels(channel, "deferred").inc()
            return
        result = got.result
        if result is Result.UNCERTAIN and self.sms is not None and self.sms.idempotent:
            result = Result.RETRY  # the gateway de-duplicates by key: sending again is safe
        attempts = int(record.get("attempts", "0")) + 1
        fields: dict[str, Any] = {"attempts": attempts, "last": got.detail[:300]}
        if result is Result.RETRY:
            delay = policy.next_delay(
                attempts,
                got.retry_after,
                now,
                self.settings.retry_schedule_s,
                self.rng,
                floor_s=self.settings.retry_after_min_s,
                cap_s=self.settings.retry_after_max_s,
            )
            if delay is not None:
                fields["state"] = "retry"
                await self.ledger.finish(claim, now + timedelta(seconds=delay), fields)
                self.metrics.deliveries.labels(channel, "retry").inc()
                return
            result = Result.FAILED
            got = Outcome(Result.FAILED, f"gave up after {attempts} attempts: {got.detail}")
        await self._final(claim, record, result, got, fields, now)

    async def _final(
        self,
        claim: Claim,
        record: dict[str, str],
        result: Result,
        got: Outcome,
        fields: dict[str, Any],
        now: datetime,
    ) -> None:
        channel = record["channel"]
        state = {
            Result.DELIVERED: "delivered",
            Result.GONE: "disabled",
            Result.REFUSED: "refused",
            Result.UNCERTAIN: "uncertain",
            Result.FAILED: "gave_up",
        }[result]
        if result is Result.GONE and record["channel"] == Channel.WEBHOOK.value:
            customer = await self.ledger.customer(record["customer"])
            if customer is not None and customer.webhook is not None:
                await self.ledger.mark_webhook_gone(customer.customer_id, customer.webhook.url)
        fields["state"] = state
        if not await self.ledger.finish(claim, None, fields):
            return  # a newer attempt owns the delivery now
        outcome = "gave_up" if state == "gave_up" else state
        self.metrics.deliveries.labels(channel, outcome).inc()
        alert = CardAlert.model_validate_json(record["alert"])
        if result is Result.DELIVERED:
            self.metrics.latency.labels(channel).observe(
                max(0.0, (now - alert.occurred_at).total_seconds())
            )
            return
        log.warning(
            "delivery of %s %s to %s: %s (%s)",
            alert.type.value,
            mask_iccid(alert.iccid),
            channel,
            state,
            got.detail,
        )
        if state in {"gave_up", "refused"}:
            letter = DeadLetter(
                original=record["alert"],
                encoding="utf-8",
                key=alert.iccid,
                source_topic=self.settings.topic_alerts,
                partition=int(record.get("partition", "0")),
                offset=int(record.get("offset", "0")),
                error=f"{channel} delivery {state}: {got.detail}",
                failed_at=now,
                service="notifier",
            )
            await self.dead_letter(alert.iccid.encode(), letter.model_dump_json().encode())
            self.metrics.dead_letters.labels("delivery", state).inc()
