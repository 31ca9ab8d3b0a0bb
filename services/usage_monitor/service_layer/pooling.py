"""Pooled quotas (流量池) in the service layer: a pool's usage is the sum of per-shard counts
that `ingest.lua` adds atomically with each record's de-duplication; any worker that counted
usage of a pool decides its levels (`domain.pools`), and exactly one commits each decision
(optimistic concurrency on the pool's version); when the pool's stop begins or ends, every
member is evaluated again with the pool's view ("fan-out"), in slices, by the workers that own
the members' shards, from a request kept with the pool's decision so that a worker that dies
half-way leaves its part to its shards' next owner."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Iterable
from datetime import date

from simwatch_contracts import PoolUpserted

from ..domain import pools
from ..domain.pools import Pool, PoolView
from ..ports import CONFLICT, PoolRecord
from .service import MAX_CAS_ATTEMPTS, CardService

log = logging.getLogger(__name__)
FAN_OUT_SLICE = 2000
"""Members evaluated (read, decided, committed) per round trip of a fan-out."""
FAN_OUT_SHARDS = 4
"""Shards of a fan-out evaluated at once (their round trips overlap)."""


class _StaleViewError(Exception):
    """A fan-out's view was replaced by a newer decision of the pool (see `fan_out`)."""


class PoolService:
    def __init__(self, cards: CardService) -> None:
        self.cards = cards
        self.store = cards.store
        self.metrics = cards.metrics
        self.settings = cards.settings
        self._running: dict[str, asyncio.Task[int]] = {}
        """Fan-outs in progress in this worker, by pool (the poll does not start them again)."""
        self.owned: Callable[[], Collection[int]] | None = None
        """The shards whose members this worker evaluates (the usage consumer's); None: all."""
        self.on_slice: Callable[[], None] = lambda: None
        """Called after each slice of members a fan-out evaluated: a pool's definition waits
        for its fan-outs (`define`), which for a big pool can outlast the stall timeout of
        the `pool.events` watchdog; each slice is progress (`entrypoints/app.py`)."""

    async def define(self, event: PoolUpserted) -> None:
        """A pool's definition (the latest holds), then its levels decided anew: a quota
        raised or lowered may end or begin its stop at once. A pool defined for the first
        time, or with a new calendar, has every member evaluated with it (members take their
        pool's calendar; those that joined before it was known have their own)."""
        pool = Pool.from_event(event)
        old = (await self.store.pool_load([pool.pool_id]))[pool.pool_id].definition
        await self.store.pool_define(pool)
        await self.settle([(pool.pool_id, pool.cycle(self.cards.clock()))], force=True)
        if old is None or (old.timezone, old.cycle_day) != (pool.timezone, pool.cycle_day):
            await self._fan_out_now(pool.pool_id)
        await self.idle()  # a definition's effects are done when its event is acknowledged

    async def _fan_out_now(self, pool_id: str) -> None:
        """A fan-out asked for with the pool's current state (kept until it is done)."""
        for _ in range(MAX_CAS_ATTEMPTS):
            record = (await self.store.pool_load([pool_id]))[pool_id]
            version = await self.store.pool_commit(record, record.state, [], fan_out=True)
            if version != CONFLICT:
                await self.fan_out(pool_id, version)  # every shard: done when acknowledged
                return
        raise RuntimeError(f"pool {pool_id}: too many concurrent writers")

    async def settle(self, touched: Iterable[tuple[str, date]], force: bool = False) -> int:
        """Decide the levels of every pool whose usage a batch added to; returns how many
        decisions were committed. A pool without a definition yet is left alone: its
        members' usage is counted, and decided on when the pool arrives."""
        ids = list(dict.fromkeys(pool_id for pool_id, _ in touched))
        committed = 0
        for _ in range(MAX_CAS_ATTEMPTS):
            if not ids:
                return committed
            now = self.cards.clock()
            records = await self.store.pool_load(ids)
            defined = {p: r for p, r in records.items() if r.definition is not None}
            used = await self.store.pool_used(
                [(p, r.definition.cycle(now)) for p, r in defined.items() if r.definition]
            )
            retry = []
            for pool_id, record in defined.items():
                pool = record.definition
                assert pool is not None
                cycle = pool.cycle(now)
                total = used[(pool_id, cycle)]
                if not force and record.state.cycle == cycle:
                    level = pools.wake(pool, record.state)
                    if level < 0 or total < level:
                        continue  # nothing new can be decided (the common case)
                result = await self._decide(record, pool, total, cycle)
                if result == CONFLICT:
                    retry.append(pool_id)
                elif result > 0:
                    committed += 1
            ids = retry
        raise RuntimeError(f"{len(ids)} pools: too many concurrent writers")

    async def _decide(self, record: PoolRecord, pool: Pool, used: int, cycle: date) -> int:
        """One pool's decision: 0 when nothing changed, the new version, or CONFLICT."""
        now = self.cards.clock()
        decision = pools.decide(pool, record.state, used, now)
        if decision.state == record.state:
            return 0
        if decision.alerts:  # only at a crossing: the members that used the most
            top = await self.store.pool_top(pool.pool_id, cycle, pools.TOP_MEMBERS)
            decision = pools.decide(pool, record.state, used, now, top)
        topic = self.settings.topic_alerts
        messages = [
            (topic, pool.pool_id.encode(), a.model_dump_json(exclude_none=True).encode())
            for a in decision.alerts
        ]
        fan_out = decision.fans_out(record.state, pool)
        version = await self.store.pool_commit(record, decision.state, messages, fan_out)
        if version == CONFLICT:
            self.metrics.evaluations.labels("conflict").inc()
            return CONFLICT
        for alert in decision.alerts:
            self.metrics.alerts.labels(alert.type.value).inc()
        if messages:
            await self.cards.drain_soon(self.store.shard(pool.pool_id))
        if fan_out:
            # Beside the usage stream, not inside its batch: counting goes on meanwhile, and
            # the request committed with the decision covers a worker that dies half-way.
            self._start(pool.pool_id, version)
        return version

    def _start(self, pool_id: str, version: int) -> asyncio.Task[int] | None:
        running = self._running.get(pool_id)
        if running is not None and not running.done():
            # One at a time per pool: the one running reads the pool's latest view when it
            # starts; a newer request stays in `pf` for the poll if this one missed it.
            return None
        task = asyncio.get_running_loop().create_task(self._fan_out_logged(pool_id, version))
        self._running[pool_id] = task
        task.add_done_callback(lambda t: self._done(pool_id, t))
        return task

    def _done(self, pool_id: str, task: asyncio.Task[int]) -> None:
        if self._running.get(pool_id) is task:
            del self._running[pool_id]

    async def _fan_out_logged(self, pool_id: str, version: int) -> int:
        started = time.monotonic()
        try:
            members = await self.fan_out(pool_id, version, self._owned())
        except Exception:  # the request stays in `pf`: the poll tries again
            log.exception("pool %s: fan-out failed; the next poll will retry it", pool_id)
            return 0
        if members:
            self.metrics.pool_fanout_seconds.observe(time.monotonic() - started)
            log.info("pool %s: %d members evaluated", pool_id, members)
        return members

    def _owned(self) -> Collection[int]:
        return range(self.store.shards) if self.owned is None else self.owned()

    async def idle(self) -> None:
        """Wait for the fan-outs in progress (tests, and a clean stop)."""
        while self._running:
            await asyncio.gather(*list(self._running.values()), return_exceptions=True)

    async def stop(self, timeout_s: float) -> None:
        """A worker's stop: let the fan-outs in progress finish within `timeout_s`, then
        cancel the rest (their requests stay in Redis: the shards' next owners do them)."""
        try:
            await asyncio.wait_for(self.idle(), timeout_s)
        except TimeoutError:
            for task in list(self._running.values()):
                task.cancel()
            await asyncio.gather(*list(self._running.values()), return_exceptions=True)

    async def fan_out(
        self, pool_id: str, version: int, shards: Collection[int] | None = None
    ) -> int:
        """Evaluate the members that live in `shards` (None: all) with the pool's current
        view (level-triggered: a member evaluated twice with one view decides nothing twice)
        and record each shard's part done; the request for `version` is forgotten once
        every shard's part is. Each worker does the part in the shards it owns, so a big
        pool stops as fast as the workers together evaluate cards, not one of them.

        Several passes may run on one pool at once (workers, a rebalance, a definition). A
        pass whose view a newer decision replaced stops at its next slice, and any pass
        that ends with a view no longer the pool's asks for a fan-out again: a member it
        decided with the old view, perhaps after the newer decision's own fan-out did, is
        then evaluated once more with the latest one."""
        record = (await self.store.pool_load([pool_id]))[pool_id]
        if record.definition is None:
            await self.store.pool_fanout_done(pool_id, version)
            return 0
        seen = max(version, record.version)  # the view below is this version's
        v = pools.view(record.definition, record.state, self.cards.clock())
        progress = await self.store.pool_fanout_progress(pool_id)
        todo = [
            s
            for s in (range(self.store.shards) if shards is None else shards)
            if progress.get(s, 0) < seen
        ]
        gate = asyncio.Semaphore(FAN_OUT_SHARDS)

        async def one(shard: int) -> int:
            async with gate:
                members = await self.store.pool_members(pool_id, shard)
                for i in range(0, len(members), FAN_OUT_SLICE):
                    if not await self._current(pool_id, v):
                        raise _StaleViewError(pool_id)
                    await self.cards.evaluate(members[i : i + FAN_OUT_SLICE], pool=v)
                    self.on_slice()
                await self.store.pool_fanout_mark(pool_id, shard, seen)
                return len(members)

        results = await asyncio.gather(*(one(s) for s in sorted(todo)), return_exceptions=True)
        if not await self._current(pool_id, v):
            await self._ask_again(pool_id)
        errors = [
            r
            for r in results
            if isinstance(r, BaseException) and not isinstance(r, _StaleViewError)
        ]
        if errors:
            raise errors[0]
        progress = await self.store.pool_fanout_progress(pool_id)
        complete = all(progress.get(s, 0) >= version for s in range(self.store.shards))
        if complete and await self.store.pool_fanout_done(pool_id, version):
            self.metrics.pool_fanouts.inc()
        return sum(r for r in results if isinstance(r, int))

    async def _current(self, pool_id: str, v: PoolView) -> bool:
        """Whether `v` is still the view the pool's members should be evaluated with."""
        record = (await self.store.pool_load([pool_id]))[pool_id]
        if record.definition is None:
            return False
        return pools.view(record.definition, record.state, self.cards.clock()) == v

    async def _ask_again(self, pool_id: str) -> None:
        """A new fan-out request with the pool's latest state (every worker's poll does its
        part of it, this one's included)."""
        for _ in range(MAX_CAS_ATTEMPTS):
            record = (await self.store.pool_load([pool_id]))[pool_id]
            if await self.store.pool_commit(record, record.state, [], fan_out=True) != CONFLICT:
                log.info("pool %s: its view changed during a fan-out; asked again", pool_id)
                return
        raise RuntimeError(f"pool {pool_id}: too many concurrent writers")

    async def resume(self, owned: Callable[[], Collection[int]] | None = None) -> int:
        """Start this worker's part of every fan-out requested (all shards' requests, one
        round trip), in the background: the deciding worker started its own part at once;
        the others, and a part a dead worker left, are picked up here (a timer, every
        `pool_fanout_poll_s`; it does not wait, so one big pool does not hold up another's
        stop). Returns how many it started; `idle()` waits for them."""
        if owned is not None:
            self.owned = owned
        started = [
            task
            for pool_id, version in await self.store.pool_fanout_requests()
            if (task := self._start(pool_id, version)) is not None
        ]
        return len(started)

    async def view_of(self, pool_id: str) -> tuple[Pool | None, PoolView | None]:
        """A pool's definition and the view a joining member is evaluated with."""
        record = (await self.store.pool_load([pool_id]))[pool_id]
        if record.definition is None:
            return None, None
        return record.definition, pools.view(record.definition, record.state, self.cards.clock())
