"""The clock-driven steps of a card's life, and when each falls due.

A step is done at most once: rollovers move `state.cycle` forward; the others are recorded
in `state.milestones` under a key that names the step and the term (`expires_at`) or cycle
it belongs to. `schedule` lists only steps not yet done, earliest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from enum import StrEnum
from functools import lru_cache

from simwatch_contracts import Billing

from .billing import plan_fee_due
from .card import CardState
from .cycles import add_months, cycle_start, next_cycle, zone
from .policy import Policy


class StepKind(StrEnum):
    """In the order steps due at the same instant are taken."""

    ROLLOVER = "rollover"
    BILL_DUE = "bill_due"
    BALANCE_WARNING = "balance_warning"
    EXPIRY_WARNING = "expiry_warning"
    EXPIRE = "expire"
    RETENTION_FEE = "retention_fee"
    CANCEL_ARREARS = "cancel_arrears"
    CANCEL_EXPIRED = "cancel_expired"


_RANK = {kind: i for i, kind in enumerate(StepKind)}


@dataclass(frozen=True, slots=True)
class Step:
    at: datetime
    kind: StepKind
    key: str = ""
    """Milestone key marking the step done (rollovers use `state.cycle` instead)."""
    lead_days: int = 0
    month: int = 0


def term(expires_at: datetime) -> int:
    """The id of a plan term in milestone keys: its expiry as a POSIX timestamp."""
    return int(expires_at.timestamp())


def schedule(state: CardState, policy: Policy) -> list[Step]:
    """Every step not yet done, earliest first (ties in `StepKind`'s order)."""
    profile = state.profile
    if profile is None or state.cancelled or state.cycle is None:
        return []
    steps = _billing_steps(state, policy) + _expiry_steps(state, policy)
    done = state.milestones
    pending = (s for s in steps if not s.key or s.key not in done)
    return sorted(pending, key=lambda s: (s.at, _RANK[s.kind]))


def keys_in_play(state: CardState, policy: Policy) -> frozenset[str] | None:
    """The milestone keys `schedule` can still consult (None: keep them all): the upcoming
    rollover's balance warning, the current term's steps, the current arrears' cancellation.
    Older keys are dropped, so a card's state does not grow by a key every month."""
    profile = state.profile
    if profile is None or state.cancelled or state.cycle is None:
        return None
    keys = {f"b@{next_cycle(state.cycle).isoformat()}"}
    keys.update(s.key for s in _expiry_steps(state, policy))
    # Warnings of another term that has not ended: a renewal may come back to it (a term
    # corrected back and forth), and a warning is announced once per (term, lead).
    since = cycle_start(state.cycle, profile.timezone).timestamp()
    keys.update(k for k in state.milestones if k.startswith("w") and _term_of(k) > since)
    # Likewise a balance warning for a rollover still ahead: a billing calendar corrected
    # back and forth returns to it, and it was announced once already.
    current = state.cycle.isoformat()
    keys.update(k for k in state.milestones if k.startswith("b@") and k[2:] > current)
    if state.arrears_since is not None:
        keys.add(f"ca@{term(state.arrears_since)}")
    return frozenset(keys)


def _term_of(key: str) -> int:
    """The term (`expires_at`, POSIX seconds) a milestone key belongs to (0: none)."""
    _, _, t = key.partition("@")
    return int(t) if t.isdigit() else 0


def _billing_steps(state: CardState, policy: Policy) -> list[Step]:
    assert state.profile is not None, "scheduled only with a profile"
    assert state.cycle is not None, "and a cycle"
    profile = state.profile
    upcoming = next_cycle(state.cycle)
    rollover_at = cycle_start(upcoming, profile.timezone)
    steps = [Step(rollover_at, StepKind.ROLLOVER)]
    if profile.billing is Billing.PREPAID and plan_fee_due(state, profile, rollover_at):
        warn_at = rollover_at - timedelta(days=policy.balance_warning_days)
        steps.append(Step(warn_at, StepKind.BALANCE_WARNING, f"b@{upcoming.isoformat()}"))
    if state.bills:
        first_due = datetime.fromtimestamp(
            min(due for due, _ in state.bills), zone(profile.timezone)
        )
        steps.append(Step(first_due, StepKind.BILL_DUE))
    if profile.billing is Billing.POSTPAID and state.arrears_since is not None:
        at = add_months(state.arrears_since, policy.postpaid_cancel_months)
        steps.append(Step(at, StepKind.CANCEL_ARREARS, f"ca@{term(state.arrears_since)}"))
    return steps


def _expiry_steps(state: CardState, policy: Policy) -> list[Step]:
    assert state.profile is not None
    expires = state.profile.expires_at
    key = (expires.tzinfo, expires.fold, policy.expiry_leads_days, policy.grace_months)
    return list(_term_steps(expires, *key))


@lru_cache(maxsize=4096)
def _term_steps(
    expires: datetime, tz: tzinfo | None, fold: int, leads: tuple[int, ...], grace_months: int
) -> tuple[Step, ...]:
    """The steps of one plan term: the same for every card of a fleet sharing an expiry, and
    asked for several times per evaluation, hence computed once. `tz` and `fold` are part of
    the key because "k months after" is counted on the wall clock of `expires`, and aware
    datetimes compare equal across zones at the same instant, and within a zone across the
    two instants of a repeated wall-clock hour (`fold` ignored)."""
    t = term(expires)
    steps = [
        Step(expires - timedelta(days=lead), StepKind.EXPIRY_WARNING, f"w{lead}@{t}", lead)
        for lead in sorted(leads, reverse=True)
    ]
    steps.append(Step(expires, StepKind.EXPIRE, f"x@{t}"))
    steps += [
        Step(add_months(expires, k), StepKind.RETENTION_FEE, f"g{k}@{t}", month=k)
        for k in range(grace_months)
    ]
    steps.append(Step(add_months(expires, grace_months), StepKind.CANCEL_EXPIRED, f"c@{t}"))
    return tuple(steps)


def next_due(state: CardState, policy: Policy) -> datetime | None:
    """When the card next needs the clock's attention (None: never)."""
    steps = schedule(state, policy)
    return steps[0].at if steps else None
