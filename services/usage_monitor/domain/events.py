"""`card.events`: the direct effect of each event on a card's state. Transitions (commands
and their alerts) are decided by the caller from the change of the reason set."""

from __future__ import annotations

from datetime import datetime

from simwatch_contracts import (
    CardEvent,
    CardRecharged,
    CardRenewed,
    CardUpserted,
    Reason,
    ResumeRequested,
    SuspendRequested,
    ViolationCleared,
    ViolationReported,
)

from . import billing
from .card import CardState, Profile, ordered
from .copying import replace
from .cycles import cycle_of
from .draft import Draft
from .steps import StepKind, schedule


def apply(d: Draft, event: CardEvent, now: datetime, customer_debt: int) -> str | None:
    """Change `d.state` as the event says; returns why (part of) it was refused, if so."""
    s = d.state
    match event:
        case CardUpserted():
            d.state = _upsert(d, Profile.from_event(event), event.balance, now, customer_debt)
        case CardRecharged():
            d.state = billing.recharge(s, s.profile, event.amount)
        case CardRenewed():
            if s.profile is None:
                return "renewal of a card without a profile"
            if event.expires_at <= now:
                return "renewal to a date already past"
            expires = s.profile.local(event.expires_at)
            d.state = _lift_expired(replace(s, profile=replace(s.profile, expires_at=expires)), now)
        case SuspendRequested():
            # The customer's stop is its own reason whatever else holds: it survives the
            # lifting of every other reason (e.g. the next cycle after an over-quota stop).
            d.state = replace(s, reasons=s.reasons | {Reason.MANUAL})
        case ResumeRequested():
            d.state, note = _resume(s)
            return note
        case ViolationReported():
            d.state = replace(s, reasons=s.reasons | {Reason.VIOLATION})
        case ViolationCleared():
            d.state = replace(s, reasons=s.reasons - {Reason.VIOLATION})
    return None


def _upsert(
    d: Draft, profile: Profile, balance: int, now: datetime, customer_debt: int
) -> CardState:
    """A new or replaced profile. Its balance is billing's word: fees that fell due before
    it (a new term's retention fees) are not charged again. A new card of a customer who
    still owes a cancelled card's debt is held until that debt is paid."""
    state = d.state
    old = state.profile
    if old is not None and (profile.expires_at < old.expires_at or profile.expires_at <= now):
        # A profile changes the term only as a renewal (a later date, in the future): an
        # earlier or past date is a stale copy, and taking it would move the grace period
        # and could cancel a card at once (cancellation loses the number for good).
        profile = replace(profile, expires_at=old.expires_at)
    state = replace(state, profile=profile, balance=balance)
    if old is None and customer_debt > 0:
        state = replace(
            state, reasons=state.reasons | {Reason.BLACKLISTED}, held_debt=customer_debt
        )
    calendar_changed = old is None or (old.timezone, old.cycle_day) != (
        profile.timezone,
        profile.cycle_day,
    )
    if calendar_changed or state.cycle is None:
        cycle = cycle_of(now, profile.timezone, profile.cycle_day)
        if cycle != state.cycle:
            # A cycle named anew may be one announced before (a cycle_day moved and back):
            # a new arming keeps its alert ids distinct.
            rearm = state.rearm + 1 if old is not None else 0
            state = replace(state, cycle=cycle, fired=frozenset(), rearm=rearm)
    if old is None and state.cycle is not None:
        # The cycle the card arrives in is paid for by the balance billing gave us.
        state = replace(state, fee_month=state.cycle.year * 100 + state.cycle.month)
    past_fees = {
        s.key for s in schedule(state, d.policy) if s.kind is StepKind.RETENTION_FEE and s.at <= now
    }
    return _lift_expired(replace(state, milestones=state.milestones | past_fees), now)


def _lift_expired(state: CardState, now: datetime) -> CardState:
    """A term that ends in the future lifts the expiry suspension (renewal within grace)."""
    if Reason.EXPIRED in state.reasons and state.profile and state.profile.expires_at > now:
        return replace(state, reasons=state.reasons - {Reason.EXPIRED})
    return state


def _resume(state: CardState) -> tuple[CardState, str | None]:
    """A manual start lifts the manual reason, and arrears once the balance covers what is
    owed ("recharge, then restore"); it never bypasses any other reason."""
    lifted = False
    if Reason.MANUAL in state.reasons:
        state, lifted = replace(state, reasons=state.reasons - {Reason.MANUAL}), True
    if state.profile is not None and billing.restorable(state, state.profile):
        state, lifted = billing.lift_arrears(state), True
    if not lifted:
        held = ", ".join(ordered(state.reasons)) or "none"
        return state, f"nothing a customer can restore (reasons held: {held})"
    remaining = ", ".join(ordered(state.reasons))
    return state, (f"still suspended ({remaining})" if remaining else None)
