"""Drive the production domain over a `Scenario` the way the running service does: usage is
counted per cycle in the card's calendar at arrival (as ``ingest.lua`` does), the card is
evaluated after each record, card events go through `apply_event`, and the clock wakes the
card exactly when its decision says it is next due (as the due-time sets do)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from simwatch_contracts import AlertType, CardAlert, CardCommand
from usage_monitor.domain.billing import Charge
from usage_monitor.domain.card import CardState
from usage_monitor.domain.cycles import cycle_of
from usage_monitor.domain.lifecycle import Decision, apply_event, evaluate
from usage_monitor.domain.policy import Policy

from .scenario import Effect, Scenario, Usage

MAX_TICKS = 5_000

_PERCENT = {AlertType.USAGE_THRESHOLD, AlertType.QUOTA_EXHAUSTED}
_TRANSITION = {AlertType.SUSPENDED, AlertType.RESUMED, AlertType.CANCELLED}


def policy_of(scenario: Scenario) -> Policy:
    p = scenario.policy
    return Policy(
        expiry_leads_days=p.expiry_leads_days,
        grace_months=p.grace_months,
        retention_fee=p.retention_fee,
        balance_warning_days=p.balance_warning_days,
        postpaid_cancel_months=p.postpaid_cancel_months,
        postpaid_due_days=p.postpaid_due_days,
        default_timezone=p.default_timezone,
    )


def run(scenario: Scenario) -> tuple[list[Effect], CardState]:
    """Every effect the production domain decides up to `scenario.until`, and the end state."""
    effects, state, _ = simulate(scenario)
    return effects, state


def simulate(scenario: Scenario) -> tuple[list[Effect], CardState, dict[date, int]]:
    """`run`, and the usage counters per cycle at the end."""
    policy = policy_of(scenario)
    state = CardState(scenario.iccid)
    usage: dict[date, int] = {}
    effects: list[Effect] = []
    due: datetime | None = None

    def take(d: Decision) -> None:
        nonlocal state, due
        state, due = d.state, d.due
        effects.extend(_effects(d))

    def tick_until(limit: datetime) -> None:
        for _ in range(MAX_TICKS):
            if due is None or due > limit:
                return
            take(evaluate(state, usage, due, policy))
        raise AssertionError("the clock does not move forward")

    for inp in scenario.inputs:
        tick_until(inp.at)
        if isinstance(inp.item, Usage):
            profile = state.profile
            tz = profile.timezone if profile else policy.default_timezone
            day = profile.cycle_day if profile else policy.default_cycle_day
            cycle = cycle_of(inp.item.event_time, tz, day)
            usage[cycle] = usage.get(cycle, 0) + inp.item.nbytes
            take(evaluate(state, usage, inp.at, policy))
        else:
            take(apply_event(state, inp.item, usage, inp.at, policy, scenario.customer_debt))
    tick_until(scenario.until)
    return sorted(effects), state, usage


def _effects(d: Decision) -> list[Effect]:
    out = [_of_command(c) for c in d.commands]
    out += [_of_alert(a) for a in d.alerts]
    out += [_of_charge(c) for c in d.charges]
    return out


def _utc(at: datetime) -> datetime:
    return at.astimezone(UTC)


def _of_command(c: CardCommand) -> Effect:
    detail = (c.trigger.value, *sorted(r.value for r in c.reasons))
    return Effect(_utc(c.issued_at), "command", c.type.value, detail)


def _of_alert(a: CardAlert) -> Effect:
    detail: tuple[object, ...]
    if a.type in _PERCENT:
        detail = (a.percent,)
    elif a.type is AlertType.EXPIRY_UPCOMING:
        detail = (a.days_left,)
    elif a.type is AlertType.BALANCE_INSUFFICIENT:
        detail = (a.amount_due,)
    elif a.type in _TRANSITION:
        assert a.trigger is not None
        detail = (a.trigger.value, *sorted(r.value for r in a.reasons or ()))
    else:
        detail = ()
    return Effect(_utc(a.occurred_at), "alert", a.type.value, detail)


def _of_charge(c: Charge) -> Effect:
    ref: object = c.ref if c.kind == "plan_fee" else int(c.ref)
    return Effect(_utc(c.at), "charge", c.kind, (c.amount, ref))
