"""Operator policy the lifecycle follows (from settings; defaults from the source document)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Policy:
    expiry_leads_days: tuple[int, ...] = (30, 7, 1)
    """`expiry_upcoming` alerts this many days before `expires_at`."""
    grace_months: int = 3
    """After expiry the number is kept this long (停机保号), then the card is cancelled."""
    retention_fee: int = 500
    """Number-retention fee per grace month, minor units (5 yuan)."""
    balance_warning_days: int = 3
    """`balance_insufficient` this many days before a rollover the balance will not cover."""
    postpaid_cancel_months: int = 3
    """A postpaid card in arrears this long is cancelled and its customer blacklisted."""
    postpaid_due_days: int = 15
    """A postpaid bill falls due this many days after it is issued (the payment period)."""
    default_timezone: str = "Asia/Shanghai"
    """The calendar of a card we hold no profile of (its commands still name a cycle)."""
    default_cycle_day: int = 1


DEFAULT_POLICY = Policy()
