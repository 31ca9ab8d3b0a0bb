"""The delivery ledger in Redis: one hash per (alert, channel, target), a due-time sorted set,
and the customers' settings. Every key shares one hash tag, so scripts run on Redis Cluster.

    {<prefix>}:d:<delivery_id>   hash   the delivery: alert, target, state, attempts, claims
    {<prefix>}:due               zset   when each pending delivery is next attempted
    {<prefix>}:c:<customer_id>   string the customer's settings (JSON)
    {<prefix>}:gone:<customer>   string a webhook URL that answered 410 (disabled)
    {<prefix>}:rl:<number>:<h>   string SMS sent to a number in an hour (rate limit)
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from pydantic import ValidationError

from simwatch_contracts import CustomerSettings
from simwatch_runtime import lua
from simwatch_runtime.redis_client import AnyRedis

PACKAGE = "notifier.adapters"
"""Where the Lua scripts of this adapter live (``lua/*.lua``)."""

FINISHED_TTL_S = 35 * 86_400
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Claim:
    delivery_id: str
    previous_state: str
    token: int


class Ledger:
    def __init__(self, redis: AnyRedis, prefix: str) -> None:
        self.redis = redis
        self.tag = f"{{{prefix}}}"
        self._schedule = lua.register(redis, PACKAGE, "schedule.lua")
        self._claim = lua.register(redis, PACKAGE, "claim.lua")
        self._finish = lua.register(redis, PACKAGE, "finish.lua")

    def delivery_key(self, delivery_id: str) -> str:
        return f"{self.tag}:d:{delivery_id}"

    @property
    def due_key(self) -> str:
        return f"{self.tag}:due"

    async def schedule(self, delivery_id: str, at: datetime, fields: dict[str, Any]) -> bool:
        args: list[str | int | float | bytes] = [delivery_id, at.timestamp()]
        for k, v in fields.items():
            args += (k, v)
        keys = [self.delivery_key(delivery_id), self.due_key]
        return bool(await self._schedule(keys=keys, args=args))

    async def claim(self, now: datetime, lease_s: float, limit: int) -> list[Claim]:
        args: list[str | int | float] = [
            now.timestamp(),
            now.timestamp() + lease_s,
            limit,
            f"{self.tag}:d:",
        ]
        flat = await self._claim(keys=[self.due_key], args=args)
        return [
            Claim(flat[i].decode(), flat[i + 1].decode(), int(flat[i + 2]))
            for i in range(0, len(flat), 3)
        ]

    async def load(self, delivery_id: str) -> dict[str, str]:
        raw = cast(dict[bytes, bytes], await self.redis.hgetall(self.delivery_key(delivery_id)))
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def finish(self, claim: Claim, next_at: datetime | None, fields: dict[str, Any]) -> bool:
        args: list[str | int | float | bytes] = [
            claim.delivery_id,
            claim.token,
            "" if next_at is None else next_at.timestamp(),
            FINISHED_TTL_S,
        ]
        for k, v in fields.items():
            args += (k, v)
        keys = [self.delivery_key(claim.delivery_id), self.due_key]
        return bool(await self._finish(keys=keys, args=args))

    async def depth(self) -> int:
        return int(await self.redis.zcard(self.due_key))

    async def next_due(self) -> float | None:
        first = cast(
            Sequence[tuple[bytes, float]],
            await self.redis.zrange(self.due_key, 0, 0, withscores=True),
        )
        return float(first[0][1]) if first else None

    async def save_customer(self, customer_id: str, raw: bytes | None) -> None:
        key = f"{self.tag}:c:{customer_id}"
        if raw is None:
            await self.redis.delete(key)  # a tombstone on the compacted topic
        else:
            await self.redis.set(key, raw)

    async def customer(self, customer_id: str) -> CustomerSettings | None:
        """The customer's settings; None when unknown, or when stored by an earlier version
        and invalid now (e.g. a short secret): not used until the customer sends new ones."""
        raw = await self.redis.get(f"{self.tag}:c:{customer_id}")
        if not raw:
            return None
        try:
            return CustomerSettings.model_validate_json(raw)
        except ValidationError as exc:  # validated on arrival since; the stored value predates
            log.warning(
                "stored settings of customer %s are invalid now (%d errors): not used",
                customer_id,
                exc.error_count(),
            )
            return None

    async def webhook_gone(self, customer_id: str) -> str | None:
        raw = cast(bytes | None, await self.redis.get(f"{self.tag}:gone:{customer_id}"))
        return raw.decode() if raw else None

    async def mark_webhook_gone(self, customer_id: str, url: str) -> None:
        await self.redis.set(f"{self.tag}:gone:{customer_id}", url)

    async def count_sms(self, number: str, hour: int) -> int:
        """Count one SMS to `number` in the hour starting at epoch-hour `hour`."""
        digest = hashlib.sha256(number.encode()).hexdigest()[:16]  # no numbers in key names
        key = f"{self.tag}:rl:{digest}:{hour}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 7200)
            count, _ = await pipe.execute()
        return int(count)
