"""Fees and arrears (source rule 3, postpaid, the blacklist): what a rollover and a grace
month charge, when arrears begin, and what a payment restores.

Prepaid money is `balance` (never below zero by our doing) plus `owed` (fees the balance
could not cover). Postpaid money is one signed `balance`: negative is debt; the bills not
yet due are listed in `bills`, so the past-due debt is the debt minus those.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from simwatch_contracts import Billing, Reason

from .card import CardState, Profile
from .copying import replace
from .policy import Policy


@dataclass(frozen=True, slots=True)
class Charge:
    """A fee assessed (paid from the balance, owed, or billed): `kind` is ``plan_fee`` or
    ``retention_fee``; `ref` names what it pays for (the cycle, or the grace month)."""

    at: datetime
    kind: str
    amount: int
    ref: str


def month_of(local: datetime) -> int:
    return local.year * 100 + local.month


def plan_fee_due(state: CardState, profile: Profile, cycle_start: datetime) -> bool:
    """Whether the cycle starting at `cycle_start` owes its plan fee: not for a cycle that
    starts at or after the plan's expiry, and never twice in one local calendar month (a
    `cycle_day` moved mid-month must not charge the month again)."""
    fee = profile.plan.monthly_fee
    if fee == 0 or cycle_start >= profile.expires_at:
        return False
    return month_of(profile.local(cycle_start)) != state.fee_month


def charge_rollover(
    state: CardState, profile: Profile, at: datetime, cycle: str, policy: Policy
) -> tuple[CardState, Charge | None]:
    """The plan fee of the cycle starting at `at`, if it owes one."""
    if not plan_fee_due(state, profile, at):
        return state, None
    fee = profile.plan.monthly_fee
    state = replace(state, fee_month=month_of(profile.local(at)))
    return _assess(state, profile, at, fee, policy), Charge(at, "plan_fee", fee, cycle)


def charge_retention(
    state: CardState, profile: Profile, at: datetime, month: int, policy: Policy
) -> tuple[CardState, Charge | None]:
    """A grace month's number-retention fee (停机保号费), charged like a plan fee."""
    fee = policy.retention_fee
    if fee == 0:
        return state, None
    charge = Charge(at, "retention_fee", fee, str(month))
    if profile.billing is Billing.POSTPAID:
        return _assess(state, profile, at, fee, policy), charge
    paid = min(max(state.balance, 0), fee)  # the card is suspended already: take what there is
    state = replace(state, balance=state.balance - paid)
    if paid < fee:
        state = replace(
            state, owed=state.owed + fee - paid, reasons=state.reasons | {Reason.ARREARS}
        )
    return state, charge


def _assess(
    state: CardState, profile: Profile, at: datetime, fee: int, policy: Policy
) -> CardState:
    """Prepaid pays from the balance when it covers the fee and nothing is owed, else owes
    it and is in arrears; postpaid is billed, due after the payment period."""
    if profile.billing is Billing.PREPAID:
        if state.owed == 0 and state.balance >= fee:
            return replace(state, balance=state.balance - fee)
        return replace(state, owed=state.owed + fee, reasons=state.reasons | {Reason.ARREARS})
    due = at + timedelta(days=policy.postpaid_due_days)
    bills = (*state.bills, (int(due.timestamp()), fee))
    return replace(state, balance=state.balance - fee, bills=bills)


def past_due(state: CardState) -> int:
    """A postpaid card's debt whose bills have fallen due."""
    not_due = sum(amount for _, amount in state.bills)
    return max(0, -state.balance - not_due)


def bills_fall_due(state: CardState, profile: Profile, at: datetime) -> CardState:
    """Bills due at or before `at` become past-due debt; past the credit limit the card is in
    arrears from `at` (the cancellation clock starts)."""
    now = at.timestamp()
    state = replace(state, bills=tuple(b for b in state.bills if b[0] > now))
    over = past_due(state) > (profile.plan.credit_limit or 0)
    if over and Reason.ARREARS not in state.reasons:
        return replace(
            state, reasons=state.reasons | {Reason.ARREARS}, arrears_since=profile.local(at)
        )
    return state


def restorable(state: CardState, profile: Profile) -> bool:
    """A payment covers what is owed: prepaid, the unpaid fees; postpaid, the past-due debt
    beyond the credit limit."""
    if Reason.ARREARS not in state.reasons:
        return False
    if profile.billing is Billing.PREPAID:
        return state.balance >= state.owed
    return past_due(state) <= (profile.plan.credit_limit or 0)


def lift_arrears(state: CardState) -> CardState:
    """Settle what is owed from the balance and lift the arrears reason ("recharge, then
    restore"); for postpaid this also stops the cancellation clock. Callers check
    `restorable` first."""
    return replace(
        state,
        balance=state.balance - state.owed,
        owed=0,
        arrears_since=None,
        reasons=state.reasons - {Reason.ARREARS},
    )


def recharge(state: CardState, profile: Profile | None, amount: int) -> CardState:
    """A top-up or payment. A card held for its customer's old debt pays that first.
    Postpaid restores as soon as the past-due debt is back within the credit limit (paying
    stops the cancellation clock); prepaid only where the plan says so (else the customer
    asks for the restore)."""
    if Reason.BLACKLISTED in state.reasons:
        paid = min(amount, state.held_debt)
        amount -= paid
        state = replace(state, held_debt=state.held_debt - paid)
        if state.held_debt == 0:
            state = replace(state, reasons=state.reasons - {Reason.BLACKLISTED})
    state = replace(state, balance=state.balance + amount)
    if profile is None or not restorable(state, profile):
        return state
    if profile.billing is Billing.POSTPAID or profile.plan.auto_restore_on_recharge:
        return lift_arrears(state)
    return state


def settle_held(state: CardState, customer_debt: int) -> CardState:
    """What the customer still owes, as the blacklist now says (paid elsewhere, e.g. on the
    cancelled card's own account): a card held for it is released once it is all paid."""
    if Reason.BLACKLISTED not in state.reasons:
        return state
    held = min(state.held_debt, max(customer_debt, 0))
    if held == 0:
        return replace(state, held_debt=0, reasons=state.reasons - {Reason.BLACKLISTED})
    return replace(state, held_debt=held)


def shortfall(state: CardState, profile: Profile) -> int:
    """What the next rollover needs beyond the balance (0: covered). Prepaid only."""
    if profile.billing is not Billing.PREPAID:
        return 0
    need = state.owed + profile.plan.monthly_fee
    return max(0, need - state.balance)
