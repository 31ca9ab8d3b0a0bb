"""Handling of `card.events` messages: parse at the edge, dead-letter the malformed, apply
the rest exactly once (retrying transient failures in place: faust acks a message whose
handler raised, so raising would lose it), then confirm the batch durable in Redis before
faust may ack it (issue #16: a failover or a host crash must not lose an acked event)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

from pydantic import ValidationError

from simwatch_contracts import CardEvent, describe_validation_error, parse_card_event
from simwatch_runtime.dead_letters import RawMessage
from simwatch_runtime.errors import component_of, retrying
from simwatch_runtime.redact import mask_iccid

from ..bootstrap import Components
from ..service_layer.service import EventOutcome
from .pipeline import oversized

log = logging.getLogger(__name__)
T = TypeVar("T")
EVENT_BATCH = 200
EVENT_BATCH_WITHIN_S = 0.05


async def handle_card_events(c: Components, messages: Sequence[RawMessage]) -> None:
    await apply_confirmed(c, messages, apply_card_events, "card events batch")


BatchHandler = Callable[[Components, Sequence[RawMessage]], Awaitable[Iterable[int]]]
"""Applies a batch of messages; returns the shards whose outboxes it added to."""


async def apply_confirmed(
    c: Components, messages: Sequence[RawMessage], handle: BatchHandler, what: str
) -> None:
    """Apply a batch of messages, publish the decisions they made (one outbox drain per
    shard for the whole batch), then confirm the batch durable; if Redis cannot confirm it
    (a failover, a restart), apply it again under the new primaries (each input applies
    once: a repeat is a duplicate by its id) and confirm again. Shared by every faust agent
    (`card.events`, `card.command_results`, `pool.events`)."""
    outboxes: set[int] = set()  # across attempts: a repeat adds nothing to drain

    async def once() -> None:
        epoch = await c.barrier.epoch()
        outboxes.update(await handle(c, messages))
        for shard in sorted(outboxes):  # in the outbox: a drain that fails is the sweeper's
            await c.service.drain_soon(shard)
        outboxes.clear()
        await c.barrier.confirm(epoch)

    await retry_op(c, once, what)
    for topic in {msg.topic for msg in messages}:
        if (progress := c.agents.get(topic)) is not None:
            progress.note_applied()


def one_by_one(handle: Callable[[Components, RawMessage], Awaitable[int | None]]) -> BatchHandler:
    """A batch handler applying each message in turn with `handle` (which returns the shard
    whose outbox it added to, if any)."""

    async def each(c: Components, messages: Sequence[RawMessage]) -> set[int]:
        shards: set[int] = set()
        for msg in messages:
            if (shard := await handle(c, msg)) is not None:
                shards.add(shard)
        return shards

    return each


async def apply_card_events(c: Components, messages: Sequence[RawMessage]) -> set[int]:
    """Parse each message (the malformed are dead-lettered), then apply the rest in order
    with one load and one commit round trip per run of distinct cards
    (`CardService.apply_events`); returns the shards whose outboxes they added to. A
    transient failure applies again those not settled yet (each is counted once)."""
    events: list[CardEvent] = []
    for msg in messages:
        if (event := await _parse(c, msg)) is not None:
            events.append(event)
    if not events:
        return set()
    settled: list[EventOutcome | None] = [None] * len(events)  # kept across attempts
    outcomes = await retry_op(c, lambda: c.service.apply_events(events, settled), "card events")
    shards: set[int] = set()
    for event, outcome in zip(events, outcomes, strict=True):
        if outcome.duplicate:
            result = "duplicate"
        elif outcome.decision is not None and outcome.decision.rejected:
            result = "rejected"
            why = outcome.decision.rejected
            log.info("card %s %s: %s", mask_iccid(event.iccid), event.type, why)
        else:
            result = "applied"
        c.metrics.card_events.labels(event.type, result).inc()
        if outcome.outbox is not None:
            shards.add(outcome.outbox)
    return shards


async def _parse(c: Components, msg: RawMessage) -> CardEvent | None:
    """The card event in `msg`, or None when it was dead-lettered (too large, malformed)."""
    limit = c.settings.max_message_bytes
    if msg.value is not None and len(msg.value) > limit:
        await _dead_letter(c, msg, oversized(len(msg.value), limit), "too_large")
        return None
    try:
        return parse_card_event(msg.value or b"")
    except ValidationError as exc:
        await _dead_letter(c, msg, describe_validation_error(exc), "malformed")
        return None


async def _dead_letter(c: Components, msg: RawMessage, error: str, reason: str) -> None:
    c.event_dead_letters.add(msg, error, reason)
    await retry_op(c, c.event_dead_letters.flush, "dead-letter publish")
    c.metrics.card_events.labels("unknown", "dead_lettered").inc()


async def retry_op(c: Components, op: Callable[[], Awaitable[T]], what: str) -> T:
    """Retry a transient failure in place (faust acks a message whose handler raised); each
    failure is counted, and tells the watchdog that the agents wait on a dependency."""

    def on_error(exc: BaseException) -> None:
        c.metrics.transient_errors.labels(component_of(exc)).inc()
        for progress in c.agents.values():  # Redis or Kafka: every agent waits on it
            progress.note_failure()

    return await retrying(
        op, what=what, on_error=on_error, max_backoff_s=c.settings.retry_backoff_max_s
    )
