"""The usage consumer notices when aiokafka's fetch routine has died (it then returns no
records for ever) instead of idling with its partitions assigned; and its overlapped loop
commits offsets only over durable records, through failovers, and stops cleanly."""

from __future__ import annotations

import asyncio
import collections
import random
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from simwatch_runtime.aiokafka_tasks import fetcher_failure
from simwatch_runtime.durability import Durability, Epoch, NotDurableError
from simwatch_runtime.liveness import Watchdog
from simwatch_runtime.progress import Progress
from usage_monitor.entrypoints import commits as commits_module
from usage_monitor.entrypoints.commits import DurableCommits
from usage_monitor.entrypoints.usage_consumer import UsageConsumer
from usage_monitor.metrics import Metrics


async def test_a_dead_fetch_routine_is_noticed() -> None:
    async def dies() -> None:
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True>")

    async def runs() -> None:
        await asyncio.sleep(3600)

    dead = asyncio.create_task(dies())
    alive = asyncio.create_task(runs())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    try:
        assert isinstance(
            fetcher_failure(SimpleNamespace(_fetcher=SimpleNamespace(_fetch_task=dead))),
            RuntimeError,
        )
        assert fetcher_failure(SimpleNamespace(_fetcher=SimpleNamespace(_fetch_task=alive))) is None
        assert fetcher_failure(SimpleNamespace()) is None  # not started: nothing to say
    finally:
        alive.cancel()


# --- the overlapped loop (`_run`), with fakes for Kafka, the pipeline and the barrier -----
#
# A randomised schedule (every fake yields a random number of times), failovers that drop
# the writes not yet durable, barriers that cannot confirm, transient apply errors. The
# property: an offset is committed only when every record below it is durable, and every
# record is eventually committed; a stop that runs out of grace leaves no batch running.


class _Rec:
    def __init__(self, tp: TopicPartition, offset: int) -> None:
        self.tp, self.topic, self.partition, self.offset = tp, tp.topic, tp.partition, offset
        self.timestamp, self.key, self.value = 1, b"", b""


class _World:
    def __init__(self, seed: int, records: int) -> None:
        self.rng = random.Random(seed)
        self.tps = [TopicPartition("u", 0), TopicPartition("u", 1)]
        self.n = records
        self.memory: set[tuple[TopicPartition, int]] = set()
        self.durable: set[tuple[TopicPartition, int]] = set()
        self.skipped: list[tuple[TopicPartition, int]] = []

    async def jitter(self, p: float = 0.5, most: int = 3) -> None:
        while most and self.rng.random() < p:
            await asyncio.sleep(0)
            most -= 1


class _Kafka:
    def __init__(self, world: _World) -> None:
        self.w = world
        self.pos = {tp: 0 for tp in world.tps}
        self.committed: dict[TopicPartition, int] = {}
        self._fetcher = None

    def assignment(self) -> set[TopicPartition]:
        return set(self.w.tps)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.pos[tp] = offset

    async def getmany(self, timeout_ms: int = 0, max_records: int = 0) -> dict[Any, Any]:
        await self.w.jitter()
        out, left = {}, max_records
        for tp in self.w.rng.sample(self.w.tps, len(self.w.tps)):
            k = min(left, self.w.rng.randint(0, 7), self.w.n - self.pos[tp])
            if k > 0:
                out[tp] = [_Rec(tp, o) for o in range(self.pos[tp], self.pos[tp] + k)]
                self.pos[tp] += k
                left -= k
        if not out and timeout_ms:
            await asyncio.sleep(0.001)
        return out

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        await self.w.jitter()
        for tp, off in offsets.items():
            self.w.skipped += [(tp, o) for o in range(off) if (tp, o) not in self.w.durable]
            self.committed[tp] = off


class _Barrier:
    level = Durability.FSYNC
    enabled = True

    def __init__(self, world: _World) -> None:
        self.w, self.epochs = world, 0

    async def epoch(self) -> Epoch:
        await self.w.jitter()
        self.epochs += 1
        return frozenset({("redis", str(self.epochs))})

    async def confirm(self, epoch: Epoch) -> None:
        await self.w.jitter(0.8, 6)
        x = self.w.rng.random()
        if x < 0.15:  # failed over: what was not durable is gone, read it again
            self.w.memory = set(self.w.durable)
            raise NotDurableError("failed over", reapply=True)
        if x < 0.25:
            raise NotDurableError("not yet", reapply=False)
        self.w.durable |= self.w.memory


class _Parsed:
    def __init__(self, msgs: list[_Rec]) -> None:
        self.msgs, self.size, self.letters = msgs, len(msgs), []

    def extend(self, more: _Parsed) -> None:
        self.msgs += more.msgs
        self.size += more.size


class _Pipeline:
    def __init__(self, world: _World, stuck: bool = False) -> None:
        self.w, self.stuck = world, stuck
        self.applying = 0  # apply calls begun

    async def parse(self, msgs: list[_Rec]) -> _Parsed:
        await self.w.jitter(0.6, 4)
        return _Parsed(list(msgs))

    async def apply(self, parsed: _Parsed) -> None:
        self.applying += 1
        if self.stuck:  # Redis away: the batch retries for as long as it takes
            await asyncio.sleep(3600)
        await self.w.jitter(0.7, 5)
        if self.w.rng.random() < 0.05:
            raise ConnectionError("Redis blipped")
        self.w.memory |= {(m.tp, m.offset) for m in parsed.msgs}


class _Letters:
    async def publish(self, letters: list[Any]) -> None:
        await asyncio.sleep(0)


def _consumer(world: _World, stuck: bool = False) -> tuple[UsageConsumer, _Kafka]:
    kafka, barrier = _Kafka(world), _Barrier(world)
    metrics = Metrics.create(CollectorRegistry())
    c = UsageConsumer.__new__(UsageConsumer)
    c.consumer, c.barrier, c.metrics = kafka, barrier, metrics  # type: ignore[assignment]
    c.pipeline, c.dead_letters = _Pipeline(world, stuck), _Letters()  # type: ignore[assignment]
    c.settings = SimpleNamespace(batch_max_records=12, retry_backoff_max_s=0.001)  # type: ignore[assignment]
    c._stopping, c._redis_turn, c._turn_free = asyncio.Event(), asyncio.Lock(), asyncio.Event()
    c._turn_free.set()
    c._progress, c._stalled, c._watch_task = Progress(), None, None
    c._watchdog = Watchdog(
        "usage consumer",
        lambda: c.consumer,
        c._progress,
        stall_s=120,
        retry_backoff_max_s=0.001,
        bootstrap_servers="127.0.0.1:1",
        report=c._where,
    )
    c._crash_task = None
    c.commits = DurableCommits(kafka, barrier, metrics)  # type: ignore[arg-type]
    c._observe_lag = lambda *args: None  # type: ignore[method-assign]
    return c, kafka


@pytest.mark.parametrize("seed", range(24))
async def test_offsets_are_committed_only_over_durable_records_and_all_of_them(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commits_module, "PAUSE_S", 0.001)
    world = _World(seed, records=300)
    c, kafka = _consumer(world)
    loop = asyncio.create_task(c._run())
    deadline = asyncio.get_running_loop().time() + 20
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.001)
        if all(kafka.committed.get(tp) == world.n for tp in world.tps) or loop.done():
            break
    c._stopping.set()
    await asyncio.wait_for(loop, 5)
    assert world.skipped == [], "an offset was committed over a record not durable"
    assert all(kafka.committed.get(tp) == world.n for tp in world.tps), kafka.committed


async def test_a_stop_out_of_grace_leaves_no_batch_running() -> None:
    world = _World(0, records=100)
    c, _ = _consumer(world, stuck=True)
    loop = asyncio.create_task(c._run())
    await asyncio.sleep(0.05)  # a batch stuck on Redis, the next waiting for its turn
    c._stopping.set()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(loop), 0.1)  # on_stop's grace, shortened
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert [t.get_coro().__qualname__ for t in others if not t.done()] == []


async def test_no_batch_is_launched_while_one_counts_and_the_next_takes_in_fetches() -> None:
    """The batch after a counting one waits unlaunched and keeps taking in what is fetched,
    instead of waiting for the turn with what it had; a full one is launched (it can take
    in nothing more, and goes the moment the turn is free)."""
    world = _World(1, records=200)
    c, kafka = _consumer(world, stuck=True)
    c.settings.batch_max_records = 1000  # type: ignore[misc]
    loop = asyncio.create_task(c._run())
    deadline = asyncio.get_running_loop().time() + 5
    while min(kafka.pos.values()) < world.n and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.005)
    try:
        assert min(kafka.pos.values()) == world.n  # the rest taken in by the batch waiting
        flights = [t for t in asyncio.all_tasks() if "_apply" in t.get_coro().__qualname__]
        assert len(flights) == 1  # the one counting (stuck)
    finally:
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop
    world = _World(1, records=200)
    c, kafka = _consumer(world, stuck=True)  # the fetch limit back at 12
    loop = asyncio.create_task(c._run())
    await asyncio.sleep(0.05)
    try:
        flights = [t for t in asyncio.all_tasks() if "_apply" in t.get_coro().__qualname__]
        assert len(flights) == 2  # the one counting, and a full one waiting for the turn
    finally:
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop


async def test_waiting_for_a_slot_does_not_spin_while_the_turn_is_free() -> None:
    """Both slots taken (the newer batch done counting, the turn free, the older one still
    publishing): the waiting batch looks for more every `MERGE_EVERY_S`, not every tick."""
    world = _World(2, records=10)
    c, kafka = _consumer(world)
    calls = 0

    async def nothing(timeout_ms: int = 0, max_records: int = 0) -> dict[Any, Any]:
        nonlocal calls
        calls += 1
        return {}

    kafka.getmany = nothing  # type: ignore[method-assign]
    busy = collections.deque(asyncio.create_task(asyncio.sleep(3600)) for _ in range(2))
    pending: Any = SimpleNamespace(parsed=SimpleNamespace(size=1), generation=0)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 0.05
    try:
        while loop.time() < deadline:
            pending = await c._wait_for_slot(pending, busy)  # type: ignore[arg-type]
    finally:
        for task in busy:
            task.cancel()
        await asyncio.gather(*busy, return_exceptions=True)
    assert calls <= 20  # ~10 at one look per 5 ms; thousands when it spun
