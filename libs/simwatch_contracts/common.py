"""Field types shared by every topic: ICCIDs, ids, money, volumes, reasons."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, ConfigDict, Field, PlainSerializer, StringConstraints

MAX_RECORD_BYTES = 2**40
"""Upper bound of one usage record's volume (per direction); more is malformed."""

# Checked by pydantic-core's own regex engine, not by Python validators: a usage record is
# validated ~50 000 times a second per worker, and each Python validator called from Rust
# costs a fifth of a microsecond or more. Anchored with ^ and $ (Rust's `$` is the end of
# the text, never before a trailing newline). An ICCID may arrive in lower case: the
# contract keys messages by the upper form, so it is upper-cased once it matched (ASCII
# only: "ß" or a full-width digit does not become an ICCID by upper-casing).
ICCID_PATTERN = r"^89[0-9A-Za-z]{17,18}$"
ID_PATTERN = r"^[\x21-\x7e]{1,128}$"
PATTERN_MESSAGES = {
    ICCID_PATTERN: "ICCID must be 19 or 20 characters, start with 89, digits and letters A-Z",
    ID_PATTERN: "id must be 1-128 printable ASCII characters without spaces",
}
"""The reason a dead letter gives when a field misses its pattern (as it read before the
patterns moved into pydantic-core, so that operators' filters on reasons keep working)."""

# Unknown fields are ignored (forward compatibility); types are never coerced
# ("12" is not 12, true is not 1), so a wrong-typed field is malformed.
MESSAGE_CONFIG = ConfigDict(strict=True, extra="ignore", frozen=True)


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:  # unknown or malformed zone key
        raise ValueError(f"unknown IANA timezone {value!r}") from exc
    return value


Iccid = Annotated[str, StringConstraints(pattern=ICCID_PATTERN, to_upper=True)]
MessageId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Bytes = Annotated[int, Field(ge=0, le=MAX_RECORD_BYTES)]
QuotaBytes = Annotated[int, Field(ge=0, le=2**62)]
Money = Annotated[int, Field(ge=-(2**53), le=2**53, description="minor units (fen, cents)")]
Timezone = Annotated[str, AfterValidator(_check_timezone)]
Cycle = Annotated[
    date,
    PlainSerializer(lambda d: d.isoformat(), return_type=str),
    Field(description="local date the billing cycle starts on"),
]


class Reason(StrEnum):
    """Why a card is suspended; several can hold at once."""

    OVER_QUOTA = "over_quota"
    MANUAL = "manual"
    ARREARS = "arrears"
    EXPIRED = "expired"
    VIOLATION = "violation"
    BLACKLISTED = "blacklisted"
    """A new card of a customer who still owes a cancelled card's debt (held until paid)."""
    POOL_OVER_QUOTA = "pool_over_quota"
    """The card's pool (流量池) is exhausted and stops its members: lifted at the pool's next
    cycle."""
    MEMBER_CAP = "member_cap"
    """The member used its own cap inside its pool (`plan.member_cap_bytes`): lifted at its
    next cycle."""
    RECONCILE = "reconcile"
    """Only ever a command's `trigger`, never held: simwatch correcting a network whose own
    view of the card (`card.network_observed`, a result's `network_state`) disagrees."""


class NetworkState(StrEnum):
    """The network's own view of a card (HLR / CMP)."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


class Billing(StrEnum):
    PREPAID = "prepaid"
    POSTPAID = "postpaid"
