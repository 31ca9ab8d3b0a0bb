"""`card.commands`: suspend / resume / cancel, for the network provisioning adapter."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, Field

from .common import MESSAGE_CONFIG, Cycle, Iccid, MessageId, NetworkState, Reason


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
    attempt: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=1, description="1 for the first publication; a re-publication counts up"
    )


class ResultStatus(StrEnum):
    APPLIED = "applied"
    """The network did it (or already was so)."""
    FAILED = "failed"
    """Transient: simwatch tries again (the same command_id, the next attempt)."""
    REJECTED = "rejected"
    """Permanent: not repeated; an operator must look."""


class CommandResult(BaseModel):
    """`card.command_results`: the provisioning adapter's answer to one command."""

    model_config = MESSAGE_CONFIG

    command_id: MessageId
    iccid: Iccid
    status: ResultStatus
    network_state: NetworkState = NetworkState.UNKNOWN
    detail: str | None = Field(default=None, max_length=1024)
    at: AwareDatetime


def parse_command_result(raw: bytes | str) -> CommandResult:
    """Parse one `card.command_results` message; raises pydantic.ValidationError."""
    return CommandResult.model_validate_json(raw)
