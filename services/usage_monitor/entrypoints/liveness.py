"""A watchdog for the usage consumer: a worker whose counting has stopped without an error
must not keep its partitions.

Every failure the consumer loop sees ends the loop, and the worker with it, so that its
supervisor restarts it (`usage_consumer.UsageConsumer._on_loop_done`). A *silent* stall
does not: seen in CI after the Kafka link was black-holed past the group's session
timeout, a worker stayed up, logged nothing more, and counted nothing for two minutes
while its partitions' records waited (aiokafka had re-joined nothing; the cause inside
aiokafka is not known). The watchdog turns such a stall into a failure: when records wait
and no batch has been applied for `stall_s`, and no dependency error is being retried
(those are visible, logged and counted, and a restart does not cure them), the loop is
ended with a `ConsumerStalledError` that says where it stood.

`StallClock` is the rule, with no I/O; `consumer_state` and `await_chain` read what is
needed from aiokafka's (private) state and the loop's task, for the rule and the report.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

QUIET_S = 10.0
"""A partition with no fetch response for this long is waiting: a fetch with nothing to
return still answers within `fetch_max_wait_ms` (milliseconds)."""


class ConsumerStalledError(RuntimeError):
    """Records waited and nothing was applied for longer than the stall timeout."""


@dataclass(frozen=True, slots=True)
class ConsumerState:
    """What the watchdog needs of a Kafka consumer at one moment."""

    member: bool
    """A member of its group with a settled assignment (possibly empty: more workers than
    partitions is a legitimate, idle member)."""
    waiting: str | None
    """Why records are known to wait for this worker, or None: an assigned partition behind
    its highwater mark, or one with no position yet."""
    detail: str
    """The coordinator's state, for the report."""


class StallClock:
    """When the consumer has been stalled since: records wait (or it is not a settled group
    member), no batch was applied, and no retry of a failed dependency is under way.

    A gap between two looks longer than `gap_s` (the process was frozen: SIGSTOP, a paused
    VM or container) starts the stall again, and so does the `QUIET_S` after it: the time
    nobody ran is no evidence against the consumer, and its fetches answer only now."""

    def __init__(self, stall_s: float, now: float, gap_s: float = 3.0) -> None:
        self.stall_s = stall_s
        self.gap_s = gap_s
        self._healthy_at = now
        self._looked_at = now
        self._thawed_at = -QUIET_S

    def restart(self, now: float) -> None:
        """Count the stall from `now` (what looked like one was explained otherwise)."""
        self._healthy_at = now

    def observe(
        self, now: float, *, applied: bool, retrying: bool, state: ConsumerState
    ) -> str | None:
        """Note one look at the consumer; returns why it counts as stalled once it has been
        for `stall_s`, else None."""
        if now - self._looked_at > self.gap_s:
            self._thawed_at = now
        self._looked_at = now
        reason = None if state.member else "not a settled member of its group"
        reason = reason or state.waiting
        thawing = now - self._thawed_at < QUIET_S
        if applied or retrying or reason is None or thawing:
            self._healthy_at = now
            return None
        if now - self._healthy_at < self.stall_s:
            return None
        return f"{reason}; nothing applied for {now - self._healthy_at:.0f} s"


def consumer_state(consumer: Any, now_ms: float, assigned_ms: float | None = None) -> ConsumerState:
    """Read an `AIOKafkaConsumer`'s group membership, positions and last fetch responses
    (`now_ms`: wall clock, as aiokafka stamps them; `assigned_ms`: when the watchdog first
    saw the current assignment, standing in for a fetch response a partition of it has not
    had yet: a new assignment starts with none). Never raises: a layout it cannot read is
    reported as healthy (see below). Uses aiokafka's private
    coordinator and subscription state: the consumer exposes no health of its own (as for
    `usage_consumer.fetcher_failure`); anything missing reads as a member with nothing
    waiting, so a change in aiokafka disables the watchdog instead of firing it."""
    try:
        return _read_state(consumer, now_ms, assigned_ms)
    except (AttributeError, AssertionError, TypeError) as exc:
        return ConsumerState(member=True, waiting=None, detail=f"unreadable: {exc!r}")


def current_assignment(consumer: Any) -> object | None:
    """aiokafka's assignment object (a new one at every rebalance), or None."""
    subscription = getattr(getattr(consumer, "_subscription", None), "subscription", None)
    return getattr(subscription, "assignment", None)


def _read_state(consumer: Any, now_ms: float, assigned_ms: float | None) -> ConsumerState:
    coordinator = getattr(consumer, "_coordinator", None)
    subscription = getattr(getattr(consumer, "_subscription", None), "subscription", None)
    if coordinator is None or subscription is None:
        return ConsumerState(member=True, waiting=None, detail="no coordinator state")
    rejoin = getattr(coordinator, "_rejoin_needed_fut", None)
    task = getattr(coordinator, "_coordination_task", None)
    detail = (
        f"coordinator {getattr(coordinator, 'coordinator_id', None)}, "
        f"member {getattr(coordinator, 'member_id', None)!r}, "
        f"generation {getattr(coordinator, 'generation', None)}, "
        f"rejoin requested {rejoin is not None and rejoin.done()}, "
        f"coordination task {'ended' if task is not None and task.done() else 'running'}"
    )
    assignment = subscription.assignment
    member = (
        assignment is not None
        and bool(getattr(coordinator, "member_id", ""))
        and not (rejoin is not None and rejoin.done())
    )
    waiting = None
    if assignment is not None:
        for tp in sorted(assignment.tps):
            state = assignment.state_value(tp)
            if state is None or not state.has_valid_position:
                waiting = f"partition {tp.partition} has no position"
                break
            highwater = consumer.highwater(tp)
            if highwater is not None and state.position < highwater:
                waiting = f"partition {tp.partition} is at {state.position} of {highwater}"
                break
            polled = consumer.last_poll_timestamp(tp) or assigned_ms
            if polled is not None and now_ms - polled > QUIET_S * 1000:
                quiet_s = (now_ms - polled) / 1000
                waiting = f"partition {tp.partition} has had no fetch response for {quiet_s:.0f} s"
                break
    return ConsumerState(member=member, waiting=waiting, detail=detail)


async def broker_reachable(bootstrap_servers: str, timeout_s: float = 2.0) -> bool:
    """Whether any bootstrap broker accepts a TCP connection. A consumer that gets nothing
    while no broker is reachable is in an outage, not stalled: aiokafka logs and retries it,
    and a restart would only trade a waiting worker (its card API still served) for one
    blocked in its preflight."""
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host.strip("[]") or "127.0.0.1", int(port)), timeout_s
            )
        except (OSError, TimeoutError, ValueError):
            continue
        writer.close()
        return True
    return False


def await_chain(task: asyncio.Task[Any] | None) -> str:
    """Where a task is suspended: each coroutine it awaits through, innermost last
    (``Task.get_stack`` gives only the outermost frame of a suspended task)."""
    if task is None or task.done():
        return "not running"
    steps: list[str] = []
    awaited: Any = task.get_coro()
    while awaited is not None and len(steps) < 30:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is not None:
            steps.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        awaited = _next_awaited(awaited)
    return " > ".join(steps) or "unknown"


def _next_awaited(awaited: Any) -> Any:
    """What a coroutine (or generator-based awaitable) is suspended on; None for anything
    else (a future's iterator, say: the chain ends at the coroutine that awaits it)."""
    for attribute in ("cr_await", "gi_yieldfrom"):
        if hasattr(awaited, attribute):
            return getattr(awaited, attribute)
    return None
