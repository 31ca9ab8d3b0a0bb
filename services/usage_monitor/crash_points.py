"""Named points where a fault test can make the worker die, to prove recovery from the exact
window between two effects (the SIGKILL of a random moment hits such a window only by luck).

Off unless ``SIMWATCH_CRASH_AT=<point>:<n>`` is set: the process SIGKILLs itself the n-th time
it reaches ``<point>``. Points:

* ``usage.before_durable``: batches are counted in Redis (in memory) and their dead letters
  are on Kafka; the durability barrier that would cover them has not started, and their
  offsets are not committed (see ``entrypoints/commits.py``);
* ``usage.before_commit``: a batch is counted in Redis, confirmed durable, and its dead
  letters are on Kafka; its offsets are not committed (the batch is read again after the
  restart);
* ``outbox.before_publish``: decisions are in the Redis outbox, not yet on Kafka;
* ``outbox.before_ack``: they are on Kafka, still in the outbox (published again after the
  restart, with the same ids).

Reaching a point costs one comparison when the variable is unset.
"""

from __future__ import annotations

import os
import signal

ENV = "SIMWATCH_CRASH_AT"
POINTS = frozenset(
    {"usage.before_durable", "usage.before_commit", "outbox.before_publish", "outbox.before_ack"}
)


def _armed(spec: str | None) -> tuple[str, int] | None:
    if not spec:
        return None
    point, _, nth = spec.partition(":")
    if point not in POINTS or not nth.isdigit() or int(nth) < 1:
        raise ValueError(f"{ENV}={spec!r}: expected <point>:<n>, point one of {sorted(POINTS)}")
    return point, int(nth)


_target = _armed(os.environ.get(ENV))
_reached = 0


def crash_point(name: str) -> None:
    """Die here if the test armed this point and this is the n-th time it is reached."""
    global _reached
    if _target is None or _target[0] != name:
        return
    _reached += 1
    if _reached == _target[1]:
        os.kill(os.getpid(), signal.SIGKILL)
