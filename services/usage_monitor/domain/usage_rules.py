"""Quota rules (source rule 1): warn levels, exhaustion, the over-quota reason, wake levels.

A level is a step name in `CardState.fired`: ``t<percent>`` for a warn percent, ``x100`` for
exhaustion. Levels are announced on usage, never on its absence: a level is reached at
``max(1, ceil(quota * percent / 100))`` bytes, so a zero quota announces nothing until data
is used. A warn percent of 100 is the exhaustion itself and is announced once, as
`quota_exhausted`.
"""

from __future__ import annotations

from simwatch_contracts import Reason

from .card import CardState, Profile

NEVER = -1
"""Wake value: no further usage in this cycle can change anything."""
EXHAUSTED = "x100"


def threshold_bytes(quota: int, percent: int) -> int:
    """Smallest usage that crosses `percent` of `quota`: used * 100 >= quota * percent."""
    return -(-quota * percent // 100)


def levels(profile: Profile) -> list[tuple[str, int, int]]:
    """(step, percent, bytes at which it is reached) of every level of the plan."""
    quota = profile.plan.quota_bytes
    if quota is None:
        return []
    steps = [(f"t{p}", p) for p in profile.plan.warn_percents if p < 100]
    steps.append((EXHAUSTED, 100))
    return [(s, p, max(1, threshold_bytes(quota, p))) for s, p in steps]


def crossed_steps(state: CardState, profile: Profile, used: int) -> list[tuple[str, int]]:
    """(step, percent) of every warn level or exhaustion reached and not yet announced."""
    return [(s, p) for s, p, at in levels(profile) if s not in state.fired and used >= at]


def unreached(state: CardState, profile: Profile, used: int) -> frozenset[str]:
    """Announced levels of the plan that the usage no longer reaches (the quota was raised):
    they are re-armed. A level the plan no longer has stays announced, so a quota taken away
    and given back within a cycle does not announce the same level twice."""
    return frozenset(s for s, _, at in levels(profile) if s in state.fired and used < at)


def alert_step(state: CardState, step: str) -> str:
    """The name of a level's announcement in its alert id: a re-armed level gets a new one."""
    return step if state.rearm == 0 else f"{step}r{state.rearm}"


def with_over_quota(reasons: frozenset[Reason], profile: Profile, used: int) -> frozenset[Reason]:
    quota = profile.plan.quota_bytes
    over = profile.plan.auto_suspend and quota is not None and used >= quota
    return reasons | {Reason.OVER_QUOTA} if over else reasons - {Reason.OVER_QUOTA}


def with_usage_reasons(state: CardState, profile: Profile, used: int) -> frozenset[Reason]:
    """The reasons the cycle's usage decides: over quota, and for a pool member its own cap
    (`member_cap`) and its pool's stop (`pool_over_quota`, held for the cycle the pool
    was exhausted in; members are counted in their pool's cycles)."""
    reasons = with_over_quota(state.reasons, profile, used)
    plan = profile.plan
    capped = plan.pool_id is not None and plan.member_cap_bytes is not None
    if capped and used >= (plan.member_cap_bytes or 0):
        reasons |= {Reason.MEMBER_CAP}
    else:
        reasons -= {Reason.MEMBER_CAP}
    stopped = plan.pool_id is not None and state.pool_stop == (plan.pool_id, state.cycle)
    return reasons | {Reason.POOL_OVER_QUOTA} if stopped else reasons - {Reason.POOL_OVER_QUOTA}


def wake_level(state: CardState, profile: Profile) -> int:
    """The next usage level at which evaluating this card can change anything."""
    plan = profile.plan
    quota = plan.quota_bytes
    if state.cancelled:
        return NEVER
    wake = []
    if quota is not None:
        wake = [at for s, _, at in levels(profile) if s not in state.fired]
        if plan.auto_suspend and Reason.OVER_QUOTA not in state.reasons:
            wake.append(quota)
    cap = plan.member_cap_bytes
    if plan.pool_id is not None and cap is not None and Reason.MEMBER_CAP not in state.reasons:
        wake.append(cap)
    return min(wake, default=NEVER)
