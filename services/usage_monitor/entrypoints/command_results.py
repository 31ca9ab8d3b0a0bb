"""Handling of `card.command_results`: the provisioning adapter's answers to commands. Parse
at the edge; dead-letter the malformed, a key that is not the result's ICCID, and a result
for a command the card never had; apply the rest exactly once (a result delivered twice is
a duplicate by its id), then confirm the batch durable in Redis before faust may ack it
(as `card_events` does)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pydantic import ValidationError

from simwatch_contracts import CommandResult, describe_validation_error, parse_command_result
from simwatch_runtime.dead_letters import RawMessage
from simwatch_runtime.redact import mask_iccid

from ..bootstrap import Components
from ..domain.enforcement import Outcome
from .card_events import apply_confirmed, one_by_one, retry_op
from .pipeline import oversized

log = logging.getLogger(__name__)
RESULT_BATCH = 500
RESULT_BATCH_WITHIN_S = 0.05


async def handle_command_results(c: Components, messages: Sequence[RawMessage]) -> None:
    await apply_confirmed(c, messages, one_by_one(handle_command_result), "command results batch")


async def handle_command_result(c: Components, msg: RawMessage) -> int | None:
    """Apply one result; returns the shard whose outbox it added to (drained by the batch)."""
    result = await _parse(c, msg)
    if result is None:
        return None
    outcome = await retry_op(
        c, lambda: c.service.apply_result(result, drain=False), "command result"
    )
    if outcome.outcome == Outcome.UNKNOWN.value:
        error = f"{outcome.error or 'unknown command'}: {result.command_id}"
        await _dead_letter(c, msg, error, "unknown_command", result.status.value)
        log.info("card %s: result for %s", mask_iccid(result.iccid), error)
    elif outcome.outcome == "duplicate":
        c.metrics.command_results.labels(result.status.value, "duplicate").inc()
    return outcome.outbox


async def _parse(c: Components, msg: RawMessage) -> CommandResult | None:
    limit = c.settings.max_message_bytes
    if msg.value is not None and len(msg.value) > limit:
        await _dead_letter(c, msg, oversized(len(msg.value), limit), "too_large")
        return None
    try:
        result = parse_command_result(msg.value or b"")
    except ValidationError as exc:
        await _dead_letter(c, msg, describe_validation_error(exc), "malformed")
        return None
    key = (msg.key or b"").decode("utf-8", "replace")
    if key != result.iccid:
        # The contract keys every card message by its ICCID: a result under another key is
        # on another card's partition, out of order with that card's commands.
        error = f"key {key!r} is not the result's ICCID"
        await _dead_letter(c, msg, error, "wrong_key", result.status.value)
        return None
    return result


async def _dead_letter(
    c: Components, msg: RawMessage, error: str, reason: str, status: str = "unparsed"
) -> None:
    c.result_dead_letters.add(msg, error, reason)
    await retry_op(c, c.result_dead_letters.flush, "dead-letter publish")
    c.metrics.command_results.labels(status, "dead_lettered").inc()
