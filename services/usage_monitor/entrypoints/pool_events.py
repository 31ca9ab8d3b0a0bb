"""Handling of `pool.events`: pool definitions (流量池). Parse at the edge; dead-letter the
malformed (a negative quota, one beyond an exbibyte, an unknown timezone…); store the rest
and decide the pool's levels anew; confirm the batch durable before faust may ack it."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError

from simwatch_contracts import describe_validation_error, parse_pool_event
from simwatch_runtime.dead_letters import RawMessage

from ..bootstrap import Components
from .card_events import apply_confirmed, one_by_one, retry_op
from .pipeline import oversized

POOL_BATCH = 200
POOL_BATCH_WITHIN_S = 0.05


async def handle_pool_events(c: Components, messages: Sequence[RawMessage]) -> None:
    await apply_confirmed(c, messages, one_by_one(handle_pool_event), "pool events batch")


async def handle_pool_event(c: Components, msg: RawMessage) -> int | None:
    """Define one pool (it publishes its own decisions: a pool's are few)."""
    limit = c.settings.max_message_bytes
    if msg.value is not None and len(msg.value) > limit:
        await _dead_letter(c, msg, oversized(len(msg.value), limit), "too_large")
        return None
    try:
        event = parse_pool_event(msg.value or b"")
    except ValidationError as exc:
        await _dead_letter(c, msg, describe_validation_error(exc), "malformed")
        return None
    key = (msg.key or b"").decode("utf-8", "replace")
    if key != event.pool_id:
        error = f"key {key!r} is not the event's pool_id (pool.events is keyed by pool id)"
        await _dead_letter(c, msg, error, "wrong_key")
        return None
    await retry_op(c, lambda: c.pools.define(event), "pool.upserted")
    c.metrics.card_events.labels(event.type, "applied").inc()
    return None


async def _dead_letter(c: Components, msg: RawMessage, error: str, reason: str) -> None:
    c.result_dead_letters.add(msg, error, reason)
    await retry_op(c, c.result_dead_letters.flush, "dead-letter publish")
    c.metrics.card_events.labels("pool.upserted", "dead_lettered").inc()
