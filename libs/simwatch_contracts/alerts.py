"""`card.alerts`: what the notifier tells customers, at most once per (card, cycle, type, step)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, Field, model_validator

from .common import MESSAGE_CONFIG, Cycle, Iccid, MessageId, Money, QuotaBytes, Reason
from .pools import PoolMember


class AlertType(StrEnum):
    USAGE_THRESHOLD = "usage_threshold"
    QUOTA_EXHAUSTED = "quota_exhausted"
    SUSPENDED = "suspended"
    RESUMED = "resumed"
    CANCELLED = "cancelled"
    EXPIRY_UPCOMING = "expiry_upcoming"
    BALANCE_INSUFFICIENT = "balance_insufficient"
    POOL_THRESHOLD = "pool_threshold"
    POOL_EXHAUSTED = "pool_exhausted"


POOL_ALERTS = frozenset({AlertType.POOL_THRESHOLD, AlertType.POOL_EXHAUSTED})
"""Alerts about a pool, not a card: keyed by the pool id, without an ICCID."""


_REQUIRED: dict[AlertType, tuple[str, ...]] = {
    AlertType.USAGE_THRESHOLD: ("percent", "used_bytes", "quota_bytes"),
    AlertType.QUOTA_EXHAUSTED: ("percent", "used_bytes", "quota_bytes"),
    AlertType.SUSPENDED: ("trigger", "reasons"),
    AlertType.RESUMED: ("trigger", "reasons"),
    AlertType.CANCELLED: ("trigger",),
    AlertType.EXPIRY_UPCOMING: ("expires_at", "days_left"),
    AlertType.BALANCE_INSUFFICIENT: ("balance", "amount_due"),
    AlertType.POOL_THRESHOLD: ("pool_id", "percent", "used_bytes", "quota_bytes", "top_members"),
    AlertType.POOL_EXHAUSTED: ("pool_id", "percent", "used_bytes", "quota_bytes", "top_members"),
}


class LiftHint(BaseModel):
    """What lifts one held reason (explain's `lifts`), carried by `suspended` alerts so the
    message a customer gets already says what to do."""

    model_config = MESSAGE_CONFIG

    reason: Reason
    how: str = Field(
        description="next_cycle | recharge | pay_debt | renew | customer_resume | "
        "violation_cleared | pool_next_cycle | raise_quota | none"
    )
    at: AwareDatetime | None = None
    amount: Money | None = None
    deadline: AwareDatetime | None = None


class CardAlert(BaseModel):
    """One customer-facing alert; the fields beyond the base depend on `type`."""

    model_config = MESSAGE_CONFIG

    alert_id: MessageId = Field(description="deterministic: stable across re-publication")
    type: AlertType
    iccid: Iccid | None = Field(default=None, description="every alert but a pool's carries it")
    customer_id: str = Field(min_length=1, max_length=128)
    cycle: Cycle
    occurred_at: AwareDatetime
    percent: Annotated[int, Field(ge=1, le=100)] | None = None
    used_bytes: QuotaBytes | None = None
    quota_bytes: QuotaBytes | None = None
    trigger: Reason | None = None
    reasons: tuple[Reason, ...] | None = None
    lifted: tuple[Reason, ...] | None = Field(
        default=None,
        description="resumed: the reasons this resume lifted (optional; `trigger` is the first)",
    )
    expires_at: AwareDatetime | None = None
    days_left: Annotated[int, Field(ge=0)] | None = None
    balance: Money | None = None
    amount_due: Money | None = None
    lifts: tuple[LiftHint, ...] | None = Field(
        default=None, description="suspended: what lifts each held reason (optional)"
    )
    pool_id: MessageId | None = None
    top_members: tuple[PoolMember, ...] | None = Field(
        default=None, description="pool alerts: up to 5 members that used the most"
    )

    @model_validator(mode="after")
    def _fields_for_type(self) -> CardAlert:
        missing = [name for name in _REQUIRED[self.type] if getattr(self, name) is None]
        if self.type not in POOL_ALERTS and self.iccid is None:
            missing.insert(0, "iccid")
        if missing:
            raise ValueError(f"alert type {self.type.value} requires {', '.join(missing)}")
        return self

    @property
    def key(self) -> str:
        """Its Kafka key: the card's ICCID, or the pool's id for a pool alert."""
        return self.iccid or self.pool_id or ""
