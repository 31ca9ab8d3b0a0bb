"""Whether aiokafka's background tasks still run.

An `AIOKafkaConsumer` fetches, an `AIOKafkaProducer` sends, and the client of each keeps
its metadata, from background tasks that must run for ever. Each can die of an error it
does not expect (uvloop's closed-transport `RuntimeError` when a broker link is reset
mid-write, MagicStack/uvloop#506, seen in CI; `aiokafka_patch` now turns that one into a
broken connection). aiokafka logs it, but neither client exposes it: the consumer's
`getmany` then returns nothing for ever, the producer fails every later message with
"Unexpected error during batch delivery", and a dead metadata synchroniser leaves every
metadata wait hanging. Both are read from aiokafka's private
attributes; a layout that does not match reads as running, so a change in aiokafka disables
these checks instead of firing them.
"""

from __future__ import annotations

import asyncio
from typing import Any


def fetcher_failure(consumer: Any) -> BaseException | None:
    """Why a consumer's fetch task or its client's metadata synchroniser failed, if one did
    (None: running, not started, or ended by the consumer's own stop, which cancels them)."""
    task = getattr(getattr(consumer, "_fetcher", None), "_fetch_task", None)
    if isinstance(task, asyncio.Future) and task.done() and not task.cancelled():
        failure = task.exception()
        if failure is not None:
            return failure
    return synchroniser_failure(getattr(consumer, "_client", None))


def sender_failure(producer: Any) -> BaseException | None:
    """Why a producer's sender task ended, or its client's metadata synchroniser failed, if
    one did (None: running, or not started). Any end of the sender is fatal to the
    producer: the sender swallows its own cancellation and returns, so a sender that
    returned or was cancelled delivers nothing more, like one that failed."""
    task = getattr(getattr(producer, "_sender", None), "sender_task", None)
    if isinstance(task, asyncio.Future) and task.done():
        if task.cancelled():
            return asyncio.CancelledError("the sender was cancelled")
        return task.exception() or RuntimeError("the sender returned")
    return synchroniser_failure(getattr(producer, "client", None))


def synchroniser_failure(client: Any) -> BaseException | None:
    """Why a client's metadata synchroniser failed, if it did: every later metadata wait of
    that client (a consumer's coordinator lookup, a producer's first send to a topic) then
    waits for ever. None while it runs, before it starts, and after the client's close."""
    task = getattr(client, "_sync_task", None)
    if not isinstance(task, asyncio.Future) or not task.done() or task.cancelled():
        return None
    return task.exception()
