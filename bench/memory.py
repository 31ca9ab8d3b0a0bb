"""Redis memory per card: a private redis-server, 100 000 cards written by the real commit
and ingest scripts, INFO memory before and after."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from datetime import UTC, datetime

from redis.asyncio import Redis

from simwatch_contracts import parse_card_event
from usage_monitor.adapters import dedupe
from usage_monitor.adapters.keys import Keys
from usage_monitor.adapters.redis_store import RedisStore
from usage_monitor.domain.audit import decisions_of
from usage_monitor.domain.card import CardState
from usage_monitor.domain.lifecycle import apply_event, evaluate
from usage_monitor.ports import CommitRequest, IngestRow
from usage_monitor.service_layer import history

from .dataset import iccid, profile, utc_now
from .private_redis import DEPLOYED_CONFIG, private_redis


async def _used(redis: Redis) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def per_card(
    cards: int = 100_000,
    shards: int = 12,
    records_per_card: int = 4,
    extra_config: tuple[str, ...] = DEPLOYED_CONFIG,
) -> tuple[float, float]:
    """(bytes per card with profile and one cycle's counter, bytes per remembered record id)."""
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
        groups: dict[int, list[IngestRow]] = defaultdict(list)
        today = dedupe.window(datetime.now(UTC))
        for n, card in enumerate(ids):
            groups[keys.shard(card)] += [
                IngestRow(f"rec-{n:012d}-{k}", card, "", cycle, 1000, day=today)
                for k in range(records_per_card)
            ]
        for shard, rows in groups.items():
            for i in range(0, len(rows), 5000):
                await store.ingest(shard, rows[i : i + 5000])
        with_records = await _used(redis)
        for shard in range(shards):
            async for key in redis.scan_iter(match=f"{keys.dedupe_prefix(shard)}*", count=5000):
                await redis.unlink(key)
        await asyncio.sleep(0.5)  # lazy free of unlinked keys
        cards_only = await _used(redis)
        ids_kept = cards * records_per_card
        return (cards_only - before) / cards, (with_records - cards_only) / ids_kept


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
