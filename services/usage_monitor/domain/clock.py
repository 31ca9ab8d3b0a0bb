"""The clock: due steps (rollovers, bills falling due, fee and expiry warnings, expiry,
retention fees, cancellation) taken in order, each at most once."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta

from simwatch_contracts import AlertType, Reason

from . import billing
from .copying import replace
from .cycles import days_left, next_cycle
from .draft import Draft
from .effects import alert
from .steps import Step, StepKind, schedule
from .usage_rules import with_usage_reasons

MAX_STEPS = 10_000  # a card years behind still catches up; a bug cannot loop forever


def advance(
    d: Draft, usage: Mapping[date, int], now: datetime, floor: datetime | None = None
) -> None:
    """Take every step due at or before `now`. A step found due when a card first arrives
    (or gets a new term) is decided at `floor`, the instant it became known."""
    for _ in range(MAX_STEPS):
        steps = schedule(d.state, d.policy)
        if not steps or steps[0].at > now:
            return
        step = steps[0]
        at = max(step.at, floor) if floor is not None else step.at
        _do_step(d, step, steps, usage, now, at)
    raise RuntimeError(f"card {d.state.iccid[-4:]}: more than {MAX_STEPS} steps due")


def _do_step(
    d: Draft,
    step: Step,
    steps: list[Step],
    usage: Mapping[date, int],
    now: datetime,
    at: datetime,
) -> None:
    s = d.state
    assert s.profile is not None, "steps are scheduled for cards with a profile"
    assert s.cycle is not None, "and a cycle"
    profile = s.profile
    before, joined = s.reasons, d.since is not None
    if step.kind is StepKind.ROLLOVER:
        _rollover(d, step, usage)
    elif step.kind is StepKind.BILL_DUE:
        d.state = billing.bills_fall_due(s, profile, step.at)
    elif step.kind is StepKind.RETENTION_FEE:
        d.mark(step)
        if Reason.EXPIRED in s.reasons:
            d.state, charge = billing.charge_retention(d.state, profile, at, step.month, d.policy)
            d.charges.extend([charge] if charge else [])
    elif step.kind is StepKind.BALANCE_WARNING:
        d.mark(step)
        _warn_balance(d, step, now)
    elif step.kind is StepKind.EXPIRY_WARNING:
        d.mark(step)
        _warn_expiry(d, step, steps, now)
    else:
        d.mark(step)
        _end_of_term(d, step, steps, at)
    if not joined:  # else the event's own transition covers this step too
        d.transition(before, at)


def _rollover(d: Draft, step: Step, usage: Mapping[date, int]) -> None:
    """A new cycle: its plan fee, every warn level re-armed, over-quota decided anew."""
    s, profile = d.state, d.state.profile
    assert profile is not None
    assert s.cycle is not None
    cycle = next_cycle(s.cycle)
    s = replace(s, cycle=cycle, fired=frozenset())
    s, charge = billing.charge_rollover(s, profile, step.at, cycle.isoformat(), d.policy)
    d.charges.extend([charge] if charge else [])
    d.state = replace(s, reasons=with_usage_reasons(s, profile, usage.get(cycle, 0)))


def _end_of_term(d: Draft, step: Step, steps: list[Step], at: datetime) -> None:
    s = d.state
    if step.kind is StepKind.EXPIRE:
        d.state = replace(s, reasons=s.reasons | {Reason.EXPIRED})
        return
    # The two cancellations falling due at the same instant are one: its trigger the first
    # in priority order (expired), and the arrears' debt blacklisted all the same.
    now = {o.kind for o in steps if o.at == step.at} | {step.kind}
    expired = StepKind.CANCEL_EXPIRED in now and Reason.EXPIRED in s.reasons
    arrears = StepKind.CANCEL_ARREARS in now and Reason.ARREARS in s.reasons
    if expired or arrears:
        d.cancel(Reason.EXPIRED if expired else Reason.ARREARS, at, blacklist=arrears)


def _warn_expiry(d: Draft, step: Step, steps: list[Step], now: datetime) -> None:
    """A warning is about the time left *now*: when several fell due together (a late
    catch-up, a card arriving close to its expiry) only the latest is sent, and none once
    the plan has ended."""
    profile = d.state.profile
    assert profile is not None
    later = any(o.kind is StepKind.EXPIRY_WARNING and step.at < o.at <= now for o in steps)
    if later or profile.expires_at <= now:
        return
    days = days_left(profile.expires_at, now, profile.timezone)
    d.alerts.append(
        alert(
            d.state,
            AlertType.EXPIRY_UPCOMING,
            now,
            step.key,
            expires_at=profile.expires_at,
            days_left=days,
        )
    )


def _warn_balance(d: Draft, step: Step, now: datetime) -> None:
    s = d.state
    assert s.profile is not None
    rollover_at = step.at + timedelta(days=d.policy.balance_warning_days)
    if rollover_at <= now or not billing.plan_fee_due(s, s.profile, rollover_at):
        return  # the rollover already happened, or it charges no fee
    if billing.shortfall(s, s.profile) > 0:
        due = s.owed + s.profile.plan.monthly_fee
        d.alerts.append(
            alert(
                s, AlertType.BALANCE_INSUFFICIENT, now, step.key, balance=s.balance, amount_due=due
            )
        )
