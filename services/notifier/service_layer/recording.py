"""What an attempt's outcome makes of its delivery: deferred, retried on the schedule, or
finished (delivered, disabled, refused, uncertain, given up), with its metrics, its log line
and, for the given up and refused, a dead letter."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from simwatch_contracts import CustomerSettings, DeadLetter
from simwatch_runtime.errors import component_of, retrying

from ..domain import policy
from ..domain.delivery import (
    DEAD_LETTERED,
    FINAL_STATE,
    Channel,
    Claim,
    Delivery,
    DeliveryState,
    Finish,
    Progress,
)
from ..domain.messages import subject
from ..domain.outcome import Outcome, Result
from ..metrics import Metrics
from ..ports import DeliveryLedger, Publisher
from ..settings import Settings
from .sending import Defer

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Attempt:
    """One claimed delivery, loaded once, with its customer's settings at the time."""

    claim: Claim
    delivery: Delivery
    customer: CustomerSettings | None
    gone: str | None = None
    """The customer's webhook URL that answered 410, if any (read with the settings)."""
    lease_end: float = math.inf
    """When the claim's lease ends at the latest (monotonic): until then, writing the outcome
    is tried again while Redis is away."""


class Recorder:
    def __init__(
        self,
        ledger: DeliveryLedger,
        settings: Settings,
        metrics: Metrics,
        publish: Publisher,
        sms_idempotent: bool,
        rng: random.Random,
        finish: Callable[[Finish], Awaitable[bool]] | None = None,
    ) -> None:
        self.ledger = ledger
        self.finish = finish or (lambda f: ledger.finish(f.claim, f.next_at, f.progress))
        """Records one attempt (the dispatcher batches these into `finish_many` calls)."""
        self.settings = settings
        self.metrics = metrics
        self.publish = publish
        self.sms_idempotent = sms_idempotent
        self.rng = rng

    async def record(self, attempt: Attempt, got: Outcome | Defer, now: datetime) -> None:
        channel = attempt.delivery.channel.value
        if isinstance(got, Defer):
            progress = Progress(DeliveryState.PENDING, note=got.why)
            await self._ledger_write(
                attempt, self.finish, Finish(attempt.claim, got.until, progress)
            )
            self.metrics.deliveries.labels(channel, "deferred").inc()
            return
        result = got.result
        if result is Result.UNCERTAIN and self.sms_idempotent:
            result = Result.RETRY  # the gateway de-duplicates by key: sending again is safe
        attempts = attempt.delivery.attempts + 1
        last = got.detail[:300]  # this attempt's own words, even when it gives up
        if result is Result.RETRY:
            delay = self._retry_delay(attempts, got, now)
            if delay is not None:
                progress = Progress(DeliveryState.RETRY, attempts, last)
                retry = Finish(attempt.claim, now + timedelta(seconds=delay), progress)
                await self._ledger_write(attempt, self.finish, retry)
                self.metrics.deliveries.labels(channel, "retry").inc()
                return
            result = Result.FAILED
            got = Outcome(Result.FAILED, f"gave up after {attempts} attempts: {got.detail}")
        await self._final(attempt, Progress(FINAL_STATE[result], attempts, last), got, now)

    async def _ledger_write(
        self, attempt: Attempt, write: Callable[..., Awaitable[T]], *args: object
    ) -> T:
        """`write(*args)`, again and again while Redis is away and the lease lasts: an outcome
        not written when the lease ends makes the delivery look like a dead attempt, and a
        webhook the endpoint has answered would be sent a second time for a Redis blip. Only
        the ledger's writes are repeated (they are idempotent under the claim's token), never
        the metrics or the dead letter that follow them. After the lease, the next claim owns
        the delivery and the error is raised."""

        def on_error(exc: BaseException) -> None:
            self.metrics.transient_errors.labels(component_of(exc)).inc()

        return await retrying(
            lambda: write(*args),
            what=f"recording delivery {attempt.claim.delivery_id}",
            on_error=on_error,
            max_backoff_s=2.0,
            until=attempt.lease_end,
        )

    def _retry_delay(self, attempts: int, got: Outcome, now: datetime) -> float | None:
        return policy.next_delay(
            attempts,
            got.retry_after,
            now,
            self.settings.retry_schedule_s,
            self.rng,
            floor_s=self.settings.retry_after_min_s,
            cap_s=self.settings.retry_after_max_s,
        )

    async def _final(
        self,
        attempt: Attempt,
        progress: Progress,
        got: Outcome,
        now: datetime,
    ) -> None:
        delivery, customer, state = attempt.delivery, attempt.customer, progress.state
        gone = state is DeliveryState.DISABLED and delivery.channel is Channel.WEBHOOK
        if gone and customer is not None and customer.webhook is not None:
            mark = self.ledger.mark_webhook_gone
            await self._ledger_write(attempt, mark, customer.customer_id, customer.webhook.url)
        if not await self._ledger_write(
            attempt, self.finish, Finish(attempt.claim, None, progress)
        ):
            return  # a newer attempt owns the delivery now
        channel = delivery.channel.value
        self.metrics.deliveries.labels(channel, state.value).inc()
        alert = delivery.alert
        if state is DeliveryState.DELIVERED:
            self.metrics.latency.labels(channel).observe(
                max(0.0, (now - alert.occurred_at).total_seconds())
            )
            return
        log.warning(
            "delivery of %s %s to %s: %s (%s)",
            alert.type.value,
            subject(alert),
            channel,
            state.value,
            got.detail,
        )
        if state in DEAD_LETTERED:
            await self._dead_letter(delivery, state, got, now)

    async def _dead_letter(
        self, delivery: Delivery, state: DeliveryState, got: Outcome, now: datetime
    ) -> None:
        alert = delivery.alert
        letter = DeadLetter(
            original=delivery.alert_json,
            encoding="utf-8",
            key=alert.key,  # as read: the ICCID, or the pool id of a pool alert
            source_topic=self.settings.topic_alerts,
            partition=delivery.partition,
            offset=delivery.offset,
            error=f"{delivery.channel.value} delivery {state.value}: {got.detail}",
            failed_at=now,
            service="notifier",
        )
        await self.publish(
            self.settings.topic_delivery_dlq,
            alert.key.encode(),
            letter.model_dump_json().encode(),
        )
        self.metrics.dead_letters.labels("delivery", state.value).inc()
