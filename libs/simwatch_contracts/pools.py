"""`pool.events` (key: pool id; compacted): pooled quotas (流量池), a fleet's shared allowance."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, Field, field_validator

from .card_events import DEFAULT_WARN_PERCENTS
from .common import MESSAGE_CONFIG, Iccid, MessageId, Timezone

MAX_POOL_QUOTA_BYTES = 2**60
"""An exbibyte: more is not a pool any operator sells, but a unit mistake (bits, or a
quota written in some other unit): dead-lettered."""


class PoolUpserted(BaseModel):
    """Create or replace a pool: its shared quota per cycle, warn levels, what happens when
    it is exhausted, and its billing calendar (its members are counted in its cycles)."""

    model_config = MESSAGE_CONFIG

    type: Literal["pool.upserted"]
    event_id: MessageId
    occurred_at: AwareDatetime
    pool_id: MessageId
    customer_id: str = Field(min_length=1, max_length=128)
    quota_bytes: Annotated[int, Field(ge=0, le=MAX_POOL_QUOTA_BYTES)]
    warn_percents: tuple[Annotated[int, Field(ge=1, le=100)], ...] = DEFAULT_WARN_PERCENTS
    on_exhausted: Literal["suspend_all", "alert_only"] = "suspend_all"
    cycle_day: Annotated[int, Field(ge=1, le=28)] = 1
    timezone: Timezone = "Asia/Shanghai"

    @field_validator("warn_percents")
    @classmethod
    def _sorted_unique(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(sorted(set(value)))


class PoolMember(BaseModel):
    """One of a pool's top contributors in a cycle."""

    model_config = MESSAGE_CONFIG

    iccid: Iccid
    used_bytes: Annotated[int, Field(ge=0)]


PoolEvent = PoolUpserted


def parse_pool_event(raw: bytes | str) -> PoolEvent:
    """Parse one `pool.events` message; raises pydantic.ValidationError when malformed."""
    return PoolUpserted.model_validate_json(raw)
