"""Which failures are retried in place, and which propagate."""

from __future__ import annotations

import pytest
from aiokafka.errors import KafkaConnectionError
from redis.exceptions import ClusterDownError, ConnectionError, ResponseError, TryAgainError

from simwatch_runtime.errors import is_transient


def test_dependency_failures_are_transient_and_bugs_are_not() -> None:
    assert is_transient(ConnectionError("reset"))
    assert is_transient(KafkaConnectionError())
    assert is_transient(ConnectionResetError())
    assert is_transient(ClusterDownError("The cluster is down"))  # a master restarting
    assert is_transient(TryAgainError("slot migrating"))
    # uvloop, writing to a socket the peer reset (MagicStack/uvloop#506)
    closed = "unable to perform operation on <TCPTransport closed=True>; the handler is closed"
    assert is_transient(RuntimeError(closed))
    assert not is_transient(RuntimeError("dictionary changed size during iteration"))
    assert not is_transient(ResponseError("WRONGTYPE"))
    assert not is_transient(ValueError("bad"))


async def test_redis_pys_handshake_race_is_transient_and_other_attribute_errors_are_not() -> None:
    from redis.asyncio.connection import Connection

    conn = Connection()
    conn._writer = None  # what a node closing the socket mid-handshake leaves behind
    with pytest.raises(AttributeError) as inside_redis:
        await conn._send_packed_command([b"PING"])
    assert is_transient(inside_redis.value)
    with pytest.raises(AttributeError) as elsewhere:
        None.writelines  # type: ignore[attr-defined]  # noqa: B018
    assert not is_transient(elsewhere.value), "raised in our code: a bug, not the race"
