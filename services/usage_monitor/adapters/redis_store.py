"""Card state, usage counters and the outbox in Redis, through the Lua scripts in ``lua/``.

Each script call touches the keys of one shard only (see ``keys.py``), so the same code runs
on a single Redis and on Redis Cluster. redis-py's ``Script`` reloads a script that a Redis
restart dropped (NOSCRIPT); inside a cluster pipeline ``run_pipeline`` does that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, cast

import orjson
from redis.commands.core import AsyncScript

from simwatch_runtime import lua
from simwatch_runtime.redis_client import AnyRedis, queue_script, run_pipeline, run_script_calls

from ..domain.pools import TOP_MEMBERS, Pool, PoolState
from ..ports import (
    CommitRequest,
    CustomerDebt,
    IngestResult,
    IngestRow,
    OutboxEntry,
    PoolRecord,
    Snapshot,
)
from . import dedupe
from .codec import (
    Template,
    decode_pool,
    decode_pool_state,
    decode_state,
    encode_pending,
    encode_pool,
    encode_pool_state,
    encode_state,
    pool_of,
    template_of,
)
from .keys import Keys

PACKAGE = "usage_monitor.adapters"
DEFAULT_DEDUPE_BUCKETS = 256
DEFAULT_HISTORY_LENGTH = 20
POOL_TOP_KEPT = TOP_MEMBERS
"""A pool's biggest members each shard keeps per cycle: the pool's top five are among the
union of every shard's top five (a member's score is its whole usage in the cycle)."""
"""Where the Lua scripts of this adapter live (``lua/*.lua``)."""


class RedisStore:
    """The `CardStore` port on Redis (single server or Cluster)."""

    def __init__(
        self,
        redis: AnyRedis,
        keys: Keys,
        *,
        record_ttl_s: int,
        event_ttl_s: int,
        dedupe_buckets: int = DEFAULT_DEDUPE_BUCKETS,
        history_length: int = DEFAULT_HISTORY_LENGTH,
        entry_per_decision: bool = True,
    ) -> None:
        self.redis = redis
        self.entry_per_decision = entry_per_decision
        """A card decision's messages in one outbox entry (else one entry each)."""
        self.keys = keys
        self.record_ttl_s = record_ttl_s
        self.dedupe_buckets = dedupe_buckets
        self.history_length = history_length
        self.event_ttl_s = event_ttl_s
        self._ingest: AsyncScript = lua.register(redis, PACKAGE, "ingest.lua")
        self._commit: AsyncScript = lua.register(redis, PACKAGE, "commit.lua")
        self._load: AsyncScript = lua.register(redis, PACKAGE, "load.lua")
        self._release: AsyncScript = lua.register(redis, PACKAGE, "release_outbox.lua")
        self._customer: AsyncScript = lua.register(redis, PACKAGE, "customer.lua")
        self._pool_commit: AsyncScript = lua.register(redis, PACKAGE, "pool_commit.lua")
        self._pool_done: AsyncScript = lua.register(redis, PACKAGE, "pool_fanout_done.lua")
        self._pool_mark: AsyncScript = lua.register(redis, PACKAGE, "pool_fanout_mark.lua")
        # Templates are immutable (named by their content), so a cache never goes stale.
        self._templates: dict[str, Template] = {}
        # XRANGE replies stay as the server sends them, [id, [field, value, ...]] per entry:
        # the outbox is the only stream this client reads, and redis-py's own callback (a
        # dict per entry, built in Python) cost a drain more than the read itself. Reading
        # through a script instead (the way before) spent ~20 us of Redis's thread per pool
        # member stopped, converting the reply to Lua tables and back (XRANGE itself: ~1 us).
        redis.set_response_callback("XRANGE", _as_sent)

    @property
    def shards(self) -> int:
        return self.keys.shards

    def shard(self, iccid: str) -> int:
        return self.keys.shard(iccid)

    async def ingest(self, shard: int, rows: Sequence[IngestRow]) -> IngestResult:
        """Count a batch of one shard's records once each; see ``lua/ingest.lua``."""
        return (await self.ingest_many({shard: rows}))[shard]

    async def ingest_many(
        self, batches: Mapping[int, Sequence[IngestRow]]
    ) -> dict[int, IngestResult]:
        """As `ingest` for each shard's batch: one script call per shard, all of them in one
        pipeline (one round trip)."""
        shards = list(batches)
        calls = [
            ([self.keys.outbox(shard)], self._ingest_args(shard, batches[shard]))
            for shard in shards
        ]
        replies = await run_script_calls(self.redis, self._ingest, calls)
        return {shard: _ingest_result(reply) for shard, reply in zip(shards, replies, strict=True)}

    def _ingest_args(self, shard: int, rows: Sequence[IngestRow]) -> list[str | int | bytes]:
        days: dict[str, int] = {}
        cycles: dict[date, str] = {}
        flat: list[str | int] = []
        buckets, digest, bucket = self.dedupe_buckets, dedupe.digest, dedupe.bucket
        for r in rows:
            # A batch has one or two days and cycles: each named once, not per record.
            day = days.get(r.day) or days.setdefault(r.day, len(days) + 1)
            cycle = cycles.get(r.cycle) or cycles.setdefault(r.cycle, r.cycle.isoformat())
            value = digest(r.record_id) if r.digest is None else r.digest
            flat += (day, bucket(value, buckets), str(value), r.iccid, r.calendar)
            flat += (cycle, r.nbytes, int(r.late))
        expiry = [x for d in days for x in (d, dedupe.expires_at(d, self.record_ttl_s))]
        return [
            self.keys.card_prefix(shard),
            self.keys.dedupe_prefix(shard),
            orjson.dumps(expiry),
            orjson.dumps(flat),
            self.keys.tag(shard),
            POOL_TOP_KEPT,
        ]

    async def load(self, iccids: Iterable[str]) -> dict[str, Snapshot]:
        """Read cards (state, version and usage counters) in one round trip: one
        ``lua/load.lua`` call per shard, its reply one JSON document."""
        by_shard: dict[int, list[str]] = {}
        for iccid in dict.fromkeys(iccids):
            by_shard.setdefault(self.keys.shard(iccid), []).append(iccid)

        def queue(pipe: Any) -> None:
            for shard, cards in by_shard.items():
                args = [self.keys.card_prefix(shard), self.keys.pending_prefix(shard), *cards]
                queue_script(pipe, self._load, [self.keys.outbox(shard)], args)

        replies = await run_pipeline(self.redis, queue, [self._load])
        rows: dict[str, dict[str, str]] = {}
        for cards, reply in zip(by_shard.values(), replies, strict=True):
            for iccid, flat in zip(cards, orjson.loads(reply), strict=True):
                rows[iccid] = dict(zip(flat[::2], flat[1::2], strict=True)) if flat else {}
        await self._resolve_templates(template_of(row.get("s")) for row in rows.values())
        return {iccid: _snapshot(iccid, row, self._templates) for iccid, row in rows.items()}

    async def _resolve_templates(self, fingerprints: Iterable[str | None]) -> None:
        missing = list({fp for fp in fingerprints if fp and fp not in self._templates})
        if not missing:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for fp in missing:
                pipe.get(self.keys.template(fp))
            raws = await pipe.execute()
        for fp, raw in zip(missing, raws, strict=True):
            if raw is None:
                raise LookupError(f"profile template {fp} is missing from Redis")
            self._templates[fp] = Template.decode(raw)

    async def _store_template(self, template: Template) -> None:
        fp = template.fingerprint
        if fp not in self._templates:
            # Before the card refers to it; NX: written once, never changed.
            await self.redis.set(self.keys.template(fp), template.encode(), nx=True)
            self._templates[fp] = template

    async def commit(self, request: CommitRequest) -> int:
        """Write a decision if the card is still at `request.snap.version`.

        Returns the new version, ``CONFLICT`` when someone else wrote the card first (read
        again and decide again), or ``DUPLICATE_EVENT`` when the event was applied before.
        """
        return (await self.commit_many([request]))[0]

    async def commit_many(self, requests: Sequence[CommitRequest]) -> list[int]:
        """`commit` for many cards in one round trip: one ``lua/commit.lua`` call per shard
        with the shard's commits as one JSON argument (each card's commit stays atomic)."""
        by_shard: dict[int, list[int]] = {}
        rows: list[list[Any]] = []
        for n, request in enumerate(requests):
            state_json, template = encode_state(request.state)
            if template is not None:
                await self._store_template(template)
            rows.append(_commit_row(request, state_json))
            by_shard.setdefault(self.keys.shard(request.state.iccid), []).append(n)

        def queue(pipe: Any) -> None:
            for shard, members in by_shard.items():
                keys = [self.keys.outbox(shard), self.keys.due(shard), self.keys.stats(shard)]
                args = [
                    self.keys.card_prefix(shard),
                    self.keys.event_prefix(shard),
                    self.event_ttl_s,
                    self.keys.history_prefix(shard),
                    self.history_length,
                    self.keys.pending_prefix(shard),
                    orjson.dumps([rows[n] for n in members]),
                    self.keys.tag(shard),
                    "1" if self.entry_per_decision else "0",
                ]
                queue_script(pipe, self._commit, keys, args)

        # A retry after NOSCRIPT (cluster) returns CONFLICT or DUPLICATE_EVENT for the
        # commits that already ran: callers read those cards again and decide nothing new.
        replies = await run_pipeline(self.redis, queue, [self._commit])
        results = [0] * len(requests)
        for members, reply in zip(by_shard.values(), replies, strict=True):
            for n, version in zip(members, reply, strict=True):
                results[n] = int(version)
        return results

    async def history(self, iccid: str) -> list[str]:
        """The card's most recent decisions, newest first (see `service_layer.history`)."""
        raw = cast(list[bytes], await self.redis.lrange(self.keys.history(iccid), 0, -1))
        return [r.decode() for r in raw]

    async def suspended_cards(self) -> int:
        """Cards suspended right now, over every shard."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in range(self.keys.shards):
                pipe.hget(self.keys.stats(shard), "suspended")
            values = await pipe.execute()
        return sum(int(v or 0) for v in values)

    async def counts(self, names: Sequence[str]) -> dict[str, int]:
        """The fleet's counts kept per shard in the statistics hashes, summed."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in range(self.keys.shards):
                pipe.hmget(self.keys.stats(shard), list(names))
            rows = await pipe.execute()
        return {n: sum(int(row[i] or 0) for row in rows) for i, n in enumerate(names)}

    async def pool_load(self, pool_ids: Iterable[str]) -> dict[str, PoolRecord]:
        ids = list(dict.fromkeys(pool_ids))
        async with self.redis.pipeline(transaction=False) as pipe:
            for pool_id in ids:
                pipe.hmget(self.keys.pool(pool_id), ["d", "s", "v"])
            rows = await pipe.execute()
        return {
            pool_id: PoolRecord(
                pool_id,
                decode_pool(d) if d else None,
                decode_pool_state(st),
                int(v or 0),
            )
            for pool_id, (d, st, v) in zip(ids, rows, strict=True)
        }

    async def pool_define(self, pool: Pool) -> None:
        await self.redis.hset(self.keys.pool(pool.pool_id), "d", encode_pool(pool))

    async def pool_used(self, pools: Sequence[tuple[str, date]]) -> dict[tuple[str, date], int]:
        """One HMGET per shard and cycle for every pool asked about (``lua/ingest.lua``
        keeps every pool's count of a shard and cycle in one hash)."""
        by_cycle: dict[date, list[str]] = {}
        for pool_id, cycle in dict.fromkeys(pools):
            by_cycle.setdefault(cycle, []).append(pool_id)
        queries = [(cycle, shard) for cycle in by_cycle for shard in range(self.keys.shards)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for cycle, shard in queries:
                pipe.hmget(self.keys.pool_usage(shard, cycle.isoformat()), by_cycle[cycle])
            replies = await pipe.execute()
        out: dict[tuple[str, date], int] = dict.fromkeys(pools, 0)
        for (cycle, _), counts in zip(queries, replies, strict=True):
            for pool_id, count in zip(by_cycle[cycle], counts, strict=True):
                out[(pool_id, cycle)] += int(count or 0)
        return out

    async def pool_top(self, pool_id: str, cycle: date, n: int) -> list[tuple[str, int]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in range(self.keys.shards):
                key = self.keys.pool_top(shard, pool_id, cycle.isoformat())
                pipe.zrevrange(key, 0, n - 1, withscores=True)
            replies = await pipe.execute()
        merged = [(m.decode(), int(score)) for reply in replies for m, score in reply]
        return sorted(merged, key=lambda x: (-x[1], x[0]))[:n]

    async def pool_commit(
        self,
        record: PoolRecord,
        state: PoolState,
        messages: Sequence[tuple[str, bytes, bytes]],
        fan_out: bool,
    ) -> int:
        shard = self.keys.shard(record.pool_id)
        flat: list[str] = []
        for topic, key, value in messages:
            flat += (topic, key.decode(), value.decode())
        return int(
            await self._pool_commit(
                keys=[
                    self.keys.outbox(shard),
                    self.keys.pool(record.pool_id),
                    self.keys.pool_fanout(shard),
                ],
                args=[
                    record.pool_id,
                    record.version,
                    encode_pool_state(state),
                    "1" if fan_out else "0",
                    orjson.dumps(flat),
                ],
            )
        )

    async def pool_members(self, pool_id: str, shard: int) -> list[str]:
        raw = cast(set[bytes], await self.redis.smembers(self.keys.pool_members(shard, pool_id)))
        return sorted(m.decode() for m in raw)

    async def pool_member_count(self, pool_id: str) -> int:
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in range(self.keys.shards):
                pipe.scard(self.keys.pool_members(shard, pool_id))
            counts = await pipe.execute()
        return sum(int(n) for n in counts)

    async def pool_fanout_done(self, pool_id: str, version: int) -> bool:
        shard = self.keys.shard(pool_id)
        keys = [self.keys.pool_fanout(shard)]
        return bool(await self._pool_done(keys=keys, args=[pool_id, version]))

    async def pool_fanout_requests(self) -> list[tuple[str, int]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in range(self.keys.shards):
                pipe.zrange(self.keys.pool_fanout(shard), 0, 999, withscores=True)
            replies = await pipe.execute()
        return [(m.decode(), int(score)) for raw in replies for m, score in raw]

    async def pool_fanout_progress(self, pool_id: str) -> dict[int, int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in range(self.keys.shards):
                pipe.hget(self.keys.pool_fanout_progress(shard), pool_id)
            replies = await pipe.execute()
        return {shard: int(v or 0) for shard, v in enumerate(replies)}

    async def pool_fanout_mark(self, pool_id: str, shard: int, version: int) -> None:
        keys = [self.keys.pool_fanout_progress(shard)]
        await self._pool_mark(keys=keys, args=[pool_id, version])

    async def due_cards(self, shard: int, until: datetime, limit: int) -> list[str]:
        """Cards of `shard` due at or before `until`, earliest first (O(log N + limit))."""
        ids = cast(
            list[bytes],
            await self.redis.zrangebyscore(
                self.keys.due(shard), "-inf", until.timestamp(), start=0, num=limit
            ),
        )
        return [i.decode() for i in ids]

    async def outbox_claim(
        self, shard: int, token: str, lock_ms: int, count: int
    ) -> list[OutboxEntry] | None:
        """The lock and the first read in one pipeline (the read is dropped when the lock
        is someone else's: a small waste, against a round trip on every drain)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self.keys.outbox_lock(shard), token, nx=True, px=lock_ms)
            pipe.execute_command("XRANGE", self.keys.outbox(shard), "-", "+", "COUNT", count)
            taken, rows = await pipe.execute()
        return _entries(rows) if taken else None

    async def outbox_settle(
        self, shard: int, token: str, lock_ms: int, published: Sequence[bytes], count: int
    ) -> list[OutboxEntry] | None:
        """Delete, release-or-extend (``lua/release_outbox.lua``) and read on, pipelined.
        Deleting is right even when the lock was lost: those entries were published."""
        outbox = self.keys.outbox(shard)
        keys = [self.keys.outbox_lock(shard), outbox]

        def queue(pipe: Any) -> None:
            if published:
                pipe.xdel(outbox, *dict.fromkeys(published))
            queue_script(pipe, self._release, keys, [token, lock_ms])
            pipe.execute_command("XRANGE", outbox, "-", "+", "COUNT", count)

        while True:
            *_, released, rows = await run_pipeline(self.redis, queue, [self._release])
            if int(released) < 0:
                return None
            if int(released) == 1:
                return []
            entries = _entries(rows)
            if entries:
                return entries
            # Held and extended, yet nothing read: only a writer outside the lock protocol
            # could empty it between the two; go round again rather than keep the lock.
            published = ()

    async def outbox_read(self, shard: int, count: int) -> list[OutboxEntry]:
        """The messages of the oldest `count` entries of a shard's outbox, in order. An
        entry holds one card commit's messages (``commit.lua``) or one message
        (``pool_commit.lua``, and every entry written before 2026-11-29): fields t, k, v per
        message, always in that order. The messages of one entry share its id."""
        return _entries(
            await self.redis.execute_command(
                "XRANGE", self.keys.outbox(shard), "-", "+", "COUNT", count
            )
        )

    async def customer_apply(self, customer_id: str, entries: Sequence[object]) -> CustomerDebt:
        """Apply blacklist entries (see ``lua/customer.lua``); returns the customer's debt."""
        raw = await self._customer(
            keys=[self.keys.customer(customer_id)], args=[orjson.dumps(list(entries))]
        )
        return CustomerDebt(int(raw[0]), tuple(i.decode() for i in raw[1:]))

    async def customer_debt(self, customer_id: str) -> CustomerDebt:
        """What a customer owes from cards cancelled for debt, and the cards held for it."""
        return await self.customer_apply(customer_id, [])

    async def customer_debts(self, customer_ids: Iterable[str]) -> dict[str, CustomerDebt]:
        """`customer_debt` of many customers in one round trip (a batch of new cards)."""
        ids = list(dict.fromkeys(customer_ids))
        if not ids:
            return {}

        def queue(pipe: Any) -> None:
            for customer in ids:
                queue_script(pipe, self._customer, [self.keys.customer(customer)], [b"[]"])

        replies = await run_pipeline(self.redis, queue, [self._customer])
        return {
            customer: CustomerDebt(int(raw[0]), tuple(i.decode() for i in raw[1:]))
            for customer, raw in zip(ids, replies, strict=True)
        }

    async def customer_view(self, customer_id: str) -> dict[bytes, bytes]:
        return cast(dict[bytes, bytes], await self.redis.hgetall(self.keys.customer(customer_id)))

    async def outbox_depth(self, shards: Iterable[int]) -> dict[int, int]:
        ids = list(shards)
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in ids:
                pipe.xlen(self.keys.outbox(shard))
            lengths = await pipe.execute()
        return dict(zip(ids, (int(n) for n in lengths), strict=True))


def _entries(rows: list[tuple[bytes, list[bytes]]]) -> list[OutboxEntry]:
    """Outbox messages from an XRANGE reply as the server sent it (see `_as_sent`)."""
    return [
        OutboxEntry(eid, fields[i + 1].decode(), fields[i + 3], fields[i + 5])
        for eid, fields in rows
        for i in range(0, len(fields), 6)
    ]


def _as_sent(response: Any, **_: Any) -> Any:
    """A response callback that leaves the reply as the server sent it."""
    return response


def _snapshot(iccid: str, row: dict[str, str], templates: dict[str, Template]) -> Snapshot:
    usage = {date.fromisoformat(k[2:]): int(v) for k, v in row.items() if k.startswith("u:")}
    return Snapshot(
        version=int(row.get("v", "0")),
        state=decode_state(iccid, row.get("s"), templates, row.get("pd")),
        usage=usage,
        calendar=row.get("cal", ""),
    )


def _commit_row(r: CommitRequest, state_json: bytes) -> list[Any]:
    """One card's entry in ``commit.lua``'s batch (see the script for the layout)."""
    fields: list[str] = []
    for cycle, level in r.wakes.items():
        fields += (f"w:{cycle.isoformat()}", str(level))
    messages: list[str] = []
    for topic, key, value in r.messages:
        messages += (topic, key.decode(), value.decode())
    return [
        r.state.iccid,
        r.snap.version,
        state_json.decode(),
        r.calendar,
        "1" if r.state.profile is not None else "0",
        fields,
        messages,
        [f"{p}:{c.isoformat()}" for c in r.drop_cycles for p in ("u", "w")],
        r.event_id or "",
        "" if r.due is None else f"{r.due.timestamp():.3f}",
        r.suspended_delta,
        list(r.history),
        _pending_op(r),
        [x for name, delta in r.counts.items() if delta for x in (name, delta)],
        _membership_op(r),
    ]


def _membership_op(r: CommitRequest) -> list[str] | int:
    """The card's pool membership change: 0 (none) or [old pool, new pool, cycle] ('' =
    none; the cycle whose usage joins the pool with a card's first profile)."""
    old, new = pool_of(r.snap.state), pool_of(r.state)
    if old == new:
        return 0
    first = r.snap.state.profile is None and r.state.cycle is not None
    cycle = r.state.cycle.isoformat() if first and r.state.cycle is not None else ""
    return [old or "", new or "", cycle]


def _pending_op(r: CommitRequest) -> str | int:
    """The tracked command's write: unchanged (0), deleted (''), or its new value."""
    if r.state.pending == r.snap.state.pending:
        return 0
    raw = encode_pending(r.state)
    return "" if raw is None else raw.decode()


def _ingest_result(reply: Any) -> IngestResult:
    """``ingest.lua``'s reply: {applied, duplicates, due, recalendar, unknown, late, pools}."""
    applied, dups, due, recal, unknown, late, pools = reply
    result = IngestResult(int(applied), int(dups), unknown=int(unknown), late=int(late))
    for i in range(0, len(due), 3):
        result.due.append(
            (due[i].decode(), date.fromisoformat(due[i + 1].decode()), int(due[i + 2]))
        )
    for i in range(0, len(recal), 2):
        result.recalendar.append((int(recal[i]) - 1, recal[i + 1].decode()))
    for i in range(0, len(pools), 2):
        result.pools.append((pools[i].decode(), date.fromisoformat(pools[i + 1].decode())))
    return result
