"""Which failures are retried in place, and which propagate."""

from __future__ import annotations

from aiokafka.errors import KafkaConnectionError
from redis.exceptions import ClusterDownError, ConnectionError, ResponseError, TryAgainError

from usage_monitor.errors import is_transient


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
