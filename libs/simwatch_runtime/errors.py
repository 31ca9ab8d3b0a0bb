"""Failure classes of usage_monitor.

    Exception
    ├── ConfigError            bad settings or unreachable dependency at start-up: exit 2
    └── (transient)            redis.ConnectionError, redis.TimeoutError, BusyLoadingError,
                               ClusterDownError, TryAgainError, SlotNotCoveredError,
                               aiokafka KafkaError, OSError, uvloop's closed-transport
                               RuntimeError, redis-py's handshake AttributeError,
                               durability.NotDurableError: retried with backoff in place
Poison input is not an exception here: it is a dead letter (see ``dead_letters.py``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaError
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    ConnectionError,
    SlotNotCoveredError,
    TimeoutError,
    TryAgainError,
)

from .durability import NotDurableError

T = TypeVar("T")
log = logging.getLogger(__name__)

TRANSIENT: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    BusyLoadingError,
    # Redis Cluster: a master is down or failing over, or its slots are moving.
    ClusterDownError,
    TryAgainError,
    SlotNotCoveredError,
    KafkaError,
    OSError,
    # Redis could not confirm a write durable: apply the input again, commit nothing.
    NotDurableError,
)


def is_transient(exc: BaseException) -> bool:
    """A dependency away or slow, worth retrying in place (see the tree above)."""
    if isinstance(exc, TRANSIENT):
        return True
    # uvloop raises this, not ConnectionResetError, when a client writes to a socket the peer
    # has reset (MagicStack/uvloop#506); redis-py drops the connection and the retry reconnects.
    if is_closed_transport(exc):
        return True
    # redis-py 8.1, reconnecting to a Redis Cluster node that is restarting: the node closes
    # the socket during the connection handshake and the next handshake command finds no
    # writer (`'NoneType' object has no attribute 'writelines'`). redis-py has disconnected
    # by then, so a retry opens a fresh connection.
    return isinstance(exc, AttributeError) and _raised_in(exc, _REDIS_CONNECTION)


def is_closed_transport(exc: BaseException) -> bool:
    """uvloop's error for a write to a transport the peer has reset (MagicStack/uvloop#506):
    a broken connection, though not an `OSError`."""
    return isinstance(exc, RuntimeError) and "the handler is closed" in str(exc)


_REDIS_CONNECTION = os.path.join("redis", "asyncio", "connection.py")


def _raised_in(exc: BaseException, module_path: str) -> bool:
    """Whether the innermost frame of `exc`'s traceback is in `module_path`."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename.endswith(module_path)


class ConfigError(Exception):
    """A setting is invalid or a dependency it names cannot be reached."""


def component_of(exc: BaseException) -> str:
    return "kafka" if isinstance(exc, KafkaError) else "redis"


MAX_BACKOFF_S = 10.0
"""`retrying`'s longest wait between two attempts, unless its caller sets its own."""


async def retrying(
    op: Callable[[], Awaitable[T]],
    *,
    what: str,
    on_error: Callable[[BaseException], None],
    max_backoff_s: float = MAX_BACKOFF_S,
    until: float = math.inf,
) -> T:
    """Run `op` until it succeeds, backing off (jittered, capped) on transient errors.

    Used where giving up would lose data or stall a partition for good: the operation must
    be idempotent. Anything not transient propagates, and so does a transient error whose
    next try would start after `until` (monotonic), for a caller whose right to retry ends.
    """
    delay = 0.05
    while True:
        try:
            return await op()
        except Exception as exc:
            if not is_transient(exc) or time.monotonic() + delay >= until:
                raise
            on_error(exc)  # dependency down or slow: wait and do it again
            log.warning(
                "%s failed (%s: %s); retrying in %.2fs", what, type(exc).__name__, exc, delay
            )
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, max_backoff_s)
