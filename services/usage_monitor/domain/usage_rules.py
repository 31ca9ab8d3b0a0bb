"""Quota rules (source rule 1): warn levels, exhaustion, the over-quota reason, wake levels."""

from __future__ import annotations

from simwatch_contracts import Reason

from .card import CardState, Profile

NEVER = -1
"""Wake value: no further usage in this cycle can change anything."""


def threshold_bytes(quota: int, percent: int) -> int:
    """Smallest usage that crosses `percent` of `quota`: used * 100 >= quota * percent."""
    return -(-quota * percent // 100)


def crossed_steps(state: CardState, profile: Profile, used: int) -> list[tuple[str, int]]:
    """(step, percent) of every warn level or exhaustion reached and not yet announced."""
    quota = profile.plan.quota_bytes
    if quota is None:
        return []
    steps = [(f"t{p}", p) for p in profile.plan.warn_percents]
    steps.append(("x100", 100))
    return [(s, p) for s, p in steps if s not in state.fired and used >= threshold_bytes(quota, p)]


def with_over_quota(reasons: frozenset[Reason], profile: Profile, used: int) -> frozenset[Reason]:
    quota = profile.plan.quota_bytes
    over = profile.plan.auto_suspend and quota is not None and used >= quota
    return reasons | {Reason.OVER_QUOTA} if over else reasons - {Reason.OVER_QUOTA}


def wake_level(state: CardState, profile: Profile) -> int:
    """The next usage level at which evaluating this card can change anything."""
    quota = profile.plan.quota_bytes
    if quota is None or state.cancelled:
        return NEVER
    levels = [
        threshold_bytes(quota, p) for p in profile.plan.warn_percents if f"t{p}" not in state.fired
    ]
    if "x100" not in state.fired or (
        profile.plan.auto_suspend and Reason.OVER_QUOTA not in state.reasons
    ):
        levels.append(quota)
    return min(levels, default=NEVER)
