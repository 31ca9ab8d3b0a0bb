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
    ack_timeout_s: int = 300
    """A command without a result this long is published again; 0: commands not tracked."""
    ack_max_attempts: int = 5
    """Publications of a command before it is marked unconfirmed."""
    ack_backoff_max_s: int = 3600
    """The longest wait between two publications (the wait doubles from `ack_timeout_s`)."""


DEFAULT_POLICY = Policy()
