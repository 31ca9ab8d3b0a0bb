"""Decisions: given a card's state, its usage counters, the time and an input, the new state
and the alerts and commands to publish.

Three things move a card, always in this order: the clock (due steps, earliest first:
rollovers, fee warnings, expiry, retention fees, cancellation), an event (`card.events`),
and usage (warn levels, exhaustion, the over-quota reason). Usage is *level-triggered*: it
is derived from the cycle's counter, never from one record's delta, and what was announced
is remembered, so evaluating a card again (after a crash, a redelivery, a lost race) is
always safe and decides nothing twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

from simwatch_contracts import (
    AlertType,
    CardAlert,
    CardCommand,
    CardEvent,
    CardRecharged,
    CardRenewed,
    CardUpserted,
    CommandType,
    Reason,
    ResumeRequested,
    SuspendRequested,
    ViolationCleared,
    ViolationReported,
)

from . import billing
from .card import REASON_ORDER, CardState, Profile, ordered
from .cycles import cycle_of, next_cycle
from .effects import alert, command
from .policy import DEFAULT_POLICY, Policy
from .steps import Step, StepKind, next_due, schedule
from .usage_rules import NEVER, crossed_steps, wake_level, with_over_quota

__all__ = ["NEVER", "Decision", "apply_event", "current_cycle", "evaluate"]
MAX_STEPS = 10_000  # a card years behind still catches up; a bug cannot loop forever


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one input. `wakes` maps a cycle to the used-bytes level at which the
    card must be evaluated again (``NEVER`` for none); `due` is when the clock next needs
    the card (None: never)."""

    state: CardState
    alerts: tuple[CardAlert, ...] = ()
    commands: tuple[CardCommand, ...] = ()
    wakes: Mapping[date, int] = field(default_factory=dict)
    rejected: str | None = None
    due: datetime | None = None

    @property
    def changed(self) -> bool:
        return bool(self.alerts or self.commands)


def current_cycle(profile: Profile, now: datetime) -> date:
    return cycle_of(now, profile.timezone, profile.cycle_day)


def evaluate(
    state: CardState, usage: Mapping[date, int], now: datetime, policy: Policy = DEFAULT_POLICY
) -> Decision:
    """Bring the card up to `now`: due steps in order, then its usage."""
    draft = _Draft(state)
    _advance(draft, usage, now, policy)
    _settle_usage(draft, usage, now)
    return draft.decision(usage, policy)


def apply_event(
    state: CardState,
    event: CardEvent,
    usage: Mapping[date, int],
    now: datetime,
    policy: Policy = DEFAULT_POLICY,
) -> Decision:
    """Apply one `card.events` message to a card brought up to `now`."""
    if state.cancelled:
        return Decision(state, rejected="card is cancelled", wakes=dict.fromkeys(usage, NEVER))
    draft = _Draft(state)
    _advance(draft, usage, now, policy)
    before = draft.state.reasons
    rejected = _apply(draft, event, now, policy)
    draft.transition(before, now)
    _advance(draft, usage, now, policy)  # a new profile or term may have steps already due
    _settle_usage(draft, usage, now)
    return draft.decision(usage, policy, rejected)


@dataclass(slots=True)
class _Draft:
    """A decision being built: the state so far and the messages decided so far."""

    state: CardState
    alerts: list[CardAlert] = field(default_factory=list)
    commands: list[CardCommand] = field(default_factory=list)

    def transition(self, before: frozenset[Reason], at: datetime) -> None:
        """`suspend` when the reason set becomes non-empty, `resume` when it empties."""
        after = self.state.reasons
        if bool(before) == bool(after) or self.state.cancelled:
            return
        if after:
            self._issue(CommandType.SUSPEND, AlertType.SUSPENDED, _first(after - before), at)
        else:
            self._issue(CommandType.RESUME, AlertType.RESUMED, _first(before), at)

    def cancel(self, trigger: Reason, at: datetime, *, blacklist: bool = False) -> None:
        self.state = replace(self.state, cancelled=True, blacklisted=blacklist)
        self._issue(CommandType.CANCEL, AlertType.CANCELLED, trigger, at)

    def _issue(
        self, kind: CommandType, alert_kind: AlertType, trigger: Reason, at: datetime
    ) -> None:
        seq = self.state.transitions + 1
        self.state = replace(self.state, transitions=seq)
        self.commands.append(command(self.state, kind, trigger, at))
        self.alerts.append(
            alert(
                self.state,
                alert_kind,
                at,
                f"n{seq}",
                trigger=trigger,
                reasons=ordered(self.state.reasons),
            )
        )

    def mark(self, step: Step) -> None:
        self.state = replace(self.state, milestones=self.state.milestones | {step.key})

    def decision(
        self, usage: Mapping[date, int], policy: Policy, rejected: str | None = None
    ) -> Decision:
        state = self.state
        cycle, profile = state.cycle, state.profile
        if profile is None or cycle is None:
            wakes = dict.fromkeys(usage, NEVER)
        else:
            wakes = {c: NEVER for c in usage if c < cycle}
            wakes[cycle] = wake_level(state, profile)
        return Decision(
            state,
            tuple(self.alerts),
            tuple(self.commands),
            wakes,
            rejected,
            next_due(state, policy),
        )


def _first(reasons: frozenset[Reason]) -> Reason:
    return next(r for r in REASON_ORDER if r in reasons)


# --- the clock ------------------------------------------------------------------------


def _advance(d: _Draft, usage: Mapping[date, int], now: datetime, policy: Policy) -> None:
    for _ in range(MAX_STEPS):
        steps = schedule(d.state, policy)
        if not steps or steps[0].at > now:
            return
        _do_step(d, steps[0], steps, usage, now, policy)
    raise RuntimeError(f"card {d.state.iccid}: more than {MAX_STEPS} steps due")


def _do_step(
    d: _Draft,
    step: Step,
    steps: list[Step],
    usage: Mapping[date, int],
    now: datetime,
    policy: Policy,
) -> None:
    s = d.state
    assert s.profile is not None, "steps are scheduled for cards with a profile"
    assert s.cycle is not None, "and a cycle"
    profile = s.profile
    before = s.reasons
    if step.kind is StepKind.ROLLOVER:
        cycle = next_cycle(s.cycle)
        s = billing.charge_rollover(replace(s, cycle=cycle, fired=frozenset()), profile, step.at)
        d.state = replace(s, reasons=with_over_quota(s.reasons, profile, usage.get(cycle, 0)))
        d.transition(before, step.at)
        return
    d.mark(step)
    if step.kind is StepKind.BALANCE_WARNING:
        _warn_balance(d, step, now, policy)
    elif step.kind is StepKind.EXPIRY_WARNING:
        later = any(o.kind is StepKind.EXPIRY_WARNING and step.at < o.at <= now for o in steps)
        if not later and profile.expires_at > now:  # only the latest warning still relevant
            days = -(-(profile.expires_at - now) // timedelta(days=1))
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
    elif step.kind is StepKind.EXPIRE:
        d.state = replace(d.state, reasons=d.state.reasons | {Reason.EXPIRED})
        d.transition(before, step.at)
    elif step.kind is StepKind.RETENTION_FEE:
        if Reason.EXPIRED in d.state.reasons:
            d.state = replace(d.state, balance=d.state.balance - policy.retention_fee)
    elif step.kind is StepKind.CANCEL_EXPIRED:
        if Reason.EXPIRED in d.state.reasons:
            d.cancel(Reason.EXPIRED, step.at)
    elif step.kind is StepKind.CANCEL_ARREARS and Reason.ARREARS in d.state.reasons:
        d.cancel(Reason.ARREARS, step.at, blacklist=True)


def _warn_balance(d: _Draft, step: Step, now: datetime, policy: Policy) -> None:
    s = d.state
    assert s.profile is not None
    rollover_at = step.at + timedelta(days=policy.balance_warning_days)
    if rollover_at <= now or s.profile.expires_at <= rollover_at:
        return  # the rollover already happened, or the plan ends first (no plan fee then)
    if billing.shortfall(s, s.profile) > 0:
        due = s.owed + s.profile.plan.monthly_fee
        d.alerts.append(
            alert(
                s, AlertType.BALANCE_INSUFFICIENT, now, step.key, balance=s.balance, amount_due=due
            )
        )


# --- events ---------------------------------------------------------------------------


def _apply(d: _Draft, event: CardEvent, now: datetime, policy: Policy) -> str | None:
    """The event's direct effect on state; transitions are decided by the caller."""
    s = d.state
    match event:
        case CardUpserted():
            d.state = _upsert(s, Profile.from_event(event), event.balance, now, policy)
        case CardRecharged():
            d.state = (
                billing.recharge(s, s.profile, event.amount)
                if s.profile
                else replace(s, balance=s.balance + event.amount)
            )
        case CardRenewed():
            if s.profile is None:
                return "renewal of a card without a profile"
            d.state = _lift_expired(
                replace(s, profile=replace(s.profile, expires_at=event.expires_at)), now
            )
        case SuspendRequested():
            d.state, note = _manual_suspend(s)
            return note
        case ResumeRequested():
            d.state, note = _resume(s)
            return note
        case ViolationReported():
            d.state = replace(s, reasons=s.reasons | {Reason.VIOLATION})
        case ViolationCleared():
            d.state = replace(s, reasons=s.reasons - {Reason.VIOLATION})
    return None


def _upsert(
    state: CardState, profile: Profile, balance: int, now: datetime, policy: Policy
) -> CardState:
    """A new or replaced profile. Its balance is billing's word: fees that fell due before
    it (a new term's retention fees) are not charged again."""
    old = state.profile
    state = replace(state, profile=profile, balance=balance)
    calendar_changed = old is None or (old.timezone, old.cycle_day) != (
        profile.timezone,
        profile.cycle_day,
    )
    if calendar_changed or state.cycle is None:
        cycle = current_cycle(profile, now)
        if cycle != state.cycle:
            state = replace(state, cycle=cycle, fired=frozenset())
    past_fees = {
        s.key for s in schedule(state, policy) if s.kind is StepKind.RETENTION_FEE and s.at <= now
    }
    return _lift_expired(replace(state, milestones=state.milestones | past_fees), now)


def _lift_expired(state: CardState, now: datetime) -> CardState:
    """A term that ends in the future lifts the expiry suspension (renewal within grace)."""
    if Reason.EXPIRED in state.reasons and state.profile and state.profile.expires_at > now:
        return replace(state, reasons=state.reasons - {Reason.EXPIRED})
    return state


def _manual_suspend(state: CardState) -> tuple[CardState, str | None]:
    """The source: a card may be stopped by hand only while otherwise in good standing."""
    if Reason.MANUAL in state.reasons:
        return state, None
    if state.reasons:
        held = ", ".join(ordered(state.reasons))
        return state, f"manual stop refused: card already suspended ({held})"
    return replace(state, reasons=state.reasons | {Reason.MANUAL}), None


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


# --- usage ----------------------------------------------------------------------------


def _settle_usage(d: _Draft, usage: Mapping[date, int], now: datetime) -> None:
    s = d.state
    profile = s.profile
    if profile is None or s.cancelled:
        return
    if s.cycle is None:
        s = d.state = replace(s, cycle=current_cycle(profile, now))
    assert s.cycle is not None
    used = usage.get(s.cycle, 0)
    quota = profile.plan.quota_bytes
    crossed = crossed_steps(s, profile, used)
    d.state = replace(s, fired=s.fired | {step for step, _ in crossed})
    for step, percent in crossed:
        kind = AlertType.QUOTA_EXHAUSTED if step == "x100" else AlertType.USAGE_THRESHOLD
        d.alerts.append(
            alert(d.state, kind, now, step, percent=percent, used_bytes=used, quota_bytes=quota)
        )
    before = d.state.reasons
    d.state = replace(d.state, reasons=with_over_quota(before, profile, used))
    d.transition(before, now)
