"""Why a card is in its state and what would change it, decided by the same rules that
suspend it: each held reason with since when, the facts it rests on, and what lifts it (the
next cycle's start, the least recharge or payment, the renewal deadline, ...).

Pure: texts come from `explain_texts`, the card from its state and counters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from simwatch_contracts import Billing, LiftHint, Reason

from . import billing
from .card import CardState, CardStatus, ordered
from .cycles import add_months, cycle_start, next_cycle, zone
from .policy import Policy
from .steps import schedule


class Lifts:
    """`lifts.how` values of the contract."""

    NEXT_CYCLE = "next_cycle"
    RECHARGE = "recharge"
    PAY_DEBT = "pay_debt"
    RENEW = "renew"
    CUSTOMER_RESUME = "customer_resume"
    VIOLATION_CLEARED = "violation_cleared"
    RAISE_QUOTA = "raise_quota"
    POOL_NEXT_CYCLE = "pool_next_cycle"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Lift:
    how: str
    at: datetime | None = None
    amount: int | None = None
    deadline: datetime | None = None
    then_resume: bool = False
    """A recharge restores only with the customer's restore request afterwards."""


@dataclass(frozen=True, slots=True)
class HeldReason:
    reason: Reason
    since: datetime | None
    facts: Mapping[str, object]
    lifts: Lift


@dataclass(frozen=True, slots=True)
class Explanation:
    iccid: str
    status: CardStatus
    reasons: tuple[HeldReason, ...]
    next: tuple[tuple[str, datetime], ...] = ()
    facts: Mapping[str, object] = field(default_factory=dict)


def explain(
    state: CardState, usage: Mapping[date, int], now: datetime, policy: Policy
) -> Explanation:
    """The card as of `now` (its state brought up to `now` by the caller)."""
    profile = state.profile
    tz = zone(profile.timezone if profile else policy.default_timezone)
    since = {r: datetime.fromtimestamp(t, tz) for r, t in state.since}
    if state.cancelled:  # the reasons it was cancelled with; nothing lifts them
        gone = tuple(
            HeldReason(r, since.get(r), _facts(r, state, usage, policy), Lift(Lifts.NONE))
            for r in ordered(state.reasons)
        )
        return Explanation(state.iccid, CardStatus.CANCELLED, gone, ())
    held = tuple(
        HeldReason(r, since.get(r), _facts(r, state, usage, policy), _lift(r, state, policy))
        for r in ordered(state.reasons)
    )
    upcoming = tuple((s.kind.value, s.at) for s in schedule(state, policy)[:3])
    return Explanation(state.iccid, state.status, held, upcoming)


def lift_hints(state: CardState, policy: Policy) -> tuple[LiftHint, ...]:
    """What lifts each held reason, as a `suspended` alert carries it."""
    out = []
    for r in ordered(state.reasons):
        lift = _lift(r, state, policy)
        out.append(
            LiftHint(reason=r, how=lift.how, at=lift.at, amount=lift.amount, deadline=lift.deadline)
        )
    return tuple(out)


def _facts(
    reason: Reason, state: CardState, usage: Mapping[date, int], policy: Policy
) -> dict[str, object]:
    p = state.profile
    if p is None:
        return {}
    if reason is Reason.OVER_QUOTA and state.cycle is not None:
        return {
            "cycle": state.cycle.isoformat(),
            "used_bytes": usage.get(state.cycle, 0),
            "quota_bytes": p.plan.quota_bytes,
        }
    if reason is Reason.ARREARS and p.billing is Billing.PREPAID:
        return {"balance": state.balance, "owed": state.owed, "fee": p.plan.monthly_fee}
    if reason is Reason.ARREARS:
        return {
            "debt": max(0, -state.balance),
            "past_due": billing.past_due(state),
            "credit_limit": p.plan.credit_limit or 0,
        }
    if reason is Reason.EXPIRED:
        return {
            "expires_at": p.expires_at.isoformat(),
            "retention_fee": policy.retention_fee,
        }
    if reason is Reason.BLACKLISTED:
        return {"customer_debt": state.held_debt}
    if reason is Reason.MEMBER_CAP and state.cycle is not None:
        return {
            "cycle": state.cycle.isoformat(),
            "used_bytes": usage.get(state.cycle, 0),
            "member_cap_bytes": p.plan.member_cap_bytes,
        }
    if reason is Reason.POOL_OVER_QUOTA and state.cycle is not None:
        return {"pool_id": p.plan.pool_id, "cycle": state.cycle.isoformat()}
    return {}


def _lift(reason: Reason, state: CardState, policy: Policy) -> Lift:
    p = state.profile
    if reason is Reason.MANUAL or p is None:
        return Lift(Lifts.CUSTOMER_RESUME if reason is Reason.MANUAL else Lifts.NONE)
    if reason is Reason.VIOLATION:
        return Lift(Lifts.VIOLATION_CLEARED)
    if reason is Reason.OVER_QUOTA and (state.cycle is None or p.plan.quota_bytes == 0):
        return Lift(Lifts.RAISE_QUOTA)  # a zero quota is over at every cycle's start
    if reason is Reason.OVER_QUOTA and state.cycle is not None:
        return Lift(Lifts.NEXT_CYCLE, at=cycle_start(next_cycle(state.cycle), p.timezone))
    if reason in (Reason.POOL_OVER_QUOTA, Reason.MEMBER_CAP) and state.cycle is not None:
        # A member's cycle is its pool's: both are lifted when that cycle ends.
        how = Lifts.POOL_NEXT_CYCLE if reason is Reason.POOL_OVER_QUOTA else Lifts.NEXT_CYCLE
        return Lift(how, at=cycle_start(next_cycle(state.cycle), p.timezone))
    if reason is Reason.EXPIRED:
        return Lift(Lifts.RENEW, deadline=add_months(p.expires_at, policy.grace_months))
    if reason is Reason.BLACKLISTED:
        return Lift(Lifts.PAY_DEBT, amount=state.held_debt)
    # A recharge of a card held for its customer's old debt pays that debt first, so a
    # shortfall of the card's own needs that much more; a card whose balance already covers
    # what it owes needs only the customer's resume (which does not touch the held debt).
    first = state.held_debt if Reason.BLACKLISTED in state.reasons else 0
    if reason is Reason.ARREARS and p.billing is Billing.PREPAID:
        need = max(0, state.owed - state.balance)
        if need == 0:
            return Lift(Lifts.CUSTOMER_RESUME)
        resume = not p.plan.auto_restore_on_recharge
        return Lift(Lifts.RECHARGE, amount=need + first, then_resume=resume)
    if reason is Reason.ARREARS:
        need = billing.past_due(state) - (p.plan.credit_limit or 0)
        return (
            Lift(Lifts.PAY_DEBT, amount=need + first) if need > 0 else Lift(Lifts.CUSTOMER_RESUME)
        )
    return Lift(Lifts.NONE)
