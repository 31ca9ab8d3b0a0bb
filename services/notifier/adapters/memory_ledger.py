"""The delivery ledger in memory, for unit tests and local experiments: the same behaviour as
the Redis ledger and its Lua scripts (the contract suite in tests/ holds both to it), in
one process. Finished deliveries and SMS counts are kept for good (Redis lets them expire)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

from simwatch_contracts import CustomerSettings

from ..domain.delivery import CLAIM_SCAN, Claim, Claimed, Delivery, DeliveryState, Finish, Progress
from .codec import customer_of, delivery_of, fields_of, progress_fields


class MemoryLedger:
    def __init__(self) -> None:
        self.deliveries: dict[str, dict[str, str]] = {}
        """Each delivery's fields as text, as the Redis hash holds them."""
        self.due: dict[str, float] = {}
        self.settings: dict[str, bytes] = {}
        """Each customer's settings as received."""
        self.gone: dict[str, str] = {}
        self.sms_counts: dict[tuple[str, int], int] = {}

    async def schedule(self, delivery: Delivery, at: datetime) -> bool:
        return (await self.schedule_many([(delivery, at)]))[0]

    async def schedule_many(self, deliveries: Sequence[tuple[Delivery, datetime]]) -> list[bool]:
        out = []
        for delivery, at in deliveries:
            fresh = delivery.delivery_id not in self.deliveries
            if fresh:
                self.deliveries[delivery.delivery_id] = _text(fields_of(delivery))
                self.due[delivery.delivery_id] = at.timestamp()
            out.append(fresh)
        return out

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
        # Redis orders a sorted set by score, then by member.
        ready = sorted((score, i) for i, score in self.due.items() if score <= now.timestamp())
        busy = dict(in_flight or {})
        claims: list[Claimed] = []
        moved = 0
        for _, delivery_id in ready[: limit * CLAIM_SCAN if cap > 0 else limit]:
            if len(claims) >= limit or moved >= limit:
                break
            fields = self.deliveries.get(delivery_id, {})
            previous = fields.get("state")
            if previous is None:
                del self.due[delivery_id]
                continue
            endpoint = f"{fields.get('customer')}/{fields.get('channel')}"
            if cap > 0 and busy.get(endpoint, 0) >= cap:
                self.due[delivery_id] = now.timestamp()
                moved += 1
                continue
            busy[endpoint] = busy.get(endpoint, 0) + 1
            token = int(fields.get("claims", "0")) + 1
            fields.update(claims=str(token), state=DeliveryState.SENDING.value)
            self.due[delivery_id] = now.timestamp() + lease_s
            claim = Claim(delivery_id, DeliveryState(previous), token)
            claims.append(Claimed(claim, delivery_of(delivery_id, dict(fields))))
        return claims

    async def load(self, delivery_id: str) -> Delivery | None:
        return delivery_of(delivery_id, dict(self.deliveries.get(delivery_id, {})))

    async def finish(self, claim: Claim, next_at: datetime | None, progress: Progress) -> bool:
        return (await self.finish_many([Finish(claim, next_at, progress)]))[0]

    async def finish_many(self, finishes: Sequence[Finish]) -> list[bool]:
        return [self._finish(f) for f in finishes]

    def _finish(self, f: Finish) -> bool:
        fields = self.deliveries.get(f.claim.delivery_id)
        if fields is None or int(fields.get("claims", "0")) != f.claim.token:
            return False
        fields.update(_text(progress_fields(f.progress)))
        if f.next_at is None:
            self.due.pop(f.claim.delivery_id, None)
        else:
            self.due[f.claim.delivery_id] = f.next_at.timestamp()
        return True

    async def depth(self) -> int:
        return len(self.due)

    async def store_customer(self, customer_id: str, raw: bytes) -> None:
        self.settings[customer_id] = raw

    async def delete_customer(self, customer_id: str) -> None:
        self.settings.pop(customer_id, None)

    async def customer(self, customer_id: str) -> CustomerSettings | None:
        return customer_of(customer_id, self.settings.get(customer_id))

    async def customers(self, ids: Collection[str]) -> dict[str, CustomerSettings | None]:
        return {i: await self.customer(i) for i in ids}

    async def webhooks_gone(self, ids: Collection[str]) -> dict[str, str]:
        return {i: self.gone[i] for i in ids if i in self.gone}

    async def webhook_gone(self, customer_id: str) -> str | None:
        return self.gone.get(customer_id)

    async def mark_webhook_gone(self, customer_id: str, url: str) -> None:
        self.gone[customer_id] = url

    async def count_sms(self, number: str, hour: int) -> int:
        count = self.sms_counts.get((number, hour), 0) + 1
        self.sms_counts[(number, hour)] = count
        return count


def _text(fields: dict[str, str | int | float]) -> dict[str, str]:
    """Field values as Redis stores them (redis-py writes a float with repr)."""
    return {k: v if isinstance(v, str) else repr(v) for k, v in fields.items()}
