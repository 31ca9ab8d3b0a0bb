"""The delivery ledger in Redis (single server or Cluster): one hash per (alert, channel,
target), a due-time sorted set, and the customers' settings; key names in `keys`, storage
format in `codec`, and the three scripts that must be atomic in ``lua/``, each
taking a batch of deliveries in one call: the batch as one JSON argument and, for claims, the
answer as one JSON string (packing and parsing a dozen RESP items per delivery in Python cost
more than the scripts themselves)."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import orjson

from simwatch_contracts import CustomerSettings
from simwatch_runtime import lua
from simwatch_runtime.redis_client import AnyRedis

from ..domain.delivery import CLAIM_SCAN, Claim, Claimed, Delivery, DeliveryState, Finish, Progress
from .codec import Field, customer_of, delivery_of, fields_of, progress_fields
from .keys import Keys

log = logging.getLogger(__name__)

PACKAGE = "notifier.adapters"
"""Where the Lua scripts of this adapter live (``lua/*.lua``)."""

FINISHED_TTL_S = 35 * 86_400
"""How long a finished delivery's record is kept (a redelivered alert is still a duplicate)."""
SMS_COUNT_TTL_S = 7200


def _text(fields: Mapping[str, Field]) -> dict[str, str]:
    """Hash field values as text, written as redis-py writes an argument (str of an int or a
    float: `repr`, every digit kept), since Lua would print a JSON number with 14 digits."""
    return {k: v if isinstance(v, str) else str(v) for k, v in fields.items()}


def _claimed(row: list[Any]) -> Claimed:
    """One row of claim.lua's answer; the delivery None (logged) when its record is unreadable:
    the lease brings it back, and one bad record does not fail the others' claims."""
    delivery_id, previous, token, fields = row
    claim = Claim(delivery_id, DeliveryState(previous), int(token))
    try:
        return Claimed(claim, delivery_of(delivery_id, fields))
    except (KeyError, ValueError) as exc:  # a field missing or unreadable: not this batch's fault
        log.error("delivery %s is unreadable: %s", delivery_id, type(exc).__name__)
        return Claimed(claim, None)


class RedisLedger:
    def __init__(self, redis: AnyRedis, prefix: str) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self._schedule = lua.register(redis, PACKAGE, "schedule.lua")
        self._claim = lua.register(redis, PACKAGE, "claim.lua")
        self._finish = lua.register(redis, PACKAGE, "finish.lua")

    async def schedule(self, delivery: Delivery, at: datetime) -> bool:
        return (await self.schedule_many([(delivery, at)]))[0]

    async def schedule_many(self, deliveries: Sequence[tuple[Delivery, datetime]]) -> list[bool]:
        if not deliveries:
            return []
        batch = [
            (delivery.delivery_id, str(at.timestamp()), _text(fields_of(delivery)))
            for delivery, at in deliveries
        ]
        args: list[Field | bytes] = [self.keys.delivery_prefix, orjson.dumps(batch)]
        return [bool(flag) for flag in await self._schedule(keys=[self.keys.due], args=args)]

    async def claim(self, now: datetime, lease_s: float, limit: int) -> list[Claim]:
        return [c.claim for c in await self.claim_due(now, lease_s, limit)]

    async def claim_due(
        self,
        now: datetime,
        lease_s: float,
        limit: int,
        *,
        cap: int = 0,
        in_flight: Mapping[str, int] | None = None,
    ) -> list[Claimed]:
        scan = limit * CLAIM_SCAN if cap > 0 else limit
        at = now.timestamp()
        args: list[Field | bytes] = [
            self.keys.delivery_prefix,
            at,
            at + lease_s,
            DeliveryState.SENDING.value,
            limit,
            cap,
            scan,
            orjson.dumps(dict(in_flight or {})),
        ]
        raw = await self._claim(keys=[self.keys.due], args=args)
        return [_claimed(row) for row in orjson.loads(raw)]

    async def load(self, delivery_id: str) -> Delivery | None:
        raw = cast(dict[bytes, bytes], await self.redis.hgetall(self.keys.delivery(delivery_id)))
        return delivery_of(delivery_id, {k.decode(): v.decode() for k, v in raw.items()})

    async def finish(self, claim: Claim, next_at: datetime | None, progress: Progress) -> bool:
        return (await self.finish_many([Finish(claim, next_at, progress)]))[0]

    async def finish_many(self, finishes: Sequence[Finish]) -> list[bool]:
        if not finishes:
            return []
        batch = [
            (
                f.claim.delivery_id,
                f.claim.token,
                "" if f.next_at is None else str(f.next_at.timestamp()),
                _text(progress_fields(f.progress)),
            )
            for f in finishes
        ]
        args: list[Field | bytes] = [self.keys.delivery_prefix, FINISHED_TTL_S, orjson.dumps(batch)]
        return [bool(flag) for flag in await self._finish(keys=[self.keys.due], args=args)]

    async def depth(self) -> int:
        return int(await self.redis.zcard(self.keys.due))

    async def store_customer(self, customer_id: str, raw: bytes) -> None:
        await self.redis.set(self.keys.customer(customer_id), raw)

    async def delete_customer(self, customer_id: str) -> None:
        await self.redis.delete(self.keys.customer(customer_id))

    async def customer(self, customer_id: str) -> CustomerSettings | None:
        raw = cast(bytes | None, await self.redis.get(self.keys.customer(customer_id)))
        return customer_of(customer_id, raw)

    async def customers(self, ids: Collection[str]) -> dict[str, CustomerSettings | None]:
        order = list(ids)
        if not order:
            return {}
        raw = cast(
            list[bytes | None], await self.redis.mget([self.keys.customer(i) for i in order])
        )
        return {i: customer_of(i, value) for i, value in zip(order, raw, strict=True)}

    async def webhooks_gone(self, ids: Collection[str]) -> dict[str, str]:
        order = list(ids)
        if not order:
            return {}
        raw = cast(
            list[bytes | None], await self.redis.mget([self.keys.webhook_gone(i) for i in order])
        )
        return {i: value.decode() for i, value in zip(order, raw, strict=True) if value}

    async def webhook_gone(self, customer_id: str) -> str | None:
        raw = cast(bytes | None, await self.redis.get(self.keys.webhook_gone(customer_id)))
        return raw.decode() if raw else None

    async def mark_webhook_gone(self, customer_id: str, url: str) -> None:
        await self.redis.set(self.keys.webhook_gone(customer_id), url)

    async def count_sms(self, number: str, hour: int) -> int:
        key = self.keys.sms_count(number, hour)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, SMS_COUNT_TTL_S)
            count, _ = await pipe.execute()
        return int(count)
