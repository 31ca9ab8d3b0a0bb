"""The batched `usage.records` consumer: aiokafka `getmany`, one pipeline run per fetch,
offsets committed only after Kafka has everything the batch produced and Redis has made
its writes durable (``commits.py``).

Runs as a service inside the faust app (its lifecycle, web server and timers), but on its
own consumer group, so the hot path pays no per-event faust machinery.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import time
from asyncio import FIRST_COMPLETED
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from mode import Service

from simwatch_runtime.aiokafka_tasks import fetcher_failure
from simwatch_runtime.dead_letters import DeadLetters, RawMessage
from simwatch_runtime.durability import Barrier
from simwatch_runtime.errors import component_of, is_transient, retrying
from simwatch_runtime.liveness import ConsumerStalledError, Watchdog, await_chain, exit_after
from simwatch_runtime.progress import Progress

from ..metrics import Metrics
from ..settings import Settings
from .commits import DurableCommits
from .pipeline import Parsed, UsagePipeline

log = logging.getLogger(__name__)
T = TypeVar("T")
STOP_GRACE_S = 30.0
IN_FLIGHT = 2
"""Batches applied at once: two let Redis run one batch's script while the worker parses
the next and waits on Kafka for the one before (docs/benchmarks.md, sixth round)."""
MERGE_EVERY_S = 0.005
"""While every slot is taken, how often the waiting batch takes in what was fetched."""
WATCH_EVERY_S = 1.0
"""How often the stall watchdog looks at the consumer (`simwatch_runtime/liveness.py`)."""
EXIT_GRACE_S = 20.0
"""After the consumer crashed the worker, how long its stop may take before the process
exits anyway: a clean stop waits on Kafka (leaving the group, flushing the producers),
and with the broker unreachable that took over a minute, a minute in which the partitions
stayed with a worker that no longer counts. Exiting without it is safe: nothing is
committed that is not durable, and what is not committed is read again."""


@dataclass(slots=True)
class _Batch:
    """One fetch (or several, taken in while it waited for a slot), parsed, with the offsets
    it covers and when it was taken."""

    parsed: Parsed
    first: dict[TopicPartition, int]
    offsets: dict[TopicPartition, int]
    oldest_ms: int
    started: float
    generation: int
    """`DurableCommits.generation` when fetched: a re-read since makes the batch stale."""

    async def add(self, fetched: dict[TopicPartition, list[Any]], pipeline: UsagePipeline) -> None:
        """Take in a later fetch (same generation): its first offsets join the registered
        ones before any await, so a re-read from now on covers them too."""
        messages, oldest = _cover(fetched, self.first, self.offsets)
        if oldest and (not self.oldest_ms or oldest < self.oldest_ms):
            self.oldest_ms = oldest
        self.parsed.extend(await pipeline.parse(messages))

    @classmethod
    async def of(
        cls,
        fetched: dict[TopicPartition, list[Any]],
        pipeline: UsagePipeline,
        commits: DurableCommits,
    ) -> _Batch:
        started = time.perf_counter()
        first: dict[TopicPartition, int] = {}
        offsets: dict[TopicPartition, int] = {}
        generation = commits.fetched(first)  # filled below, before any await
        messages, oldest = _cover(fetched, first, offsets)
        return cls(await pipeline.parse(messages), first, offsets, oldest, started, generation)


def _cover(
    fetched: dict[TopicPartition, list[Any]],
    first: dict[TopicPartition, int],
    following: dict[TopicPartition, int],
) -> tuple[list[RawMessage], int]:
    """Note a fetch's offsets in a batch's (a partition's first offset is its earliest
    fetch's); its messages in order, and the oldest message timestamp (ms, 0 if none)."""
    for tp, batch in fetched.items():
        first.setdefault(tp, batch[0].offset)
        following[tp] = batch[-1].offset + 1
    oldest = min((b[0].timestamp for b in fetched.values() if b[0].timestamp), default=0)
    return [m for batch in fetched.values() for m in batch], oldest


class UsageConsumer(Service):
    def __init__(
        self,
        pipeline: UsagePipeline,
        dead_letters: DeadLetters,
        settings: Settings,
        metrics: Metrics,
        barrier: Barrier,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.barrier = barrier
        self.commits: DurableCommits | None = None
        self.pipeline = pipeline
        self.dead_letters = dead_letters
        self.settings = settings
        self.metrics = metrics
        self.consumer: AIOKafkaConsumer | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._crash_task: asyncio.Future[None] | None = None
        self._stopping = asyncio.Event()
        # One batch's counting and decisions at a time (usually in fetch order; a batch whose
        # attempt failed may be overtaken, which is harmless: counting commutes and decisions
        # are versioned). What overlaps them is the next batch's parse and the Kafka waits of
        # the one before (its dead letters, its offsets). Two batches' scripts and decision
        # round trips interleaved in Redis made each wait behind the other's (p50 at 65 000
        # records/s 159 and 110 ms interleaved, 125 and 100 ms in turn; the same records/s).
        self._redis_turn = asyncio.Lock()
        # Set while no batch is counting or waiting to: a batch that could take in more is
        # launched only then (`_may_go`). One launched while another counted waited for the
        # turn, parsed and idle, for ~2/3 of a batch's time, while the records fetched
        # meanwhile waited for the batch after it; kept waiting, it takes them in.
        self._turn_free = asyncio.Event()
        self._turn_free.set()
        self._progress = Progress()  # batches recorded, retried failures: for the watchdog
        self._watchdog = Watchdog(
            "usage consumer",
            lambda: self.consumer,
            self._progress,
            stall_s=settings.consumer_stall_s,
            retry_backoff_max_s=settings.retry_backoff_max_s,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            every_s=WATCH_EVERY_S,
            report=self._where,
            stopping=self._stopping.is_set,
        )
        self._stalled: ConsumerStalledError | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._flights: collections.deque[asyncio.Task[None]] = collections.deque()

    @property
    def group_id(self) -> str:
        return f"{self.settings.app_id}-usage"

    async def on_start(self) -> None:
        s = self.settings
        self.consumer = AIOKafkaConsumer(
            s.topic_usage,
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=self.group_id,
            client_id=f"{s.app_id}-usage",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=s.fetch_max_wait_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            session_timeout_ms=int(s.broker_session_timeout_s * 1000),
            heartbeat_interval_ms=max(100, int(s.broker_session_timeout_s * 1000 / 4)),
            max_poll_interval_ms=600_000,
        )
        await self.consumer.start()
        self.commits = DurableCommits(self.consumer, self.barrier, self.metrics)
        self._loop_task = asyncio.create_task(self._run(), name="usage-consumer")
        self._loop_task.add_done_callback(self._on_loop_done)
        self._watch_task = asyncio.create_task(self._watch(), name="usage-consumer-watchdog")
        self._watch_task.add_done_callback(self._on_watch_done)

    def _on_watch_done(self, task: asyncio.Task[None]) -> None:
        """The watchdog must not die unnoticed: its failure ends the worker too."""
        if task.cancelled() or task.exception() is None or self._stopping.is_set():
            return
        exc = task.exception()
        assert exc is not None
        log.critical("usage consumer watchdog failed: %r; stopping the worker", exc)
        self._crash_worker(exc)

    def _on_loop_done(self, task: asyncio.Task[None]) -> None:
        """A consumer loop that died must not leave its partitions assigned to a live but
        idle process: crash the worker, so the supervisor restarts it and the group moves
        the partitions meanwhile."""
        if self._stopping.is_set():
            return
        if task.cancelled():
            return  # a stop, or the watchdog (which crashes the worker itself)
        exc = task.exception() or RuntimeError("usage consumer loop ended")
        log.critical("usage consumer stopped unexpectedly: %r; stopping the worker", exc)
        self._crash_worker(exc)

    def _crash_worker(self, exc: BaseException) -> None:
        """Stop the worker for its supervisor to restart it; if the stop has not ended the
        process after `EXIT_GRACE_S`, end it anyway."""
        if self._crash_task is not None:
            return  # crashing already
        self._crash_task = asyncio.ensure_future(self.crash(exc))
        exit_after(EXIT_GRACE_S)

    async def _watch(self) -> None:
        """End the loop when it has stalled silently (`liveness.Watchdog`)."""
        stalled = await self._watchdog.run()
        if self._stopping.is_set():
            return
        self._stalled = stalled
        assert self._loop_task is not None
        self._loop_task.cancel()
        self._crash_worker(stalled)  # not left to the cancellation to finish

    def _where(self) -> str:
        """Where the loop and each batch in flight wait, for the watchdog's report."""
        flights = " | ".join(await_chain(t) for t in self._flights) or "none"
        return f"the loop waits at {await_chain(self._loop_task)}; batches in flight at {flights}; "

    async def on_stop(self) -> None:
        """Finish the batches in flight (their offsets get committed; a batch still waiting
        for a slot is read again after the restart), then leave the group. After
        `STOP_GRACE_S` the loop is cancelled, and every batch in flight with it. After a
        stall, nothing more is awaited of the loop or the commits: what they waited for
        may never come."""
        self._stopping.set()
        if self._watch_task is not None:
            self._watch_task.cancel()
        if self._stalled is not None:
            if self.consumer is not None:
                try:  # leaving the group may hang too
                    await asyncio.wait_for(self.consumer.stop(), EXIT_GRACE_S / 2)
                except Exception as exc:  # e.g. a dead aiokafka task's error, re-raised
                    log.warning(
                        "usage consumer did not stop cleanly: %s: %s", type(exc).__name__, exc
                    )
            return
        if self._loop_task is not None:
            # Not wait_for: it would raise a failed loop's exception here, and the consumer
            # would not leave its group.
            done, _ = await asyncio.wait({self._loop_task}, timeout=STOP_GRACE_S)
            if not done:
                self._loop_task.cancel()
        if self.commits is not None and not self._loop_task_failed():
            try:  # commit what the last barrier confirms; what it cannot is read again
                await asyncio.wait_for(self.commits.advance(wait=True), STOP_GRACE_S)
            except Exception as exc:
                if not (is_transient(exc) or isinstance(exc, TimeoutError)):
                    raise
                log.warning("last offsets left uncommitted at stop: %s", exc)
        if self.consumer is not None:
            await self.consumer.stop()

    def _loop_task_failed(self) -> bool:
        task = self._loop_task
        return task is not None and task.done() and not task.cancelled() and bool(task.exception())

    def owned_shards(self) -> frozenset[int]:
        """The Redis shards whose due cards this worker settles: those of the `usage.records`
        partitions assigned to it. Shard s goes with partition s modulo the partition count
        (the identity when the two counts are equal, as deployed), so while the group is
        settled every shard has exactly one owner; during a rebalance, none or (briefly) two,
        which the commit's version check makes harmless."""
        consumer = self.consumer
        if consumer is None:
            return frozenset()
        topic = self.settings.topic_usage
        assigned = {tp.partition for tp in consumer.assignment() if tp.topic == topic}
        partitions = len(consumer.partitions_for_topic(topic) or ()) or self.settings.redis_shards
        return frozenset(s for s in range(self.settings.redis_shards) if s % partitions in assigned)

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    async def _run(self) -> None:
        """Fetch, parse and apply, overlapped: while one batch waits on Redis and Kafka (its
        script, its decisions, its dead letters, its offset commit), the next is fetched,
        parsed and sent. At most `IN_FLIGHT` batches are in flight; each records its offsets
        only after the batch before it did, so offsets advance strictly in fetch order.

        While every slot is taken, the next batch keeps taking in what the fetcher holds
        (every `MERGE_EVERY_S`): the fetcher asks the broker for more of a partition only
        once what it holds of it is taken, so records left in it would miss a fetch."""
        assert self.consumer is not None
        assert self.commits is not None
        consumer, commits = self.consumer, self.commits
        limit = self.settings.batch_max_records
        flights: collections.deque[asyncio.Task[None]] = collections.deque()
        self._flights = flights  # for the watchdog's report
        pending: _Batch | None = None  # fetched and parsed, waiting for a slot
        try:
            while not self._stopping.is_set():
                if pending is not None and pending.generation != commits.generation:
                    pending = None  # fetched before a re-read: its records are read again
                if pending is not None and len(flights) < IN_FLIGHT and self._may_go(pending):
                    previous = flights[-1] if flights else None
                    self._turn_free.clear()
                    flights.append(asyncio.create_task(self._apply(pending, previous)))
                    pending = None
                    continue
                if pending is not None:
                    pending = await self._wait_for_slot(pending, flights)
                    continue
                fetched = await consumer.getmany(timeout_ms=200, max_records=limit)
                if not fetched:
                    failure = fetcher_failure(consumer)
                    if failure is not None:
                        # aiokafka's fetch routine died (uvloop's closed-transport error after
                        # a broken broker link): getmany then returns nothing, for ever. End
                        # the loop, so the worker stops and its supervisor restarts it.
                        raise RuntimeError(
                            "an aiokafka background task of the usage consumer died"
                        ) from failure
                    while flights:
                        await flights.popleft()
                    await commits.advance()  # a barrier that finished meanwhile: commit
                    continue
                pending = await _Batch.of(fetched, self.pipeline, commits)
            # A stop: the batches in flight finish, their offsets recorded; one still
            # waiting for a slot is read again after the restart.
            while flights:
                await flights[0]
                flights.popleft()
        except BaseException:
            # A failure, or the stop's grace ran out (the loop is cancelled): no batch may
            # go on writing after the consumer stopped. Whoever owns them next reads them
            # again. Their own failures are collected here (none left unretrieved).
            for task in flights:
                task.cancel()
            await asyncio.gather(*flights, return_exceptions=True)
            raise

    async def _wait_for_slot(
        self, pending: _Batch, flights: collections.deque[asyncio.Task[None]]
    ) -> _Batch:
        """No slot, or a batch is counting: wait for the oldest batch in flight to end or
        the turn to come free, up to `MERGE_EVERY_S`, and take in what was fetched meanwhile
        (the batch waiting, or a new one if a re-read made it stale)."""
        assert self.consumer is not None
        assert self.commits is not None
        oldest = flights[0]
        waits: set[asyncio.Future[Any]] = {oldest}
        free = None
        if len(flights) < IN_FLIGHT and not self._turn_free.is_set():
            # Only then can the turn coming free launch the batch; waiting on an event that
            # is set already would return at once, and the loop would spin.
            free = asyncio.ensure_future(self._turn_free.wait())
            waits.add(free)
        try:
            await asyncio.wait(waits, timeout=MERGE_EVERY_S, return_when=FIRST_COMPLETED)
        finally:
            if free is not None:
                free.cancel()
        if oldest.done():
            flights.popleft().result()  # its failure ends the loop
            return pending
        if len(flights) < IN_FLIGHT and self._may_go(pending):
            return pending  # launched at once
        room = self.settings.batch_max_records - pending.parsed.size
        if room <= 0:
            return pending
        more = await self.consumer.getmany(timeout_ms=0, max_records=room)
        if not more:
            return pending
        if pending.generation != self.commits.generation:
            return await _Batch.of(more, self.pipeline, self.commits)
        await pending.add(more, self.pipeline)
        return pending

    def _may_go(self, pending: _Batch) -> bool:
        """Launch `pending` now (a slot being free): when no batch is counting, or when it
        can take in nothing more (then it waits for the turn launched, and goes the moment
        the turn is free: held back, the loop could be parsing a whole fetch then, and one
        worker drained a backlog 16 % slower)."""
        full = pending.parsed.size >= self.settings.batch_max_records
        return full or self._turn_free.is_set()

    async def _apply(self, batch: _Batch, previous: asyncio.Task[None] | None) -> None:
        assert self.commits is not None
        await self._retrying(functools.partial(self._handle, batch), "usage batch")
        if previous is not None:
            await previous  # its offsets first; its failure is this batch's too
        recorded = await self._retrying(
            functools.partial(self.commits.applied, batch.first, batch.offsets, batch.generation),
            "usage offsets",
        )
        if not recorded:
            return
        self._progress.note_applied()
        self.metrics.batch_seconds.observe(time.perf_counter() - batch.started)
        if batch.oldest_ms:
            self.metrics.record_latency.observe(max(0.0, time.time() - batch.oldest_ms / 1000))
        assert self.consumer is not None
        self._observe_lag(self.consumer, batch.offsets)

    def _observe_lag(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        """Lag from the highwater mark the fetch responses carried (no extra request), for the
        partitions still assigned (a rebalance may have taken some during the batch)."""
        assigned = consumer.assignment()
        for tp, position in offsets.items():
            if tp not in assigned:
                # Its new owner reports it now; KeyError: never reported by this worker.
                with contextlib.suppress(KeyError):
                    self.metrics.consumer_lag.remove(str(tp.partition))
                continue
            highwater = consumer.highwater(tp)
            if highwater is not None:
                self.metrics.consumer_lag.labels(str(tp.partition)).set(
                    max(0, highwater - position)
                )

    async def _retrying(self, op: Callable[[], Awaitable[T]], what: str) -> T:
        def on_error(exc: BaseException) -> None:
            self.metrics.transient_errors.labels(component_of(exc)).inc()
            self._progress.note_failure()

        return await retrying(
            op, what=what, on_error=on_error, max_backoff_s=self.settings.retry_backoff_max_s
        )

    async def _handle(self, batch: _Batch) -> None:
        """Apply a parsed batch and publish its dead letters; safe to run again after a
        failure (nothing is counted twice, letters are published at least once). A batch
        a re-read made stale is not applied (its records are read again)."""
        assert self.commits is not None
        try:
            if batch.generation != self.commits.generation:
                return
            await self.commits.begin()
            async with self._redis_turn:
                if batch.generation != self.commits.generation:
                    return
                await self.pipeline.apply(batch.parsed)
        finally:
            # Counting done, failed (its retry takes the turn again) or stale: the next
            # batch may go.
            self._turn_free.set()
        await self.dead_letters.publish(batch.parsed.letters)
