"""Redis memory per card: a private redis-server, 100 000 cards written by the real commit
and ingest scripts, INFO memory before and after."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime

from redis.asyncio import Redis

from simwatch_contracts import parse_card_event
from usage_monitor.adapters import dedupe
from usage_monitor.adapters.keys import Keys
from usage_monitor.adapters.redis_store import DEFAULT_DEDUPE_BUCKETS, RedisStore
from usage_monitor.domain.audit import decisions_of
from usage_monitor.domain.card import CardState
from usage_monitor.domain.lifecycle import apply_event, evaluate
from usage_monitor.ports import CommitRequest, IngestRow
from usage_monitor.service_layer import history

from .dataset import iccid, profile, utc_now
from .private_redis import DEPLOYED_CONFIG, private_redis


async def _used(redis: Redis) -> int:
    """Redis's memory less its clients' buffers: a 5 000-record script argument leaves a
    query buffer behind for a while (5 B per id of 80 000), which is no id's cost."""
    info = await redis.info("memory")
    return int(info["used_memory"]) - int(info.get("mem_clients_normal", 0))


@dataclass(frozen=True)
class PerCard:
    card: float
    """Bytes per card: profile, state, one cycle's counter."""
    record_id: float
    """Bytes per remembered id with the buckets docs/operations.md sizes for the fleet."""
    buckets: int
    record_id_default: float
    """The same ids with the default buckets (sized for a fleet of ~65 000 cards)."""


async def per_card(
    cards: int = 100_000,
    shards: int = 12,
    records_per_card: int = 4,
    extra_config: tuple[str, ...] = DEPLOYED_CONFIG,
) -> PerCard:
    """A private redis-server's memory for `cards` cards, and for a day of their record ids
    (`records_per_card` each) remembered with the sizing rule's buckets and the default."""
    async with private_redis(extra_config) as redis:
        keys = Keys("sw", shards)
        store = RedisStore(redis, keys, record_ttl_s=86400, event_ttl_s=86400)
        before = await _used(redis)
        now = utc_now()
        ids = [iccid(i) for i in range(cards)]
        for start in range(0, cards, 2000):
            chunk = ids[start : start + 2000]
            snaps = await store.load(chunk)
            commits = []
            for card in chunk:
                event = parse_card_event(json.dumps(profile(card, now)))
                d = apply_event(CardState(card), event, {}, now)
                commits.append(CommitRequest(snaps[card], d.state, wakes=dict(d.wakes)))
                cycle = d.state.cycle
            await store.commit_many(commits)
        assert cycle is not None
        # One day of records first: it writes each card's counter (part of the card), then
        # its ids go, and what stays is the cards' own memory.
        await _remember(redis, store, keys, ids, cycle, records_per_card, "counters")
        await _forget_ids(redis, keys, shards)
        cards_only = await _used(redis)
        ids_kept = cards * records_per_card
        sized = dedupe.buckets_for(ids_kept, shards)
        per_id = {}
        for n, buckets in enumerate((sized, DEFAULT_DEDUPE_BUCKETS)):
            counted = RedisStore(
                redis, keys, record_ttl_s=86400, event_ttl_s=86400, dedupe_buckets=buckets
            )
            start = await _used(redis)
            # Zero bytes: the cards' counters stay as the first day left them (a counter
            # growing past a listpack integer size would be counted as the ids' memory).
            end = await _remember(
                redis, counted, keys, ids, cycle, records_per_card, f"p{n}", nbytes=0
            )
            per_id[buckets] = (end - start) / ids_kept
            await _forget_ids(redis, keys, shards)
        return PerCard(
            (cards_only - before) / cards, per_id[sized], sized, per_id[DEFAULT_DEDUPE_BUCKETS]
        )


async def _forget_ids(redis: Redis, keys: Keys, shards: int) -> None:
    for shard in range(shards):
        async for key in redis.scan_iter(match=f"{keys.dedupe_prefix(shard)}*", count=5000):
            await redis.unlink(key)
    await asyncio.sleep(0.5)  # lazy free of unlinked keys


async def _remember(
    redis: Redis,
    store: RedisStore,
    keys: Keys,
    ids: list[str],
    cycle: date,
    per_card: int,
    run: str,
    nbytes: int = 1000,
) -> int:
    """Count `per_card` records of each card (a day's ids); Redis's memory afterwards."""
    groups: dict[int, list[IngestRow]] = defaultdict(list)
    today = dedupe.window(datetime.now(UTC))
    for n, card in enumerate(ids):
        groups[keys.shard(card)] += [
            IngestRow(f"rec-{run}-{n:012d}-{k}", card, "", cycle, nbytes, day=today)
            for k in range(per_card)
        ]
    for shard, rows in groups.items():
        for i in range(0, len(rows), 5000):
            await store.ingest(shard, rows[i : i + 5000])
    return await _used(redis)


async def footprint(cards: int = 100_000, heavy: float = 0.02, shards: int = 12) -> float:
    """A card's whole footprint on average (state, counter, due time, decision history), for a
    fleet like the bench's: `heavy` of the cards crossed 80 %, 90 % and their quota and were
    suspended (five decisions in their history), the others decided nothing yet."""
    async with private_redis() as redis:
        keys = Keys("sw", shards)
        store = RedisStore(redis, keys, record_ttl_s=86400, event_ttl_s=86400)
        before = await _used(redis)
        now = utc_now()
        ids = [iccid(i) for i in range(cards)]
        every = max(1, round(1 / heavy)) if heavy else 0
        for start in range(0, cards, 2000):
            chunk = ids[start : start + 2000]
            snaps = await store.load(chunk)
            commits = []
            for n, card in enumerate(chunk, start):
                event = parse_card_event(json.dumps(profile(card, now)))
                d = apply_event(CardState(card), event, {}, now)
                lines: list[str] = []
                if every and n % every == 0:
                    assert d.state.cycle is not None
                    usage = {d.state.cycle: 10 * 2**30}  # far over any quota in the mix
                    d = evaluate(d.state, usage, now)
                    lines = [history.entry(x) for x in decisions_of(d, usage)]
                commits.append(
                    CommitRequest(
                        snaps[card], d.state, wakes=dict(d.wakes), due=d.due, history=lines
                    )
                )
            await store.commit_many(commits)
        return (await _used(redis) - before) / cards
