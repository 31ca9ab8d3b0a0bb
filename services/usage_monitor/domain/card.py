"""A card's profile and lifecycle state: the set of active suspension reasons, and what has
already been announced in the current cycle."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from simwatch_contracts import Billing, CardUpserted, Plan, Reason

from .cycles import zone

if TYPE_CHECKING:
    from .enforcement import Pending

# Canonical order of reasons in messages, and priority when several change at once.
REASON_ORDER: tuple[Reason, ...] = (
    Reason.VIOLATION,
    Reason.EXPIRED,
    Reason.ARREARS,
    Reason.BLACKLISTED,
    Reason.OVER_QUOTA,
    Reason.POOL_OVER_QUOTA,
    Reason.MEMBER_CAP,
    Reason.MANUAL,
)


_ORDERED: dict[frozenset[Reason], tuple[Reason, ...]] = {}


def ordered(reasons: frozenset[Reason]) -> tuple[Reason, ...]:
    """`reasons` in canonical order. Remembered per set (at most 2^8 of them): testing an
    enum's membership hashes it in Python, which made this a hot spot of every decision."""
    known = _ORDERED.get(reasons)
    if known is None:
        known = _ORDERED[reasons] = tuple(r for r in REASON_ORDER if r in reasons)
    return known


class CardStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Profile:
    """What CRM and billing told us about the card (`card.upserted`), minus the balance."""

    customer_id: str
    plan: Plan
    billing: Billing
    expires_at: datetime
    cycle_day: int = 1
    timezone: str = "Asia/Shanghai"

    @classmethod
    def from_event(cls, event: CardUpserted) -> Profile:
        """`expires_at` is moved into the card's own timezone whatever offset it was written
        in: every calendar step derived from it (grace months, fees, cancellation) is local."""
        return cls(
            customer_id=event.customer_id,
            plan=event.plan,
            billing=event.billing,
            expires_at=event.expires_at.astimezone(zone(event.timezone)),
            cycle_day=event.cycle_day,
            timezone=event.timezone,
        )

    def local(self, instant: datetime) -> datetime:
        """`instant` in the card's timezone."""
        return instant.astimezone(zone(self.timezone))


@dataclass(frozen=True, slots=True)
class CardState:
    """Everything the lifecycle needs about one card, apart from its usage counters.

    `cycle` is the last billing cycle whose start has been processed (fees charged);
    `fired` holds the alert steps already announced in `cycle` (e.g. ``t80``, ``x100``);
    `milestones` the steps done outside cycles (expiry warnings, retention fees), keyed by
    the `expires_at` they belong to, so a renewal re-arms them; `transitions` counts the
    commands issued so far and makes each command id unique. `owed` is a prepaid card's
    unpaid fees; `arrears_since` when a postpaid card fell into arrears; `bills` a postpaid
    card's bills not yet due, as (due POSIX time, amount); `fee_month` the local month
    (yyyymm) of the last plan fee, so no month is charged twice; `rearm` counts the times
    the warn levels were re-armed within a cycle (a quota raised above the usage, a cycle
    named anew by a calendar change); it never goes back, which keeps every alert id of a
    second announcement distinct; `announce` the trigger of a suspension decided
    before the card had a profile (its alert waits for the customer); `held_debt` what the
    customer still owes from a cancelled card while this card is held `blacklisted`;
    `blacklisted` marks a card cancelled for its debt (the debt is its negative balance).
    """

    iccid: str
    profile: Profile | None = None
    balance: int = 0
    reasons: frozenset[Reason] = field(default_factory=frozenset)
    cancelled: bool = False
    cycle: date | None = None
    fired: frozenset[str] = field(default_factory=frozenset)
    milestones: frozenset[str] = field(default_factory=frozenset)
    transitions: int = 0
    owed: int = 0
    arrears_since: datetime | None = None
    blacklisted: bool = False
    bills: tuple[tuple[int, int], ...] = ()
    fee_month: int = 0
    rearm: int = 0
    announce: Reason | None = None
    held_debt: int = 0
    since: tuple[tuple[Reason, int], ...] = ()
    """When each held reason began (POSIX seconds), for explain."""
    pending: Pending | None = None
    """The latest command while the network has not confirmed it (``enforcement``)."""
    pool_stop: tuple[str, date] | None = None
    """(pool, cycle): the card's pool was exhausted in that cycle and stops its members."""
    overshoot_from: int | None = None
    """The cycle's used bytes when its over-quota suspension was decided: what is counted
    beyond it is the overshoot (usage the network let through before it stopped the card)."""

    @property
    def status(self) -> CardStatus:
        if self.cancelled:
            return CardStatus.CANCELLED
        return CardStatus.SUSPENDED if self.reasons else CardStatus.ACTIVE
