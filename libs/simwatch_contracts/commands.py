"""`card.commands`: suspend / resume / cancel, for the network provisioning adapter."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, Field

from .common import MESSAGE_CONFIG, Cycle, Iccid, MessageId, Reason


class CommandType(StrEnum):
    SUSPEND = "suspend"
    RESUME = "resume"
    CANCEL = "cancel"


class CardCommand(BaseModel):
    """A transition of the card's network state; the same transition keeps its `command_id`."""

    model_config = MESSAGE_CONFIG

    command_id: MessageId = Field(description="deterministic: de-duplicate downstream by it")
    type: CommandType
    iccid: Iccid
    trigger: Reason = Field(description="the reason that caused this transition")
    reasons: tuple[Reason, ...] = Field(description="every reason still holding afterwards")
    cycle: Cycle
    issued_at: AwareDatetime
