"""Decisions: given a card's state, its usage counters, the time and an input, the new state
and the alerts, commands and charges it decides.

Three things move a card, always in this order: the clock (due steps, earliest first:
rollovers, bills, fee warnings, expiry, retention fees, cancellation), an event
(`card.events`), and usage (warn levels, exhaustion, the over-quota reason). Usage is
*level-triggered*: it is derived from the cycle's counter, never from one record's delta,
and what was announced is remembered, so evaluating a card again (after a crash, a
redelivery, a lost race) is always safe and decides nothing twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime

from simwatch_contracts import (
    AlertType,
    CardEvent,
    CardRecharged,
    CommandResult,
    NetworkObserved,
    Reason,
    ResultStatus,
)

from . import billing, enforcement, events
from .card import CardState, Profile
from .clock import advance
from .copying import replace
from .cycles import cycle_of
from .draft import Decision, Draft
from .effects import alert
from .policy import DEFAULT_POLICY, Policy
from .pools import PoolView, apply_view
from .usage_rules import (
    EXHAUSTED,
    NEVER,
    alert_step,
    crossed_steps,
    unreached,
    with_usage_reasons,
)

__all__ = ["NEVER", "Decision", "apply_event", "apply_result", "current_cycle", "evaluate"]

UNKNOWN_COMMAND = "unknown command: not one of this card's recent commands"


def current_cycle(profile: Profile, now: datetime) -> date:
    return cycle_of(now, profile.timezone, profile.cycle_day)


def evaluate(
    state: CardState,
    usage: Mapping[date, int],
    now: datetime,
    policy: Policy = DEFAULT_POLICY,
    customer_debt: int | None = None,
    origin: datetime | None = None,
    pool: PoolView | None = None,
) -> Decision:
    """Bring the card up to `now`: its command's next attempt, due steps in order, then its
    usage. With `customer_debt` (the blacklist changed), a card held for its customer's
    debt is settled against it. `origin`: when the input that woke the card arrived.
    `pool`: the card's pool began or ended stopping its members."""
    draft = Draft(state, policy, now=now, origin=origin)
    draft.retry(now)
    advance(draft, usage, now)
    if pool is not None:
        draft.state = apply_view(draft.state, pool, now)
    if customer_debt is not None and not draft.state.cancelled:
        before = draft.state.reasons
        draft.state = billing.settle_held(draft.state, customer_debt)
        draft.transition(before, now)
    _settle_usage(draft, usage, now)
    return draft.decision(usage)


def apply_event(
    state: CardState,
    event: CardEvent,
    usage: Mapping[date, int],
    now: datetime,
    policy: Policy = DEFAULT_POLICY,
    customer_debt: int = 0,
    pool: PoolView | None = None,
) -> Decision:
    """Apply one `card.events` message to a card brought up to `now`. `customer_debt` is
    what the card's customer still owes from cancelled cards (the blacklist); it holds a
    new card of that customer. `pool`: the view of the pool a profile names (a card that
    joins an exhausted pool is stopped with its members)."""
    draft = Draft(state, policy, now=now, origin=now)
    if isinstance(event, NetworkObserved):
        # The network's own view: nothing about the card changes, unless the network needs
        # correcting (brought up to `now` first, so it is compared with the current state).
        if not state.cancelled:
            advance(draft, usage, now)
            _settle_usage(draft, usage, now)
        draft.reconcile(event.network_state, now)
        return draft.decision(usage)
    if state.cancelled:
        if isinstance(event, CardRecharged) and state.blacklisted:
            # A payment of a cancelled card's debt: it clears the customer's blacklist.
            draft.state = replace(state, balance=state.balance + event.amount)
            return draft.decision(usage)
        return Decision(state, rejected="card is cancelled", wakes=dict.fromkeys(usage, NEVER))
    advance(draft, usage, now)
    draft.since = draft.state.reasons
    rejected = events.apply(draft, event, now, customer_debt)
    if pool is not None:
        draft.state = apply_view(draft.state, pool, now)
    # A new profile or term may have usage levels already reached and steps already due:
    # with the event, they are one change of the reason set.
    _settle_usage(draft, usage, now)
    advance(draft, usage, now, floor=now)
    _settle_usage(draft, usage, now)
    draft.transition(draft.before(), now)
    draft.announce_pending(now)
    return draft.decision(usage, rejected)


def apply_result(
    state: CardState,
    result: CommandResult,
    usage: Mapping[date, int],
    now: datetime,
    policy: Policy = DEFAULT_POLICY,
) -> Decision:
    """Apply the network's result for one of the card's commands. A result for the tracked
    command settles it; one that confirms it also shows the network's state, which is
    corrected if it differs from ours. Any other result is recorded, never acted on; one
    for a command the card never had is refused (`rejected`: dead-lettered by the caller)."""
    draft = Draft(state, policy, now=now, origin=now)
    draft.state, note = enforcement.on_result(state, result, now, policy)
    draft.notes.append(note)
    if note.outcome is enforcement.Outcome.UNKNOWN:
        return draft.decision(usage, UNKNOWN_COMMAND)
    if note.outcome is enforcement.Outcome.CONFIRMED and result.status is ResultStatus.APPLIED:
        draft.reconcile(result.network_state, now)
    return draft.decision(usage)


def _settle_usage(d: Draft, usage: Mapping[date, int], now: datetime) -> None:
    s = d.state
    profile = s.profile
    if profile is None or s.cancelled:
        return
    if s.cycle is None:
        s = d.state = replace(s, cycle=current_cycle(profile, now))
    assert s.cycle is not None
    used = usage.get(s.cycle, 0)
    stale = unreached(s, profile, used)
    if stale:  # the quota was raised above the usage: those levels are announced again
        s = replace(s, fired=s.fired - stale, rearm=s.rearm + 1)
    crossed = crossed_steps(s, profile, used)
    d.state = replace(s, fired=s.fired | {step for step, _ in crossed})
    quota = profile.plan.quota_bytes
    for step, percent in crossed:
        kind = AlertType.QUOTA_EXHAUSTED if step == EXHAUSTED else AlertType.USAGE_THRESHOLD
        d.alerts.append(
            alert(
                d.state,
                kind,
                now,
                alert_step(d.state, step),
                percent=percent,
                used_bytes=used,
                quota_bytes=quota,
            )
        )
    before = d.state.reasons
    d.state = replace(d.state, reasons=with_usage_reasons(d.state, profile, used))
    if Reason.OVER_QUOTA in d.state.reasons and Reason.OVER_QUOTA not in before:
        d.state = replace(d.state, overshoot_from=used)
    if d.since is None:  # else the event's own transition covers the usage too
        d.transition(before, now)
