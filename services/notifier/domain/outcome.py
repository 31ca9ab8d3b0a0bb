"""What one attempt on a channel came to: the channels' answer, read by the dispatcher."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Result(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    GONE = "gone"  # 410: the endpoint is disabled until the customer changes it
    REFUSED = "refused"  # not a target we may call
    UNCERTAIN = "uncertain"  # the request went out; no answer (SMS only)
    FAILED = "failed"  # refused by the provider for good (SMS only)


@dataclass(frozen=True, slots=True)
class Outcome:
    result: Result
    detail: str = ""
    retry_after: str | None = None
