"""The delivery ledger in Redis (single server or Cluster): one hash per (alert, channel,
target), a due-time sorted set, and the customers' settings; key names in `keys`, storage
format in `codec`, and the three scripts that must be atomic in ``lua/``."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from simwatch_contracts import CustomerSettings
from simwatch_runtime import lua
from simwatch_runtime.redis_client import AnyRedis

from ..domain.delivery import Claim, Delivery, DeliveryState, Progress
from .codec import Field, customer_of, delivery_of, fields_of, progress_fields
from .keys import Keys

PACKAGE = "notifier.adapters"
"""Where the Lua scripts of this adapter live (``lua/*.lua``)."""

FINISHED_TTL_S = 35 * 86_400
"""How long a finished delivery's record is kept (a redelivered alert is still a duplicate)."""
SMS_COUNT_TTL_S = 7200


def _pairs(fields: dict[str, Field]) -> list[Field]:
    return [item for pair in fields.items() for item in pair]


class RedisLedger:
    def __init__(self, redis: AnyRedis, prefix: str) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self._schedule = lua.register(redis, PACKAGE, "schedule.lua")
        self._claim = lua.register(redis, PACKAGE, "claim.lua")
        self._finish = lua.register(redis, PACKAGE, "finish.lua")

    async def schedule(self, delivery: Delivery, at: datetime) -> bool:
        args = [delivery.delivery_id, at.timestamp(), *_pairs(fields_of(delivery))]
        keys = [self.keys.delivery(delivery.delivery_id), self.keys.due]
        return bool(await self._schedule(keys=keys, args=args))

    async def claim(self, now: datetime, lease_s: float, limit: int) -> list[Claim]:
        due = cast(
            list[bytes],
            await self.redis.zrangebyscore(self.keys.due, "-inf", now.timestamp(), 0, limit),
        )
        if not due:
            return []
        ids = [raw.decode() for raw in due]
        keys = [self.keys.due, *(self.keys.delivery(i) for i in ids)]
        args: list[Field] = [now.timestamp(), now.timestamp() + lease_s, DeliveryState.SENDING]
        args += ids
        flat = await self._claim(keys=keys, args=args)
        return [
            Claim(flat[i].decode(), DeliveryState(flat[i + 1].decode()), int(flat[i + 2]))
            for i in range(0, len(flat), 3)
        ]

    async def load(self, delivery_id: str) -> Delivery | None:
        raw = cast(dict[bytes, bytes], await self.redis.hgetall(self.keys.delivery(delivery_id)))
        return delivery_of(delivery_id, {k.decode(): v.decode() for k, v in raw.items()})

    async def finish(self, claim: Claim, next_at: datetime | None, progress: Progress) -> bool:
        args = [
            claim.delivery_id,
            claim.token,
            "" if next_at is None else next_at.timestamp(),
            FINISHED_TTL_S,
            *_pairs(progress_fields(progress)),
        ]
        keys = [self.keys.delivery(claim.delivery_id), self.keys.due]
        return bool(await self._finish(keys=keys, args=args))

    async def depth(self) -> int:
        return int(await self.redis.zcard(self.keys.due))

    async def store_customer(self, customer_id: str, raw: bytes) -> None:
        await self.redis.set(self.keys.customer(customer_id), raw)

    async def delete_customer(self, customer_id: str) -> None:
        await self.redis.delete(self.keys.customer(customer_id))

    async def customer(self, customer_id: str) -> CustomerSettings | None:
        raw = cast(bytes | None, await self.redis.get(self.keys.customer(customer_id)))
        return customer_of(customer_id, raw)

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
