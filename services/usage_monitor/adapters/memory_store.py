"""The `CardStore` port in memory: the same answers as ``redis_store.py`` and its Lua scripts,
for unit tests of the service layer. ``tests/integration/test_redis_store.py`` runs one
contract suite over this store, a single Redis and a Redis Cluster, so the two agree.

Not for production: nothing is shared between processes, and de-duplication keys never
expire (the TTLs only matter after days).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any, cast

from ..domain.card import CardState
from ..domain.pools import Pool, PoolState
from ..ports import (
    CONFLICT,
    DUPLICATE_EVENT,
    CommitRequest,
    CustomerDebt,
    IngestResult,
    IngestRow,
    OutboxEntry,
    PoolRecord,
    Snapshot,
)
from .codec import pool_of
from .keys import Keys


@dataclass(slots=True)
class _Card:
    """What the card's Redis hash holds (see ``keys.py``)."""

    version: int = 0
    state: CardState | None = None
    calendar: str = ""
    known: bool = False
    usage: dict[date, int] = field(default_factory=dict)
    wakes: dict[date, int] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)  # the history list, newest first


@dataclass(slots=True)
class _Shard:
    outbox: dict[bytes, list[tuple[str, bytes, bytes]]] = field(default_factory=dict)
    """Entries in order: one card commit's messages each (as ``commit.lua``)."""
    due: dict[str, float] = field(default_factory=dict)
    suspended: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    lock: tuple[str, float] | None = None  # holder token, expiry (monotonic seconds)
    records: set[tuple[str, str]] = field(default_factory=set)  # (event day, record id)
    events: set[str] = field(default_factory=set)


class MemoryStore:
    """A `CardStore` in one process's memory, sharded like the Redis store."""

    def __init__(
        self,
        keys: Keys,
        monotonic: Callable[[], float] = time.monotonic,
        history_length: int = 20,
    ) -> None:
        self.keys = keys
        self.history_length = history_length
        self._monotonic = monotonic
        self._cards: dict[str, _Card] = {}
        self._shards = [_Shard() for _ in range(keys.shards)]
        self._customers: dict[str, dict[str, str]] = {}
        self._entry_ids = itertools.count(1)
        self._pools: dict[str, PoolRecord] = {}
        self._pool_used: dict[tuple[str, date], int] = {}
        self._pool_top: dict[tuple[str, date], dict[str, int]] = {}
        self._pool_fanout: dict[str, int] = {}
        self._pool_progress: dict[tuple[str, int], int] = {}

    @property
    def shards(self) -> int:
        return self.keys.shards

    def shard(self, iccid: str) -> int:
        return self.keys.shard(iccid)

    async def ingest(self, shard: int, rows: Sequence[IngestRow]) -> IngestResult:
        """As ``lua/ingest.lua``."""
        result = IngestResult()
        seen = self._shards[shard].records
        calendars: dict[str, str] = {}
        touched: dict[tuple[str, date], None] = {}
        for n, row in enumerate(rows):
            card = self._cards.get(row.iccid)
            actual = calendars.setdefault(row.iccid, card.calendar if card else "")
            if actual != row.calendar:
                result.recalendar.append((n, actual))
                continue
            if (row.day, row.record_id) in seen:
                result.duplicates += 1
                # Its pool is reported as touched all the same: a batch run again after a
                # partial failure must still have its pools settled.
                pool = pool_of(card.state) if card is not None and card.state is not None else None
                if pool is not None and (pool, row.cycle) not in result.pools:
                    result.pools.append((pool, row.cycle))
            else:
                seen.add((row.day, row.record_id))
                card = self._cards.setdefault(row.iccid, _Card())
                card.usage[row.cycle] = card.usage.get(row.cycle, 0) + row.nbytes
                pool = pool_of(card.state) if card.state is not None else None
                if pool is not None:
                    key = (pool, row.cycle)
                    self._pool_used[key] = self._pool_used.get(key, 0) + row.nbytes
                    self._pool_top.setdefault(key, {})[row.iccid] = card.usage[row.cycle]
                    if key not in result.pools:
                        result.pools.append(key)
                if not card.known:
                    result.unknown += 1
                elif row.late:
                    result.late += 1
                else:
                    result.applied += 1
            touched[(row.iccid, row.cycle)] = None
        for iccid, cycle in touched:
            card = self._cards.get(iccid, _Card())
            used, wake = card.usage.get(cycle, 0), card.wakes.get(cycle)
            if wake is None or 0 <= wake <= used:
                result.due.append((iccid, cycle, used))
        return result

    async def ingest_many(
        self, batches: Mapping[int, Sequence[IngestRow]]
    ) -> dict[int, IngestResult]:
        return {shard: await self.ingest(shard, rows) for shard, rows in batches.items()}

    async def load(self, iccids: Iterable[str]) -> dict[str, Snapshot]:
        out = {}
        for iccid in dict.fromkeys(iccids):
            card = self._cards.get(iccid, _Card())
            state = card.state if card.state is not None else CardState(iccid)
            out[iccid] = Snapshot(card.version, state, dict(card.usage), card.calendar)
        return out

    async def commit(self, request: CommitRequest) -> int:
        """As ``lua/commit.lua``."""
        iccid = request.state.iccid
        shard = self._shards[self.shard(iccid)]
        if request.event_id is not None and request.event_id in shard.events:
            return DUPLICATE_EVENT
        card = self._cards.get(iccid, _Card())
        if card.version != request.snap.version:
            return CONFLICT
        self._cards[iccid] = card
        card.version += 1
        before, card.state = card.state, request.state
        pool = pool_of(request.state)
        if pool is not None and (before is None or before.profile is None) and request.state.cycle:
            # As commit.lua: the usage of a card's first cycle joins its pool with its profile.
            joined = (pool, request.state.cycle)
            used = card.usage.get(request.state.cycle, 0)
            if used:
                self._pool_used[joined] = self._pool_used.get(joined, 0) + used
                self._pool_top.setdefault(joined, {})[iccid] = used
        card.calendar = request.calendar
        card.known = request.state.profile is not None
        card.wakes.update(request.wakes)
        if request.messages:
            shard.outbox[self._entry_id()] = list(request.messages)
        for cycle in request.drop_cycles:
            card.usage.pop(cycle, None)
            card.wakes.pop(cycle, None)
        if request.event_id is not None:
            shard.events.add(request.event_id)
        shard.suspended += request.suspended_delta
        for name, delta in request.counts.items():
            shard.counts[name] = shard.counts.get(name, 0) + delta
        if request.history:
            kept = [*reversed(request.history), *card.history]
            card.history = kept[: self.history_length]
        if request.due is None:
            shard.due.pop(iccid, None)
        else:
            shard.due[iccid] = float(f"{request.due.timestamp():.3f}")  # the score commit.lua gets
        return card.version

    async def commit_many(self, requests: Sequence[CommitRequest]) -> list[int]:
        return [await self.commit(r) for r in requests]

    async def due_cards(self, shard: int, until: datetime, limit: int) -> list[str]:
        due = self._shards[shard].due
        ready = sorted((at, iccid) for iccid, at in due.items() if at <= until.timestamp())
        return [iccid for _, iccid in ready[:limit]]

    async def pool_load(self, pool_ids: Iterable[str]) -> dict[str, PoolRecord]:
        return {p: self._pools.get(p, PoolRecord(p, None, PoolState())) for p in pool_ids}

    async def pool_define(self, pool: Pool) -> None:
        old = self._pools.get(pool.pool_id, PoolRecord(pool.pool_id, None, PoolState()))
        self._pools[pool.pool_id] = replace(old, definition=pool)

    async def pool_used(self, pools: Sequence[tuple[str, date]]) -> dict[tuple[str, date], int]:
        return {key: self._pool_used.get(key, 0) for key in pools}

    async def pool_top(self, pool_id: str, cycle: date, n: int) -> list[tuple[str, int]]:
        members = self._pool_top.get((pool_id, cycle), {})
        return sorted(members.items(), key=lambda x: (-x[1], x[0]))[:n]

    async def pool_commit(
        self,
        record: PoolRecord,
        state: PoolState,
        messages: Sequence[tuple[str, bytes, bytes]],
        fan_out: bool,
    ) -> int:
        old = self._pools.get(record.pool_id, PoolRecord(record.pool_id, None, PoolState()))
        if old.version != record.version:
            return CONFLICT
        version = old.version + 1
        self._pools[record.pool_id] = replace(old, state=state, version=version)
        shard = self._shards[self.shard(record.pool_id)]
        for message in messages:  # one entry per message, as ``pool_commit.lua``
            shard.outbox[self._entry_id()] = [message]
        if fan_out:
            self._pool_fanout[record.pool_id] = version
        return version

    async def pool_members(self, pool_id: str, shard: int) -> list[str]:
        return sorted(
            iccid
            for iccid, card in self._cards.items()
            if card.state is not None
            and pool_of(card.state) == pool_id
            and self.shard(iccid) == shard
        )

    async def pool_member_count(self, pool_id: str) -> int:
        return sum([len(await self.pool_members(pool_id, s)) for s in range(self.keys.shards)])

    async def pool_fanout_done(self, pool_id: str, version: int) -> bool:
        if self._pool_fanout.get(pool_id, version + 1) <= version:
            del self._pool_fanout[pool_id]
            return True
        return False

    async def pool_fanout_requests(self) -> list[tuple[str, int]]:
        return list(self._pool_fanout.items())

    async def pool_fanout_progress(self, pool_id: str) -> dict[int, int]:
        return {s: self._pool_progress.get((pool_id, s), 0) for s in range(self.keys.shards)}

    async def pool_fanout_mark(self, pool_id: str, shard: int, version: int) -> None:
        key = (pool_id, shard)
        self._pool_progress[key] = max(version, self._pool_progress.get(key, 0))

    async def history(self, iccid: str) -> list[str]:
        card = self._cards.get(iccid)
        return list(card.history) if card else []

    async def suspended_cards(self) -> int:
        return sum(s.suspended for s in self._shards)

    async def counts(self, names: Sequence[str]) -> dict[str, int]:
        return {n: sum(s.counts.get(n, 0) for s in self._shards) for n in names}

    async def outbox_claim(
        self, shard: int, token: str, lock_ms: int, count: int
    ) -> list[OutboxEntry] | None:
        s = self._shards[shard]
        if self._locked(s):
            return None
        s.lock = (token, self._monotonic() + lock_ms / 1000)
        return await self.outbox_read(shard, count)

    async def outbox_settle(
        self, shard: int, token: str, lock_ms: int, published: Sequence[bytes], count: int
    ) -> list[OutboxEntry] | None:
        """As `RedisStore.outbox_settle` (``lua/release_outbox.lua`` in the middle)."""
        s = self._shards[shard]
        for eid in published:
            s.outbox.pop(eid, None)
        if not self._locked(s) or s.lock is None or s.lock[0] != token:
            return None
        if not s.outbox:
            s.lock = None
            return []
        s.lock = (token, self._monotonic() + lock_ms / 1000)
        return await self.outbox_read(shard, count)

    async def outbox_read(self, shard: int, count: int) -> list[OutboxEntry]:
        entries = itertools.islice(self._shards[shard].outbox.items(), count)
        return [OutboxEntry(eid, *message) for eid, messages in entries for message in messages]

    async def outbox_depth(self, shards: Iterable[int]) -> dict[int, int]:
        return {shard: len(self._shards[shard].outbox) for shard in shards}

    async def customer_apply(self, customer_id: str, entries: Sequence[object]) -> CustomerDebt:
        """As ``lua/customer.lua``."""
        h = self._customers.setdefault(customer_id, {})
        for entry in entries:
            _apply_entry(h, entry)
        if not h:  # like Redis, an empty hash does not exist
            del self._customers[customer_id]
        debt, held = 0, []
        for name, value in h.items():
            if name.startswith("c:"):
                debt += int(value.split(":")[1])
            elif name.startswith("p:"):
                debt -= int(value)
            elif name.startswith("h:"):
                held.append(name[2:])
        return CustomerDebt(max(debt, 0), tuple(held))

    async def customer_debt(self, customer_id: str) -> CustomerDebt:
        return await self.customer_apply(customer_id, [])

    async def customer_debts(self, customer_ids: Iterable[str]) -> dict[str, CustomerDebt]:
        return {c: await self.customer_apply(c, []) for c in dict.fromkeys(customer_ids)}

    async def customer_view(self, customer_id: str) -> dict[bytes, bytes]:
        h = self._customers.get(customer_id, {})
        return {k.encode(): v.encode() for k, v in h.items()}

    def _locked(self, s: _Shard) -> bool:
        if s.lock is not None and s.lock[1] <= self._monotonic():
            s.lock = None  # expired, as PX would
        return s.lock is not None

    def _entry_id(self) -> bytes:
        return f"0-{next(self._entry_ids)}".encode()


def _apply_entry(h: dict[str, str], entry: object) -> None:
    """One blacklist entry, as ``lua/customer.lua`` applies it (idempotent)."""
    e = cast(dict[str, Any], entry)
    # Lua tests presence (any value but nil is true), not Python truthiness.
    if "i" in e:
        name = f"c:{e['i']}"
        current = int(h[name].split(":")[0]) if name in h else -1
        if e["v"] > current:
            h[name] = f"{int(e['v'])}:{int(e['owed'])}"
    elif "pay" in e:
        h.setdefault(f"p:{e['pay']}", str(int(e["amount"])))
    elif "hold" in e:
        h[f"h:{e['hold']}"] = "1"
    elif "release" in e:
        h.pop(f"h:{e['release']}", None)
