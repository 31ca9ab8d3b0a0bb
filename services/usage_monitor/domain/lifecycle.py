"""Decisions: given a card's state, its usage counters and an input, the new state and the
alerts and commands to publish.

Usage is evaluated *level-triggered*: thresholds and the over-quota reason are derived from
the current cycle's counter, never from the delta of one record. Re-evaluating a card is
therefore always safe (after a crash, a redelivery, a CAS conflict) and never fires twice:
what was announced is remembered in ``CardState.fired``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime

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

from .card import REASON_ORDER, CardState, Profile, ordered
from .cycles import cycle_of, zone
from .ids import stable_id

NEVER = -1
"""Wake value: no further usage in this cycle can change anything."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one input. `wakes` maps a cycle to the used-bytes level at which the
    card must be evaluated again (``NEVER`` for none); cycles not named keep their value."""

    state: CardState
    alerts: tuple[CardAlert, ...] = ()
    commands: tuple[CardCommand, ...] = ()
    wakes: Mapping[date, int] = field(default_factory=dict)
    rejected: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.alerts or self.commands)


def current_cycle(profile: Profile, now: datetime) -> date:
    return cycle_of(now, profile.timezone, profile.cycle_day)


def evaluate(state: CardState, usage: Mapping[date, int], now: datetime) -> Decision:
    """Settle the card against its usage at `now`: roll the cycle over, announce thresholds,
    and add or lift the over-quota reason."""
    return _settle(state, state.reasons, usage, now, rejected=None)


def apply_event(
    state: CardState, event: CardEvent, usage: Mapping[date, int], now: datetime
) -> Decision:
    """Apply one `card.events` message, then settle the card against its usage."""
    if state.cancelled:
        return Decision(state, rejected="card is cancelled")
    before = state.reasons
    state, rejected = _apply(state, event)
    return _settle(state, before, usage, now, rejected=rejected)


def _apply(state: CardState, event: CardEvent) -> tuple[CardState, str | None]:
    """The event's direct effect on state; reasons may change, transitions come later."""
    match event:
        case CardUpserted():
            return replace(state, profile=Profile.from_event(event), balance=event.balance), None
        case CardRecharged():
            return replace(state, balance=state.balance + event.amount), None
        case CardRenewed():
            if state.profile is None:
                return state, "renewal of a card without a profile"
            return replace(state, profile=replace(state.profile, expires_at=event.expires_at)), None
        case SuspendRequested():
            return _manual_suspend(state)
        case ResumeRequested():
            return _manual_resume(state)
        case ViolationReported():
            return replace(state, reasons=state.reasons | {Reason.VIOLATION}), None
        case ViolationCleared():
            return replace(state, reasons=state.reasons - {Reason.VIOLATION}), None
    raise AssertionError(f"unhandled card event {event!r}")  # pragma: no cover


def _manual_suspend(state: CardState) -> tuple[CardState, str | None]:
    """The source: a card may be stopped by hand only while otherwise in good standing."""
    if Reason.MANUAL in state.reasons:
        return state, None
    if state.reasons:
        held = ", ".join(ordered(state.reasons))
        return state, f"manual stop refused: card already suspended ({held})"
    return replace(state, reasons=state.reasons | {Reason.MANUAL}), None


def _manual_resume(state: CardState) -> tuple[CardState, str | None]:
    """A manual start lifts only the manual reason; it never bypasses another suspension."""
    if Reason.MANUAL not in state.reasons:
        held = ", ".join(ordered(state.reasons)) or "none"
        return state, f"nothing to resume by hand (reasons held: {held})"
    remaining = state.reasons - {Reason.MANUAL}
    note = f"still suspended ({', '.join(ordered(remaining))})" if remaining else None
    return replace(state, reasons=remaining), note


def _settle(
    state: CardState,
    before: frozenset[Reason],
    usage: Mapping[date, int],
    now: datetime,
    *,
    rejected: str | None,
) -> Decision:
    profile = state.profile
    if profile is None or state.cancelled:
        return Decision(state, wakes=dict.fromkeys(usage, NEVER), rejected=rejected)
    cycle = max(current_cycle(profile, now), state.cycle or date.min)
    if state.cycle != cycle:
        state = replace(state, cycle=cycle, fired=frozenset())
    used = usage.get(cycle, 0)
    state, alerts = _usage_alerts(state, profile, used, now)
    state = replace(state, reasons=_with_over_quota(state.reasons, profile, used))
    state, commands, more = _transition(state, before, now)
    wakes = {c: NEVER for c in usage if c < cycle}
    wakes[cycle] = _wake(state, profile)
    return Decision(state, alerts + more, commands, wakes, rejected)


def _threshold_bytes(quota: int, percent: int) -> int:
    """Smallest usage that crosses `percent` of `quota`: used * 100 >= quota * percent."""
    return -(-quota * percent // 100)


def _usage_alerts(
    state: CardState, profile: Profile, used: int, now: datetime
) -> tuple[CardState, tuple[CardAlert, ...]]:
    quota = profile.plan.quota_bytes
    if quota is None:
        return state, ()
    steps = [(AlertType.USAGE_THRESHOLD, p, f"t{p}") for p in profile.plan.warn_percents]
    steps.append((AlertType.QUOTA_EXHAUSTED, 100, "x100"))
    alerts: list[CardAlert] = []
    fired = set(state.fired)
    for kind, percent, step in steps:
        if step in fired or used < _threshold_bytes(quota, percent):
            continue
        fired.add(step)
        alerts.append(
            _alert(
                state, profile, kind, now, step, percent=percent, used_bytes=used, quota_bytes=quota
            )
        )
    return replace(state, fired=frozenset(fired)), tuple(alerts)


def _with_over_quota(reasons: frozenset[Reason], profile: Profile, used: int) -> frozenset[Reason]:
    quota = profile.plan.quota_bytes
    over = profile.plan.auto_suspend and quota is not None and used >= quota
    return reasons | {Reason.OVER_QUOTA} if over else reasons - {Reason.OVER_QUOTA}


def _wake(state: CardState, profile: Profile) -> int:
    """The next usage level at which evaluating this card can change anything."""
    quota = profile.plan.quota_bytes
    if quota is None:
        return NEVER
    levels = [
        _threshold_bytes(quota, p) for p in profile.plan.warn_percents if f"t{p}" not in state.fired
    ]
    if "x100" not in state.fired or (
        profile.plan.auto_suspend and Reason.OVER_QUOTA not in state.reasons
    ):
        levels.append(quota)
    return min(levels, default=NEVER)


def _transition(
    state: CardState, before: frozenset[Reason], now: datetime
) -> tuple[CardState, tuple[CardCommand, ...], tuple[CardAlert, ...]]:
    """A `suspend` when the reason set becomes non-empty, a `resume` when it becomes empty."""
    after = state.reasons
    if bool(before) == bool(after):
        return state, (), ()
    if after:
        kind, alert_kind, trigger = CommandType.SUSPEND, AlertType.SUSPENDED, _first(after - before)
    else:
        kind, alert_kind, trigger = CommandType.RESUME, AlertType.RESUMED, _first(before)
    return _issue(state, kind, alert_kind, trigger, now)


def _first(reasons: frozenset[Reason]) -> Reason:
    return next(r for r in REASON_ORDER if r in reasons)


def _issue(
    state: CardState, kind: CommandType, alert_kind: AlertType, trigger: Reason, now: datetime
) -> tuple[CardState, tuple[CardCommand, ...], tuple[CardAlert, ...]]:
    profile = state.profile
    assert profile is not None, "transitions need a profile"
    assert state.cycle is not None, "transitions happen within a cycle"
    seq = state.transitions + 1
    state = replace(state, transitions=seq)
    local_now = now.astimezone(zone(profile.timezone))
    command = CardCommand(
        command_id=stable_id("cmd", state.iccid, seq, kind.value, trigger.value),
        type=kind,
        iccid=state.iccid,
        trigger=trigger,
        reasons=ordered(state.reasons),
        cycle=state.cycle,
        issued_at=local_now,
    )
    alert = _alert(
        state,
        profile,
        alert_kind,
        now,
        f"n{seq}",
        trigger=trigger,
        reasons=ordered(state.reasons),
    )
    return state, (command,), (alert,)


def _alert(
    state: CardState,
    profile: Profile,
    kind: AlertType,
    now: datetime,
    step: str,
    **fields: object,
) -> CardAlert:
    assert state.cycle is not None
    return CardAlert.model_validate(
        {
            "alert_id": stable_id("alr", state.iccid, state.cycle, kind.value, step),
            "type": kind,
            "iccid": state.iccid,
            "customer_id": profile.customer_id,
            "cycle": state.cycle,
            "occurred_at": now.astimezone(zone(profile.timezone)),
            **fields,
        },
        strict=False,
    )
