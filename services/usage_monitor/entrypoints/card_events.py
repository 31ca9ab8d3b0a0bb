"""Handling of `card.events` messages: parse at the edge, dead-letter the malformed, apply
the rest exactly once (retrying transient failures in place: faust acks a message whose
handler raised, so raising would lose it), then confirm the batch durable in Redis before
faust may ack it (issue #16: a failover or a host crash must not lose an acked event)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from pydantic import ValidationError

from simwatch_contracts import describe_validation_error, parse_card_event
from simwatch_runtime.dead_letters import RawMessage
from simwatch_runtime.errors import component_of, retrying
from simwatch_runtime.redact import mask_iccid

from ..bootstrap import Components
from .pipeline import oversized

log = logging.getLogger(__name__)
T = TypeVar("T")
EVENT_BATCH = 200
EVENT_BATCH_WITHIN_S = 0.05


async def handle_card_events(c: Components, messages: Sequence[RawMessage]) -> None:
    await apply_confirmed(c, messages, handle_card_event, "card events batch")


async def apply_confirmed(
    c: Components,
    messages: Sequence[RawMessage],
    handle: Callable[[Components, RawMessage], Awaitable[int | None]],
    what: str,
) -> None:
    """Apply a batch of messages one by one, publish the decisions they made (one outbox
    drain per shard for the whole batch; `handle` returns the shard a message added
    messages to, if any), then confirm the batch durable; if Redis cannot confirm it (a
    failover, a restart), apply it again under the new primaries (each input applies once:
    a repeat is a duplicate by its id) and confirm again. Shared by every faust agent
    (`card.events`, `card.command_results`, `pool.events`)."""
    outboxes: set[int] = set()  # across attempts: a repeat adds nothing to drain

    async def once() -> None:
        epoch = await c.barrier.epoch()
        for msg in messages:
            shard = await handle(c, msg)
            if shard is not None:
                outboxes.add(shard)
        for shard in sorted(outboxes):  # in the outbox: a drain that fails is the sweeper's
            await c.service.drain_soon(shard)
        outboxes.clear()
        await c.barrier.confirm(epoch)

    await retry_op(c, once, what)
    for topic in {msg.topic for msg in messages}:
        if (progress := c.agents.get(topic)) is not None:
            progress.note_applied()


async def handle_card_event(c: Components, msg: RawMessage) -> int | None:
    """Apply one message; returns the shard whose outbox it added to (drained by the batch)."""
    limit = c.settings.max_message_bytes
    if msg.value is not None and len(msg.value) > limit:
        await _dead_letter(c, msg, oversized(len(msg.value), limit), "too_large")
        return None
    try:
        event = parse_card_event(msg.value or b"")
    except ValidationError as exc:
        await _dead_letter(c, msg, describe_validation_error(exc), "malformed")
        return None
    outcome = await retry_op(c, lambda: c.service.apply_event(event, drain=False), f"{event.type}")
    if outcome.duplicate:
        result = "duplicate"
    elif outcome.decision is not None and outcome.decision.rejected:
        result = "rejected"
        log.info("card %s %s: %s", mask_iccid(event.iccid), event.type, outcome.decision.rejected)
    else:
        result = "applied"
    c.metrics.card_events.labels(event.type, result).inc()
    return outcome.outbox


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
