"""Offset commits that trail durability (issue #16): a batch's offsets are committed only
after Redis has confirmed its writes durable (`simwatch_runtime.durability`).

The consumer applies batch after batch without waiting; one barrier at a time runs beside
it and covers every batch applied before it started. When it confirms, their offsets are
committed. When it cannot (a wait timed out, a primary died, failed over or restarted),
nothing is committed. If the writes are still where they were written (the wait timed out,
or the server refuses it: its AOF is off), the barrier is tried again after a pause, for as
long as it takes. If they may be gone (a primary died, restarted or failed over), every
uncommitted batch is *applied again*: the consumer seeks back to the first uncommitted
offset of each partition and re-reads from there under a new epoch (re-applying counts
nothing twice: record ids, event ids, versioned commits).

At level ``memory`` the barrier confirms at once, and each batch is committed before the
next is read, as before this module existed.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from simwatch_runtime.durability import Barrier, Epoch, NotDurableError

from ..crash_points import crash_point
from ..metrics import Metrics

log = logging.getLogger(__name__)
Offsets = dict[TopicPartition, int]
PAUSE_S = 1.0


class DurableCommits:
    def __init__(self, consumer: AIOKafkaConsumer, barrier: Barrier, metrics: Metrics) -> None:
        self.consumer = consumer
        self.barrier = barrier
        self.metrics = metrics
        self.epoch: Epoch | None = None
        self._ready: Offsets = {}  # next offsets of applied batches no barrier covers yet
        self._since: Offsets = {}  # first offset of the oldest uncommitted batch
        self._oldest: float | None = None  # when the oldest uncommitted batch was applied
        self._covered: Offsets = {}
        self._fetched: list[Offsets] = []  # first offsets of batches fetched, not yet applied
        self._task: asyncio.Task[None] | None = None
        self._started = 0.0
        self._pause_until = 0.0  # after an unconfirmed barrier: not before this (monotonic)
        self.generation = 0
        """Counts the re-reads: a batch fetched before one is stale (it is read again)."""

    async def begin(self) -> None:
        """Before applying a batch: the epoch it is applied in (taken again after a failure)."""
        if self.epoch is None:
            self.epoch = await self.barrier.epoch()

    def fetched(self, first: Offsets) -> int:
        """A batch was fetched (`first` offset per partition) and will be applied while later
        ones are fetched: until it is applied, a re-read goes back to its offsets too. Called
        as soon as it is fetched, with no await in between, so that a re-read started later
        always covers it. Returns the generation to hand to `applied`."""
        self._fetched.append(first)
        return self.generation

    async def applied(
        self, first: Offsets, following: Offsets, generation: int | None = None
    ) -> bool:
        """A batch is in Redis (in memory): `first`/`following` offsets per partition. Its
        offsets are committed once a barrier confirms it (at once at level ``memory``).
        Batches must be reported in the order they were fetched. A batch fetched in an
        earlier `generation` (a re-read started since) is stale: nothing is recorded, its
        records are read again, and False is returned."""
        if generation is not None and generation != self.generation:
            return False
        self._fetched = [f for f in self._fetched if f is not first]
        for tp, offset in first.items():
            self._since.setdefault(tp, offset)
        self._ready.update(following)
        if self._oldest is None:
            self._oldest = time.monotonic()
        await self.advance(wait=not self.barrier.enabled)
        return True

    async def advance(self, wait: bool = False) -> None:
        """Commit what a finished barrier confirmed, and start one for what is ready. With
        `wait`, wait for the barrier too (for a stop, or when nothing else would)."""
        while True:
            if self._task is not None:
                if not (wait or self._task.done()):
                    break
                await self._settle()
            if not self._ready or (not wait and time.monotonic() < self._pause_until):
                break
            self._start()
            if not wait:
                break
        if self._oldest is not None:
            self.metrics.uncommitted_seconds.set(time.monotonic() - self._oldest)
        else:
            self.metrics.uncommitted_seconds.set(0)

    def _start(self) -> None:
        crash_point("usage.before_durable")
        assert self.epoch is not None, "begin() takes the epoch before any batch"
        self._covered, self._ready = self._ready, {}
        self._started = time.perf_counter()
        self._task = asyncio.create_task(self.barrier.confirm(self.epoch), name="durability")

    async def _settle(self) -> None:
        assert self._task is not None
        task, self._task = self._task, None
        try:
            await task
        except NotDurableError as exc:
            if exc.reapply:
                self._invalidate(exc)
            else:
                self._unconfirmed(exc)
            return
        self.metrics.durability_seconds.observe(time.perf_counter() - self._started)
        await self._commit(self._covered)

    async def _commit(self, offsets: Offsets) -> None:
        assigned = self.consumer.assignment()
        # Partitions that moved meanwhile: their new owner reads them again, harmlessly.
        mine = {tp: off for tp, off in offsets.items() if tp in assigned}
        crash_point("usage.before_commit")
        if mine:
            try:
                await self.consumer.commit(mine)
            except (CommitFailedError, IllegalStateError) as exc:
                # The group rebalanced: the new owners re-read, counting nothing twice.
                log.info("offset commit skipped after rebalance: %s", exc)
            except Exception:
                for tp, off in offsets.items():  # durable all the same: the next commit takes them
                    self._ready.setdefault(tp, off)
                raise
        for tp, off in offsets.items():
            if tp in self._ready:
                self._since[tp] = off
            else:
                self._since.pop(tp, None)
        if not self._since:
            self._oldest = None

    def _unconfirmed(self, exc: NotDurableError) -> None:
        """Not confirmed yet, still in place: confirm again after a pause, commit nothing."""
        self.metrics.durability_failures.labels("unconfirmed").inc()
        log.error(
            "Redis did not confirm %s durability (%s); offsets not committed, trying again",
            self.barrier.level.value,
            exc,
        )
        for tp, off in self._covered.items():
            self._ready.setdefault(tp, off)
        self._covered = {}
        self._pause_until = time.monotonic() + PAUSE_S

    def _invalidate(self, exc: NotDurableError) -> None:
        """Nothing uncommitted is known durable: read it again, under a new epoch."""
        self.metrics.durability_failures.labels("reapplied").inc()
        log.error(
            "Redis did not confirm %s durability (%s); offsets not committed, %d partitions "
            "re-read from their last commit",
            self.barrier.level.value,
            exc,
            len(self._since.keys() | {tp for f in self._fetched for tp in f}),
        )
        assigned = self.consumer.assignment()
        back = dict(self._since)
        for first in self._fetched:  # fetched, still being applied: stale now, read again
            for tp, offset in first.items():
                back[tp] = min(offset, back.get(tp, offset))
        for tp, offset in back.items():
            if tp in assigned:
                self.consumer.seek(tp, offset)
        self._since.clear()
        self._fetched.clear()
        self._ready.clear()
        self._covered = {}
        self._oldest = None
        self.epoch = None
        self.generation += 1
