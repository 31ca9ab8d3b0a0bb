"""aiokafka under uvloop: a write to a closed transport is a broken connection.

uvloop raises `RuntimeError('unable to perform operation on <TCPTransport closed=True …>;
the handler is closed')`, not an `OSError`, when a client writes to a transport whose peer
has reset it (MagicStack/uvloop#506). aiokafka's connection treats only an `OSError` on
write as a broken connection (closes it, raises `KafkaConnectionError`, which every caller
retries). The `RuntimeError` instead escapes into whichever of aiokafka's background tasks
was writing, and ends it for good, with nothing to restart it:

* the client's metadata synchroniser: every later metadata wait (`force_metadata_update`)
  hangs; a consumer then never finds its group coordinator again (CI, broker restarted
  mid-stream: the usage consumer waited in `ensure_coordinator_known` until its stall
  watchdog ended the worker);
* a producer's sender: every later message fails ("Unexpected error during batch
  delivery"; CI, the Kafka-link fault);
* a consumer's fetch task, or its group coordination task.

`install` makes aiokafka's connection treat that error as it treats an `OSError` on write.
The checks in `aiokafka_tasks` remain for whatever else ends those tasks.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from aiokafka.conn import AIOKafkaConnection, CloseReason
from aiokafka.errors import KafkaConnectionError

from .errors import is_closed_transport

_PATCHED = "_simwatch_closed_transport"


def _broken_on_closed_transport(write: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(write)
    def wrapper(self: AIOKafkaConnection, *args: Any, **kwargs: Any) -> Any:
        try:
            return write(self, *args, **kwargs)
        except RuntimeError as err:
            if not is_closed_transport(err):
                raise
            # What aiokafka does for an OSError on write (conn.py, `send`).
            self.close(reason=CloseReason.CONNECTION_BROKEN)
            raise KafkaConnectionError(
                f"Connection at {self._host}:{self._port} broken: {err}"
            ) from err

    setattr(wrapper, _PATCHED, True)
    return wrapper


def install() -> None:
    """Idempotent; call before any Kafka client is made (`process.new_event_loop` does)."""
    for name in ("send", "_send_sasl_token"):
        method = getattr(AIOKafkaConnection, name)
        # The wrapper catches what the write raises: it must run in the call (aiokafka
        # 0.11-0.14 write first, then return a future to await).
        assert not inspect.iscoroutinefunction(method), f"aiokafka's {name} is a coroutine"
        if not getattr(method, _PATCHED, False):
            setattr(AIOKafkaConnection, name, _broken_on_closed_transport(method))
