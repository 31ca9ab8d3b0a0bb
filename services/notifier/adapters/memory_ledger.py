"""The delivery ledger in memory, for unit tests and local experiments: the same behaviour as
the Redis ledger and its Lua scripts (the contract suite in tests/ holds both to it), in
one process. Finished deliveries and SMS counts are kept for good (Redis lets them expire)."""

from __future__ import annotations

from datetime import datetime

from simwatch_contracts import CustomerSettings

from ..domain.delivery import Claim, Delivery, DeliveryState, Progress
from .codec import customer_of, delivery_of, fields_of, progress_fields


class MemoryLedger:
    def __init__(self) -> None:
        self.deliveries: dict[str, dict[str, str]] = {}
        """Each delivery's fields as text, as the Redis hash holds them."""
        self.due: dict[str, float] = {}
        self.customers: dict[str, bytes] = {}
        self.gone: dict[str, str] = {}
        self.sms_counts: dict[tuple[str, int], int] = {}

    async def schedule(self, delivery: Delivery, at: datetime) -> bool:
        if delivery.delivery_id in self.deliveries:
            return False
        self.deliveries[delivery.delivery_id] = _text(fields_of(delivery))
        self.due[delivery.delivery_id] = at.timestamp()
        return True

    async def claim(self, now: datetime, lease_s: float, limit: int) -> list[Claim]:
        # Redis orders a sorted set by score, then by member.
        ready = sorted((score, i) for i, score in self.due.items() if score <= now.timestamp())
        claims = []
        for _, delivery_id in ready[:limit]:
            fields = self.deliveries.get(delivery_id, {})
            previous = fields.get("state")
            if previous is None:
                del self.due[delivery_id]
                continue
            token = int(fields.get("claims", "0")) + 1
            fields.update(claims=str(token), state=DeliveryState.SENDING.value)
            self.due[delivery_id] = now.timestamp() + lease_s
            claims.append(Claim(delivery_id, DeliveryState(previous), token))
        return claims

    async def load(self, delivery_id: str) -> Delivery | None:
        return delivery_of(delivery_id, dict(self.deliveries.get(delivery_id, {})))

    async def finish(self, claim: Claim, next_at: datetime | None, progress: Progress) -> bool:
        fields = self.deliveries.get(claim.delivery_id)
        if fields is None or int(fields.get("claims", "0")) != claim.token:
            return False
        fields.update(_text(progress_fields(progress)))
        if next_at is None:
            self.due.pop(claim.delivery_id, None)
        else:
            self.due[claim.delivery_id] = next_at.timestamp()
        return True

    async def depth(self) -> int:
        return len(self.due)

    async def store_customer(self, customer_id: str, raw: bytes) -> None:
        self.customers[customer_id] = raw

    async def delete_customer(self, customer_id: str) -> None:
        self.customers.pop(customer_id, None)

    async def customer(self, customer_id: str) -> CustomerSettings | None:
        return customer_of(customer_id, self.customers.get(customer_id))

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
