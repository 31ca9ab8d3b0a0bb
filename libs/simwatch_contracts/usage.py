"""`usage.records`: one metered usage record per message, keyed by ICCID."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, Field

from .common import MESSAGE_CONFIG, Bytes, Iccid, MessageId


class UsageRecord(BaseModel):
    """A CDR-like record; `record_id` makes redelivery harmless (counted once)."""

    model_config = MESSAGE_CONFIG

    record_id: MessageId = Field(description="unique per upstream record, 1-128 chars")
    iccid: Iccid
    event_time: AwareDatetime = Field(description="when the usage happened (decides the cycle)")
    bytes_up: Bytes
    bytes_down: Bytes

    @property
    def total_bytes(self) -> int:
        return self.bytes_up + self.bytes_down
