"""Attempts deliveries that are due, a bounded number at a time: claim → send → finish.

Deliveries are claimed from the ledger under a lease, so a slow endpoint never blocks a Kafka
partition, two replicas never attempt the same delivery at once, and a replica that dies
mid-attempt leaves the delivery to be claimed again when its lease ends. Such an orphaned
attempt (state still `sending`) may or may not have reached the provider: webhooks and the
idempotent SMS gateway are sent again with the same id/key; other SMS providers are marked
uncertain and never sent twice.

Claims and outcomes go to the ledger in batches: one claim call claims and loads up to BATCH
deliveries (at most NOTIFIER_PER_HOST_CONCURRENCY in flight per endpoint, so one slow
endpoint holds only its own slots), one read fetches their customers' settings, and the
outcomes of attempts that end while a finish call is in flight go together in the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from simwatch_runtime.errors import component_of, is_transient

from ..domain.delivery import Channel, Delivery, endpoint_of
from ..domain.outcome import Outcome, Result
from ..metrics import Metrics
from ..ports import DeliveryLedger, Publisher, SmsProvider, WebhookChannel
from ..settings import Settings
from .batching import Coalescer
from .recording import Attempt, Recorder
from .sending import Sender

log = logging.getLogger(__name__)

BATCH = 200
"""At most this many deliveries per claim call, and attempts per finish call."""


class Dispatcher:
    def __init__(
        self,
        ledger: DeliveryLedger,
        webhooks: WebhookChannel,
        sms: SmsProvider | None,
        settings: Settings,
        metrics: Metrics,
        publish: Publisher,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.ledger = ledger
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.rng = random.Random()
        self.sender = Sender(ledger, webhooks, sms, settings)
        idempotent = sms is not None and sms.idempotent
        self.finishes = Coalescer(ledger.finish_many, max_items=BATCH)
        self.recorder = Recorder(
            ledger, settings, metrics, publish, idempotent, self.rng, self.finishes.submit
        )
        self.wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._endpoints: Counter[str] = Counter()
        """Attempts in flight per endpoint (`endpoint_of`): what NOTIFIER_PER_HOST_CONCURRENCY
        bounds."""
        self._wake_at = max(1, settings.concurrency // 8)
        self._stopping = False

    async def run(self) -> None:
        """Claim and attempt until stopped; woken early when new deliveries are scheduled or
        enough attempts have finished to claim a batch."""
        while not self._stopping:
            self.wake.clear()
            try:
                await self.claim_some()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                # Redis away: claims wait (leases keep other replicas off them meanwhile).
                self.metrics.transient_errors.labels(component_of(exc)).inc()
                log.warning("claiming deliveries: %s: %s", type(exc).__name__, exc)
            with contextlib.suppress(TimeoutError):  # no wake-up: look again anyway
                await asyncio.wait_for(self.wake.wait(), self.settings.dispatch_interval_s)

    async def claim_some(self) -> None:
        """Claim as many due deliveries as there are free slots (at most BATCH, and at most
        the per-endpoint limit per endpoint), loaded with their customers' settings in two
        more calls, and start attempting them."""
        free = min(self.settings.concurrency - len(self._inflight), BATCH)
        if free > 0:
            lease_end = time.monotonic() + self.settings.lease_s  # claimed no earlier than now
            claimed = await self.ledger.claim_due(
                self.clock(),
                self.settings.lease_s,
                free,
                cap=self.settings.per_host_concurrency,
                in_flight=+self._endpoints,
            )
            loaded = [(c.claim, c.delivery) for c in claimed if c.delivery is not None]
            ids = {d.customer_id for _, d in loaded}
            customers = await self.ledger.customers(ids)
            webhooks = {d.customer_id for _, d in loaded if d.channel is Channel.WEBHOOK}
            gone = await self.ledger.webhooks_gone(webhooks)
            for claim, delivery in loaded:
                cid = delivery.customer_id
                attempt = Attempt(claim, delivery, customers.get(cid), gone.get(cid), lease_end)
                self._start(attempt)
            self.metrics.in_flight.set(len(self._inflight))
        self.metrics.retry_queue.set(await self.ledger.depth())

    def _start(self, attempt: Attempt) -> None:
        endpoint = endpoint_of(attempt.delivery.customer_id, attempt.delivery.channel)
        self._endpoints[endpoint] += 1
        task = asyncio.create_task(self._attempt(attempt))
        self._inflight.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._inflight.discard(task)
            self._endpoints[endpoint] -= 1
            if self.settings.concurrency - len(self._inflight) >= self._wake_at:
                self.wake.set()  # enough free slots for a batch: claim now, not at the interval

        task.add_done_callback(done)

    async def settle(self, timeout_s: float | None = None) -> None:
        """Wait for the attempts in flight to finish."""
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=timeout_s)

    async def stop(self, grace_s: float = 20.0) -> None:
        """Stop claiming; let attempts in flight finish (their leases cover the rest)."""
        self._stopping = True
        self.wake.set()
        await self.settle(grace_s)

    async def _attempt(self, attempt: Attempt) -> None:
        claim, delivery = attempt.claim, attempt.delivery
        try:
            try:
                outcome = await self.sender.send(
                    claim, delivery, attempt.customer, self.clock(), attempt.gone
                )
            except Exception as exc:
                if is_transient(exc):
                    raise  # Redis away: not this delivery's fault, the lease brings it back
                attempt = Attempt(claim, delivery, None)
                outcome = self._unexpected(delivery, exc)
            await self.recorder.record(attempt, outcome, self.clock())
        except Exception as exc:  # one delivery's failure must not stop the others:
            # the lease ends and the delivery is claimed again.
            if is_transient(exc):
                self.metrics.transient_errors.labels(component_of(exc)).inc()
                log.warning("delivery %s: %s: %s", claim.delivery_id, type(exc).__name__, exc)
            else:
                log.exception("delivery %s failed unexpectedly", claim.delivery_id)

    def _unexpected(self, delivery: Delivery, exc: Exception) -> Outcome:
        """An attempt that raised is a failed attempt like any other: retried on the schedule,
        then dead-lettered. Logged by type only (a message may carry a secret or a number)."""
        channel = delivery.channel.value
        self.metrics.delivery_errors.labels(channel).inc()
        log.error("%s delivery attempt raised %s", channel, type(exc).__name__)
        return Outcome(Result.RETRY, f"unexpected error: {type(exc).__name__}")
