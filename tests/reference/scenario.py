"""The common language of the reference model and the production domain in the lifecycle
comparison: a scenario (one card's inputs over wall-clock time) and the effects decided.

Both sides read the same `Scenario` and must return the same sorted list of `Effect`s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from simwatch_contracts import CardEvent


@dataclass(frozen=True, slots=True)
class Usage:
    """A usage record arriving at `Input.at`: `nbytes` used at `event_time` (<= arrival).
    Record ids are unique in a scenario (de-duplication is tested elsewhere)."""

    record_id: str
    event_time: datetime
    nbytes: int


@dataclass(frozen=True, slots=True)
class Input:
    """Something that happens to the card at the aware instant `at`: a `card.events`
    message (its `occurred_at` equals `at`) or a usage record."""

    at: datetime
    item: CardEvent | Usage


@dataclass(frozen=True, slots=True)
class Policy:
    """The operator's parameters (the production defaults)."""

    expiry_leads_days: tuple[int, ...] = (30, 7, 1)
    grace_months: int = 3
    retention_fee: int = 500
    balance_warning_days: int = 3
    postpaid_cancel_months: int = 3
    postpaid_due_days: int = 15
    default_timezone: str = "Asia/Shanghai"


@dataclass(frozen=True, slots=True)
class Scenario:
    """One card: inputs in time order (ties keep list order), simulated until `until`."""

    iccid: str
    inputs: tuple[Input, ...]
    until: datetime
    policy: Policy = field(default_factory=Policy)
    customer_debt: int = 0
    """What the card's customer still owes from a card cancelled before the scenario began
    (the blacklist, minor units); 0: not blacklisted."""


@dataclass(frozen=True, slots=True, order=True)
class Effect:
    """One decided effect, compared by value.

    `at` is the instant it was decided (UTC). `kind`/`what`/`detail`:
    - ``command``: what = suspend | resume | cancel; detail = (trigger, *reasons after, sorted)
    - ``alert``: what = the alert type; detail = (percent,) for usage_threshold and
      quota_exhausted; (days_left,) for expiry_upcoming; (amount_due,) for
      balance_insufficient; (trigger, *reasons after, sorted) for suspended / resumed /
      cancelled
    - ``charge``: what = plan_fee | retention_fee; detail = (amount, cycle or grace month)
      — a fee assessed (paid from the balance or owed)
    """

    at: datetime
    kind: str
    what: str
    detail: tuple[object, ...] = ()
