"""`card.events`: profile, billing and operator events for one card (field `type` selects)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, Field, TypeAdapter, field_validator

from .common import (
    MESSAGE_CONFIG,
    Billing,
    Iccid,
    MessageId,
    Money,
    NetworkState,
    QuotaBytes,
    Timezone,
)

DEFAULT_WARN_PERCENTS = (80, 90)


class Plan(BaseModel):
    model_config = MESSAGE_CONFIG

    plan_id: str = Field(min_length=1, max_length=128)
    quota_bytes: QuotaBytes | None = Field(description="null = unlimited")
    monthly_fee: Annotated[int, Field(ge=0, le=2**53)]
    auto_suspend: bool = Field(description="auto over-quota stop")
    warn_percents: tuple[Annotated[int, Field(ge=1, le=100)], ...] = DEFAULT_WARN_PERCENTS
    credit_limit: Annotated[int, Field(ge=0, le=2**53)] | None = None
    auto_restore_on_recharge: bool = False
    pool_id: MessageId | None = Field(
        default=None, description="the pool (流量池) whose shared quota the card draws on"
    )
    member_cap_bytes: QuotaBytes | None = Field(
        default=None, description="the member's own cap inside its pool, per cycle"
    )

    @field_validator("warn_percents")
    @classmethod
    def _sorted_unique(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(sorted(set(value)))


class _CardEventBase(BaseModel):
    model_config = MESSAGE_CONFIG

    event_id: MessageId
    occurred_at: AwareDatetime
    iccid: Iccid


class CardUpserted(_CardEventBase):
    """Create or replace the card's profile and plan."""

    type: Literal["card.upserted"]
    customer_id: str = Field(min_length=1, max_length=128)
    plan: Plan
    billing: Billing
    balance: Money
    expires_at: AwareDatetime
    cycle_day: Annotated[int, Field(ge=1, le=28)] = 1
    timezone: Timezone = "Asia/Shanghai"


class CardRecharged(_CardEventBase):
    """Prepaid top-up or postpaid payment."""

    type: Literal["card.recharged"]
    amount: Annotated[int, Field(gt=0, le=2**53)]


class CardRenewed(_CardEventBase):
    type: Literal["card.renewed"]
    expires_at: AwareDatetime


class SuspendRequested(_CardEventBase):
    """The customer's manual stop."""

    type: Literal["card.suspend_requested"]


class ResumeRequested(_CardEventBase):
    """The customer's manual start, or restore after a recharge."""

    type: Literal["card.resume_requested"]


class ViolationReported(_CardEventBase):
    type: Literal["card.violation_reported"]
    detail: str | None = Field(default=None, max_length=1024)


class ViolationCleared(_CardEventBase):
    type: Literal["card.violation_cleared"]
    detail: str | None = Field(default=None, max_length=1024)


class NetworkObserved(_CardEventBase):
    """The network's own view of the card (a periodic HLR / CMP sync)."""

    type: Literal["card.network_observed"]
    network_state: NetworkState


CardEvent = Annotated[
    CardUpserted
    | CardRecharged
    | CardRenewed
    | SuspendRequested
    | ResumeRequested
    | ViolationReported
    | ViolationCleared
    | NetworkObserved,
    Field(discriminator="type"),
]

CARD_EVENT_ADAPTER: TypeAdapter[CardEvent] = TypeAdapter(CardEvent)


def parse_card_event(raw: bytes | str) -> CardEvent:
    """Parse one `card.events` message; raises pydantic.ValidationError when malformed."""
    return CARD_EVENT_ADAPTER.validate_json(raw)
