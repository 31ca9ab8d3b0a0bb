"""Whether aiokafka's background tasks still run.

An `AIOKafkaConsumer` fetches and an `AIOKafkaProducer` sends from background tasks that
must run for ever. Each can die of an error it does not expect (uvloop's closed-transport
`RuntimeError` when a broker link is reset mid-write, MagicStack/uvloop#506; seen in CI
under the Kafka-link fault). aiokafka logs it, but neither client exposes it: the
consumer's `getmany` then returns nothing for ever, and the producer fails every later
message with "Unexpected error during batch delivery". Both are read from aiokafka's private
attributes; a layout that does not match reads as running, so a change in aiokafka disables
these checks instead of firing them.
"""

from __future__ import annotations

import asyncio
from typing import Any


def fetcher_failure(consumer: Any) -> BaseException | None:
    """Why a consumer's fetch task failed, if it did (None: running, not started, or ended
    by the consumer's own stop, which cancels it)."""
    task = getattr(getattr(consumer, "_fetcher", None), "_fetch_task", None)
    if not isinstance(task, asyncio.Future) or not task.done() or task.cancelled():
        return None
    return task.exception()


def sender_failure(producer: Any) -> BaseException | None:
    """Why a producer's sender task ended, if it did (None: running, or not started). Any
    end is fatal to the producer: the sender swallows its own cancellation and returns, so
    a sender that returned or was cancelled delivers nothing more, like one that failed."""
    task = getattr(getattr(producer, "_sender", None), "sender_task", None)
    if not isinstance(task, asyncio.Future) or not task.done():
        return None
    if task.cancelled():
        return asyncio.CancelledError("the sender was cancelled")
    return task.exception() or RuntimeError("the sender returned")
