"""Watchdogs for the services' Kafka consumers: a process whose consuming has stopped without
an error must not keep its partitions.

Every failure the usage consumer loop sees ends the loop, and the worker with it, so that
its supervisor restarts it (`usage_consumer.UsageConsumer._on_loop_done`). A *silent*
stall does not: seen in CI after the Kafka link was black-holed past the group's session
timeout, a worker stayed up, logged nothing more, and counted nothing for two minutes
while its partitions' records waited (aiokafka had re-joined nothing; the cause inside
aiokafka is not known). faust's own consumer (`card.events`, `card.command_results`,
`pool.events`) did the same after an outage past the session timeout, in about one run in
three on a slower machine: it rejoined its group and applied nothing more. The notifier's
two aiokafka consumers (`customer.settings`, `card.alerts`) are the same kind of consumer,
with the same hazard. A `Watchdog` turns such a stall into a failure: when records wait and
no batch has been applied for `stall_s`, and no dependency error is being retried (those
are visible, logged and counted, and a restart does not cure them), it says where the
consumer stood and hands a `ConsumerStalledError` to its owner, which stops the process
(`exit_after` ends it if the stop hangs).

`StallClock` is the rule, with no I/O; `consumer_state` and `await_chain` read what is
needed from aiokafka's (private) state and the tasks, for the rule and the report.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from simwatch_runtime.aiokafka_tasks import fetcher_failure
from simwatch_runtime.progress import Progress

log = logging.getLogger(__name__)

QUIET_S = 10.0
"""A partition with no fetch response for this long is waiting: a fetch with nothing to
return still answers within `fetch_max_wait_ms` (milliseconds)."""


class ConsumerStalledError(RuntimeError):
    """Records waited and nothing was applied for longer than the stall timeout."""


@dataclasses.dataclass(frozen=True, slots=True)
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


def consumer_state(
    consumer: Any,
    now_ms: float,
    assigned_ms: float | None = None,
    topics: frozenset[str] | None = None,
) -> ConsumerState:
    """Read an `AIOKafkaConsumer`'s group membership, positions and last fetch responses
    (`now_ms`: wall clock, as aiokafka stamps them; `assigned_ms`: when the watchdog first
    saw the current assignment, standing in for a fetch response a partition of it has not
    had yet: a new assignment starts with none). Never raises: a layout it cannot read is
    reported as healthy (see below). Uses aiokafka's private
    coordinator and subscription state: the consumer exposes no health of its own (as for
    `aiokafka_tasks.fetcher_failure`); anything missing reads as a member with nothing
    waiting, so a change in aiokafka disables the watchdog instead of firing it. `topics`:
    only their partitions count as waiting (None: all)."""
    try:
        return _read_state(consumer, now_ms, assigned_ms, topics)
    except (AttributeError, AssertionError, TypeError, RuntimeError) as exc:
        # RuntimeError: a set or dict changed while read, from the thread that owns the
        # consumer (faust runs its consumer in a thread of its own).
        return ConsumerState(member=True, waiting=None, detail=f"unreadable: {exc!r}")


def current_assignment(consumer: Any) -> object | None:
    """aiokafka's assignment object (a new one at every rebalance), or None."""
    subscription = getattr(getattr(consumer, "_subscription", None), "subscription", None)
    return getattr(subscription, "assignment", None)


def _read_state(
    consumer: Any, now_ms: float, assigned_ms: float | None, topics: frozenset[str] | None
) -> ConsumerState:
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
            if topics is not None and tp.topic not in topics:
                continue
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


class Watchdog:
    """Looks at one Kafka consumer every `every_s` and returns, with the error to stop the
    worker with, once it has stalled silently (`StallClock`): records wait, no batch was
    applied for `stall_s`, and no retry loop has seen a failure lately (one that failed once
    and then hangs is a stall again after `2 * retry_backoff_max_s + 15` s, a Redis socket
    timeout included). No broker reachable is an outage, logged once, not a stall.

    `consumer` returns the `AIOKafkaConsumer` (None until there is one); `topics` limits the
    watch to their partitions (one consumer, several handlers: each is watched on its own,
    or one handler applying would hide another that hangs); `taken` says why records the
    owner took from it wait unapplied (None if none do: aiokafka's positions cannot tell,
    they are past every record handed out); `report` says where the owner's own tasks
    wait, for the log line. Nothing fires while `stopping()`: a worker's stop may wait on
    Kafka for a long time, and is no stall."""

    def __init__(
        self,
        what: str,
        consumer: Callable[[], Any],
        progress: Progress,
        *,
        stall_s: float,
        retry_backoff_max_s: float,
        bootstrap_servers: str,
        every_s: float = 1.0,
        report: Callable[[], str] = lambda: "",
        taken: Callable[[], str | None] = lambda: None,
        topics: frozenset[str] | None = None,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.what = what
        self._consumer = consumer
        self.progress = progress
        self.stall_s = stall_s
        self.retry_window = 2 * retry_backoff_max_s + 15
        self.bootstrap_servers = bootstrap_servers
        self.every_s = every_s
        self._report = report
        self._taken = taken
        self.topics = topics
        self._stopping = stopping

    async def run(self) -> ConsumerStalledError:
        """Watch until the consumer has stalled; then log why and return the error."""
        clock = StallClock(self.stall_s, time.monotonic(), max(3.0, 3 * self.every_s))
        seen = self.progress.applied
        assignment: tuple[object | None, float] = (None, 0.0)
        outage = False  # warned that no broker is reachable
        while True:
            await asyncio.sleep(self.every_s)
            consumer = self._consumer()
            if consumer is None:
                clock.restart(time.monotonic())
                continue
            dead = fetcher_failure(consumer)
            if dead is not None and not self._stopping():
                # Nothing will ever be fetched again: no need to wait out the stall timeout.
                stalled = ConsumerStalledError(
                    f"{self.what} stalled: an aiokafka background task died "
                    f"({type(dead).__name__}: {dead})"
                )
                log.critical(
                    "%s; stopping so that its supervisor restarts it (docs/reliability.md)",
                    stalled,
                    exc_info=dead,
                )
                return stalled
            now_ms = time.time() * 1000
            current = current_assignment(consumer)
            if current is not assignment[0]:
                assignment = (current, now_ms)
            state = consumer_state(consumer, now_ms, assignment[1], self.topics)
            if state.waiting is None:
                state = dataclasses.replace(state, waiting=self._taken())
            applied, seen = self.progress.applied != seen, self.progress.applied
            outage = outage and not applied
            now = time.monotonic()
            reason = clock.observe(
                now,
                applied=applied,
                retrying=now - self.progress.failed_at < self.retry_window,
                state=state,
            )
            if reason is None or self._stopping():
                continue
            if not await broker_reachable(self.bootstrap_servers):
                if not outage:
                    log.warning("%s waiting: %s; no Kafka broker reachable", self.what, reason)
                outage = True
                clock.restart(time.monotonic())
                continue
            stalled = ConsumerStalledError(f"{self.what} stalled: {reason}")
            log.critical(
                "%s (%s); %saiokafka's fetch routine waits at %s, its coordination routine "
                "at %s; stopping so that its supervisor restarts it (docs/reliability.md)",
                stalled,
                state.detail,
                self._report(),
                await_chain(getattr(getattr(consumer, "_fetcher", None), "_fetch_task", None)),
                await_chain(
                    getattr(getattr(consumer, "_coordinator", None), "_coordination_task", None)
                ),
            )
            return stalled


def exit_after(seconds: float) -> None:
    """End the process in `seconds`, from a thread, whatever the event loop waits on: a
    process stopped after a stall or a crash waits on Kafka in its stop (leaving the group,
    flushing producers), which with the broker unreachable took over a minute."""

    def exit_now() -> None:
        # No logging: its handlers' locks may be what the process is stuck on.
        os.write(2, f"still stopping after {seconds:.0f} s; exiting now\n".encode())
        os._exit(70)  # EX_SOFTWARE

    timer = threading.Timer(seconds, exit_now)
    timer.daemon = True
    timer.start()
