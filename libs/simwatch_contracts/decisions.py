"""`card.decisions`: every decision usage_monitor makes about a card, with the facts it was
made on: the audit trail a replay of `card.events` and `usage.records` must reproduce."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, Field

from .common import MESSAGE_CONFIG, Iccid, MessageId, Money, QuotaBytes, Reason


class DecisionKind(StrEnum):
    COMMAND = "command"
    ALERT = "alert"
    CHARGE = "charge"
    STATE = "state"


class DecisionFacts(BaseModel):
    """What the decision rested on (the card's state after it)."""

    model_config = MESSAGE_CONFIG

    used_bytes: QuotaBytes | None = None
    quota_bytes: QuotaBytes | None = None
    balance: Money | None = None
    fee: Annotated[int, Field(ge=0)] | None = None
    expires_at: AwareDatetime | None = None
    cycle: str | None = Field(default=None, description="the cycle's start date")
    event_id: str | None = Field(default=None, description="the card event decided on")


class CardDecision(BaseModel):
    model_config = MESSAGE_CONFIG

    decision_id: MessageId = Field(description="deterministic: the same decision, the same id")
    iccid: Iccid
    at: AwareDatetime
    kind: DecisionKind
    type: str = Field(description="command type, alert type, or charge kind")
    ref: str | None = Field(default=None, description="command_id / alert_id it published")
    trigger: Reason | None = None
    reasons: tuple[Reason, ...] = Field(default=(), description="every reason after it")
    amount: Money | None = Field(default=None, description="a charge's amount")
    facts: DecisionFacts = Field(default_factory=DecisionFacts)
