"""The stall watchdog (`simwatch_runtime/liveness.py`): a usage consumer that has records waiting
and applies nothing, with no retry under way, is stopped once the stall has lasted
`consumer_stall_s`; progress, an idle member, and a visible retry keep it running."""

from __future__ import annotations

import asyncio
import socket
import time
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.consumer.subscription_state import SubscriptionState

from simwatch_runtime import liveness
from simwatch_runtime.liveness import (
    QUIET_S,
    ConsumerStalledError,
    ConsumerState,
    StallClock,
    await_chain,
    broker_reachable,
    consumer_state,
)
from simwatch_runtime.progress import Progress
from usage_monitor.entrypoints import app as app_module
from usage_monitor.entrypoints import usage_consumer as uc

from .test_usage_consumer import _consumer, _World

WAITING = ConsumerState(member=True, waiting="partition 0 is at 3 of 10", detail="")
IDLE = ConsumerState(member=True, waiting=None, detail="")
OUT = ConsumerState(member=False, waiting=None, detail="")


def test_the_clock_fires_only_after_a_whole_stall() -> None:
    clock = StallClock(10, now=0, gap_s=100)  # looks this sparse are no freeze
    assert clock.observe(5, applied=False, retrying=False, state=WAITING) is None
    assert clock.observe(9.9, applied=False, retrying=False, state=WAITING) is None
    reason = clock.observe(10, applied=False, retrying=False, state=WAITING)
    assert reason is not None and "partition 0 is at 3 of 10" in reason and "10 s" in reason


@pytest.mark.parametrize(
    "healthy",
    [
        {"applied": True, "retrying": False, "state": WAITING},  # progress
        {"applied": False, "retrying": True, "state": WAITING},  # a visible, logged retry
        {"applied": False, "retrying": False, "state": IDLE},  # nothing waits
    ],
)
def test_any_healthy_look_starts_the_stall_again(healthy: dict[str, Any]) -> None:
    clock = StallClock(10, now=0, gap_s=100)  # looks this sparse are no freeze
    assert clock.observe(8, applied=False, retrying=False, state=WAITING) is None
    assert clock.observe(9, **healthy) is None
    assert clock.observe(18, applied=False, retrying=False, state=WAITING) is None
    assert clock.observe(19, applied=False, retrying=False, state=WAITING) is not None


def test_a_frozen_process_does_not_count_its_freeze_as_a_stall() -> None:
    """SIGSTOP, a paused VM: the looks stop; after the thaw the stall starts again, and the
    fetch responses get `QUIET_S` to come back."""
    clock = StallClock(10, now=0, gap_s=3)
    assert clock.observe(1, applied=False, retrying=False, state=WAITING) is None
    fired = [
        t
        for t in range(60, 100)  # frozen from 1 to 60, then a look every second
        if clock.observe(t, applied=False, retrying=False, state=WAITING) is not None
    ]
    assert fired[0] == 60 + QUIET_S - 1 + 10  # the last thawing look, then a whole stall


def test_out_of_the_group_counts_as_waiting() -> None:
    clock = StallClock(10, now=0, gap_s=100)  # looks this sparse are no freeze
    reason = clock.observe(11, applied=False, retrying=False, state=OUT)
    assert reason is not None and "not a settled member" in reason


def _kafka(
    positions: dict[int, int | None], highwater: dict[int, int], polled_ms: float | None
) -> Any:
    """A consumer with aiokafka's own subscription state, and a coordinator with the fields
    aiokafka 0.14 keeps (read, like aiokafka's, by name)."""
    tps = {TopicPartition("u", p) for p in positions}
    subscriptions = SubscriptionState()
    subscriptions.subscribe(topics={"u"})
    subscriptions.assign_from_subscribed(tps)
    assignment = subscriptions.subscription.assignment
    for tp in tps:
        position = positions[tp.partition]
        if position is not None:
            assignment.state_value(tp).reset_to(position)
    rejoin = asyncio.get_running_loop().create_future()
    coordinator = SimpleNamespace(
        coordinator_id=1,
        member_id="m-1",
        generation=3,
        _rejoin_needed_fut=rejoin,
        _coordination_task=None,
    )
    return SimpleNamespace(
        _coordinator=coordinator,
        _subscription=subscriptions,
        highwater=lambda tp: highwater.get(tp.partition),
        last_poll_timestamp=lambda tp: polled_ms,
    )


async def test_the_consumer_state_reads_positions_highwater_and_membership() -> None:
    now = 1_000_000.0
    caught_up = _kafka({0: 5, 1: 7}, {0: 5, 1: 7}, polled_ms=now - 50)
    state = consumer_state(caught_up, now)
    assert state.member and state.waiting is None and "member 'm-1'" in state.detail
    behind = consumer_state(_kafka({0: 5, 1: 7}, {0: 5, 1: 9}, polled_ms=now), now)
    assert behind.waiting == "partition 1 is at 7 of 9"
    unset = consumer_state(_kafka({0: None}, {}, polled_ms=now), now)
    assert unset.waiting == "partition 0 has no position"
    quiet = consumer_state(_kafka({0: 5}, {0: 5}, polled_ms=now - QUIET_S * 1000 - 1), now)
    assert quiet.waiting is not None and "no fetch response" in quiet.waiting
    kicked = _kafka({0: 5}, {0: 5}, polled_ms=now)
    kicked._coordinator.member_id = ""  # what aiokafka's reset_generation leaves
    assert not consumer_state(kicked, now).member
    rejoining = _kafka({0: 5}, {0: 5}, polled_ms=now)
    rejoining._coordinator._rejoin_needed_fut.set_result(None)
    assert not consumer_state(rejoining, now).member
    idle = _kafka({}, {}, polled_ms=now)  # more workers than partitions: nothing assigned
    assert consumer_state(idle, now) == ConsumerState(True, None, consumer_state(idle, now).detail)


async def test_a_new_assignment_that_never_hears_from_its_broker_is_waiting() -> None:
    """After a rebalance every partition starts with no highwater and no fetch response:
    the time the assignment was first seen stands in for the response."""
    now = 1_000_000.0
    fresh = _kafka({0: 5}, {}, polled_ms=None)  # type: ignore[arg-type]
    assert consumer_state(fresh, now, assigned_ms=now - 1000).waiting is None
    late = consumer_state(fresh, now, assigned_ms=now - QUIET_S * 1000 - 1).waiting
    assert late is not None and "no fetch response" in late


def test_an_unreadable_consumer_is_reported_healthy() -> None:
    """A layout this aiokafka version lacks must disable the watchdog, not crash-loop the
    worker."""
    assert consumer_state(SimpleNamespace(), 0).member
    broken = SimpleNamespace(
        _coordinator=SimpleNamespace(member_id="m"),
        _subscription=SimpleNamespace(subscription=SimpleNamespace(assignment=object())),
    )
    state = consumer_state(broken, 0)
    assert state.member and state.waiting is None and state.detail.startswith("unreadable")


async def test_await_chain_names_where_a_task_waits() -> None:
    async def inner() -> None:
        await asyncio.sleep(3600)

    async def outer() -> None:
        await inner()

    task = asyncio.create_task(outer())
    await asyncio.sleep(0)
    try:
        chain = await_chain(task)
        assert chain.startswith("outer:") and "inner:" in chain and "sleep" in chain
    finally:
        task.cancel()
    assert await_chain(None) == "not running"


async def test_a_broker_is_reachable_when_one_accepts_a_connection() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    unused = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    try:
        assert await broker_reachable(f"127.0.0.1:{unused},127.0.0.1:{port}")
        assert not await broker_reachable(f"127.0.0.1:{unused}", timeout_s=1)
        assert not await broker_reachable("not-a-port")
    finally:
        server.close()
        await server.wait_closed()


async def _watched(stuck_with: str, monkeypatch: pytest.MonkeyPatch, reachable: bool = True) -> Any:
    """A consumer whose batch hangs on Redis (silently, or failing and retried), watched
    with a 0.2 s stall timeout while records wait."""
    world = _World(3, records=100)
    c, _ = _consumer(world, stuck=stuck_with == "silence")
    if stuck_with == "errors":

        async def refused(parsed: Any) -> None:
            raise ConnectionError("Redis refused")

        c.pipeline.apply = refused  # type: ignore[method-assign,assignment]
    c._watchdog.stall_s = 0.2
    c._watchdog.every_s = 0.02
    monkeypatch.setattr(
        liveness, "consumer_state", lambda consumer, now_ms, assigned_ms=None, topics=None: WAITING
    )

    async def probe(servers: str) -> bool:
        return reachable

    monkeypatch.setattr(liveness, "broker_reachable", probe)
    crashed: list[BaseException] = []

    async def crash(reason: BaseException) -> None:
        crashed.append(reason)

    c.crash = crash  # type: ignore[method-assign]
    monkeypatch.setattr(uc, "exit_after", lambda seconds: crashed.append(TimeoutError(seconds)))
    c._crash_task = None
    c._loop_task = asyncio.create_task(c._run())
    c._loop_task.add_done_callback(c._on_loop_done)
    watch = asyncio.create_task(c._watch())
    await asyncio.sleep(0.6)
    return c, watch, crashed


async def test_a_silent_stall_ends_the_loop_and_crashes_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c, watch, crashed = await _watched("silence", monkeypatch)
    await asyncio.sleep(0)
    assert watch.done() and c._loop_task.cancelled()
    stalls = [e for e in crashed if isinstance(e, ConsumerStalledError)]
    assert len(stalls) == 1 and "partition 0 is at 3 of 10" in str(stalls[0])
    exits = [e for e in crashed if isinstance(e, TimeoutError)]
    assert len(exits) == 1  # and the process would exit after the grace, stopped or not
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert [t.get_coro().__qualname__ for t in others if not t.done()] == []


async def test_a_retried_dependency_failure_is_not_a_stall(monkeypatch: pytest.MonkeyPatch) -> None:
    c, watch, crashed = await _watched("errors", monkeypatch)
    try:
        assert not watch.done() and not c._loop_task.done() and crashed == []
        assert time.monotonic() - c._progress.failed_at < 1  # the retry loop's last failure
    finally:
        c._stopping.set()
        watch.cancel()
        c._loop_task.cancel()
        await asyncio.gather(watch, c._loop_task, return_exceptions=True)


async def test_no_broker_reachable_is_an_outage_not_a_stall(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Restarting would only trade a waiting worker for one blocked in its preflight."""
    c, watch, crashed = await _watched("silence", monkeypatch, reachable=False)
    try:
        assert not watch.done() and not c._loop_task.done() and crashed == []
    finally:
        c._stopping.set()
        watch.cancel()
        c._loop_task.cancel()
        await asyncio.gather(watch, c._loop_task, return_exceptions=True)


def _faust_app(unacked: int, topic: str = "events") -> Any:
    """An app as the faust watchdog reads it: its consumer thread's `AIOKafkaConsumer` (here
    unreadable, so aiokafka's side reads healthy) and the messages faust holds unacked."""
    consumer = SimpleNamespace(
        _thread=SimpleNamespace(_consumer=object()),
        _unacked_messages=[SimpleNamespace(topic=topic) for _ in range(unacked)],
        flow_active=True,
    )
    return SimpleNamespace(_consumer=consumer, rebalancing=False)


async def _faust_watched(
    unacked: int, monkeypatch: pytest.MonkeyPatch, progressing: str | None = None
) -> list[BaseException]:
    """faust's watchdogs (topics `events` and `results`) over 0.6 s, with a 0.2 s stall
    timeout, `unacked` messages of `events` held; `progressing`: a topic whose agent
    applies a batch every 0.05 s. What the worker was crashed with."""
    monkeypatch.setattr(app_module, "WATCH_EVERY_S", 0.02)

    async def reachable(servers: str) -> bool:
        return True

    monkeypatch.setattr(liveness, "broker_reachable", reachable)
    settings = SimpleNamespace(
        consumer_stall_s=0.2, retry_backoff_max_s=0.01, kafka_bootstrap_servers="127.0.0.1:1"
    )
    c = SimpleNamespace(settings=settings, agents={"events": Progress(), "results": Progress()})
    watchdog = app_module._AgentsWatchdog(_faust_app(unacked), c)  # type: ignore[arg-type]
    crashed: list[BaseException] = []

    async def crash(reason: BaseException) -> None:
        crashed.append(reason)

    watchdog.crash = crash  # type: ignore[method-assign]

    async def progress(topic: str) -> None:
        while True:
            await asyncio.sleep(0.05)
            c.agents[topic].note_applied()

    ticking = asyncio.create_task(progress(progressing)) if progressing else None
    await watchdog.start()
    await asyncio.sleep(0.6)
    await watchdog.stop()
    if ticking is not None:
        ticking.cancel()
    return crashed


@pytest.mark.parametrize("other_applying", [False, True], ids=["alone", "beside-another"])
async def test_faust_holding_messages_it_never_applies_is_a_stall(
    other_applying: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """faust's consumer after an outage (docs/reliability.md): messages taken, none applied;
    another agent applying its own topic meanwhile does not hide it."""
    crashed = await _faust_watched(3, monkeypatch, "results" if other_applying else None)
    assert len(crashed) == 1 and isinstance(crashed[0], ConsumerStalledError)
    assert "faust consumer of events stalled: 3 messages taken by faust and not yet applied" in (
        str(crashed[0])
    )


@pytest.mark.parametrize(
    ("unacked", "progressing"), [(0, None), (3, "events")], ids=["idle", "applying"]
)
async def test_faust_idle_or_applying_is_no_stall(
    unacked: int, progressing: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await _faust_watched(unacked, monkeypatch, progressing) == []


async def test_a_stopping_owner_is_never_reported_stalled(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's stop can wait on Kafka for long: the watchdog stays quiet meanwhile."""
    monkeypatch.setattr(
        liveness, "consumer_state", lambda consumer, now_ms, assigned_ms=None, topics=None: WAITING
    )
    watchdog = liveness.Watchdog(
        "test consumer",
        lambda: object(),
        Progress(),
        stall_s=0.1,
        retry_backoff_max_s=0.01,
        bootstrap_servers="127.0.0.1:1",
        every_s=0.02,
        stopping=lambda: True,
    )
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(watchdog.run(), 0.5)


async def test_a_dead_aiokafka_task_is_a_stall_at_once() -> None:
    """The client's metadata synchroniser died (uvloop's closed-transport error, in CI): the
    consumer will never find its coordinator or fetch again. No need to wait `stall_s`."""

    async def dies() -> None:
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True>")

    synchroniser = asyncio.create_task(dies())
    await asyncio.sleep(0)
    consumer = SimpleNamespace(_client=SimpleNamespace(_sync_task=synchroniser))

    def watching(stopping: bool) -> liveness.Watchdog:
        return liveness.Watchdog(
            "test consumer",
            lambda: consumer,
            Progress(),
            stall_s=3600,
            retry_backoff_max_s=0.01,
            bootstrap_servers="127.0.0.1:1",
            every_s=0.02,
            stopping=lambda: stopping,
        )

    stalled = await asyncio.wait_for(watching(stopping=False).run(), 2)
    assert "background task died" in str(stalled) and "TCPTransport" in str(stalled)
    with pytest.raises(TimeoutError):  # a stop ends the tasks: not a stall
        await asyncio.wait_for(watching(stopping=True).run(), 0.3)
