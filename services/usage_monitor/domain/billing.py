"""Fees and arrears (source rule 3, and postpaid): what a rollover charges, when arrears
begin, and when a payment makes the card restorable."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from simwatch_contracts import Billing, Reason

from .card import CardState, Profile


def charge_rollover(state: CardState, profile: Profile, at: datetime) -> CardState:
    """The plan fee of the cycle starting at `at`. Prepaid pays from the balance or owes it
    (arrears); postpaid accrues it as debt, in arrears past the credit limit. An expired plan
    has no plan fee (its number-retention fee is charged instead)."""
    fee = profile.plan.monthly_fee
    if fee == 0 or Reason.EXPIRED in state.reasons:
        return state
    if profile.billing is Billing.PREPAID:
        if state.owed == 0 and state.balance >= fee:
            return replace(state, balance=state.balance - fee)
        return replace(state, owed=state.owed + fee, reasons=state.reasons | {Reason.ARREARS})
    state = replace(state, balance=state.balance - fee)
    if -state.balance > (profile.plan.credit_limit or 0) and Reason.ARREARS not in state.reasons:
        state = replace(state, reasons=state.reasons | {Reason.ARREARS}, arrears_since=at)
    return state


def restorable(state: CardState, profile: Profile) -> bool:
    """A payment covers what is owed: prepaid, the unpaid fees; postpaid, the whole debt."""
    if Reason.ARREARS not in state.reasons:
        return False
    if profile.billing is Billing.PREPAID:
        return state.balance >= state.owed
    return state.balance >= 0


def lift_arrears(state: CardState) -> CardState:
    """Settle what is owed from the balance and lift the arrears reason ("recharge, then
    restore"). Callers check `restorable` first."""
    return replace(
        state,
        balance=state.balance - state.owed,
        owed=0,
        arrears_since=None,
        reasons=state.reasons - {Reason.ARREARS},
    )


def recharge(state: CardState, profile: Profile, amount: int) -> CardState:
    """A top-up or payment; restores at once only where the plan says so."""
    state = replace(state, balance=state.balance + amount)
    if profile.plan.auto_restore_on_recharge and restorable(state, profile):
        state = lift_arrears(state)
    return state


def shortfall(state: CardState, profile: Profile) -> int:
    """What the next rollover needs beyond the balance (0: covered). Prepaid only."""
    if profile.billing is not Billing.PREPAID:
        return 0
    need = state.owed + profile.plan.monthly_fee
    return max(0, need - state.balance)
