"""Pooled quotas (流量池): a fleet's shared allowance per cycle. The pool's side of the rules:
its warn levels and exhaustion, decided from the sum of its members' usage in its cycle,
announced once per (pool, cycle, percent); and the view of the pool a member is evaluated
with (`PoolView`), which holds or lifts the member's `pool_over_quota`.

Members are counted in their pool's cycles: a pooled card's billing calendar is its pool's,
so one counter per card and cycle serves both the card and the pool, and a member's
`pool_over_quota` is lifted by the member's own next rollover, which is the pool's.

Like a card's, a pool's rules are level-triggered: deciding again on the same usage decides
nothing new, so any worker may decide whenever it has counted usage of the pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from simwatch_contracts import AlertType, CardAlert, PoolUpserted, Reason
from simwatch_contracts.ids import stable_id

from .card import CardState
from .copying import replace
from .cycles import cycle_of, cycle_start, next_cycle, zone

TOP_MEMBERS = 5
EXHAUSTED = 100


@dataclass(frozen=True, slots=True)
class Pool:
    """A pool's definition (`pool.upserted`)."""

    pool_id: str
    customer_id: str
    quota_bytes: int
    warn_percents: tuple[int, ...] = (80, 90)
    suspend_all: bool = True
    cycle_day: int = 1
    timezone: str = "Asia/Shanghai"

    @classmethod
    def from_event(cls, e: PoolUpserted) -> Pool:
        return cls(
            e.pool_id,
            e.customer_id,
            e.quota_bytes,
            tuple(p for p in e.warn_percents if p < EXHAUSTED),
            e.on_exhausted == "suspend_all",
            e.cycle_day,
            e.timezone,
        )

    def cycle(self, now: datetime) -> date:
        return cycle_of(now, self.timezone, self.cycle_day)


@dataclass(frozen=True, slots=True)
class PoolState:
    """What a pool has announced in its current cycle. `rearm` counts re-armings within a
    cycle (a quota raised above the usage) and keeps every second announcement's id
    distinct; it never goes back."""

    cycle: date | None = None
    fired: frozenset[int] = frozenset()
    exhausted: bool = False
    rearm: int = 0


@dataclass(frozen=True, slots=True)
class PoolView:
    """What a member is evaluated with: its pool's cycle and whether the pool stops its
    members in that cycle (exhausted, and `suspend_all`)."""

    pool_id: str
    cycle: date
    stopping: bool
    timezone: str = "Asia/Shanghai"
    cycle_day: int = 1


@dataclass(frozen=True, slots=True)
class PoolDecision:
    state: PoolState
    alerts: tuple[CardAlert, ...] = ()

    def fans_out(self, before: PoolState, pool: Pool) -> bool:
        """Whether every member must be evaluated again: the pool's stop began or ended, or
        it began anew in a new cycle (the members' own rollover lifted the last one)."""
        after = self.state
        if not pool.suspend_all:
            return False
        renewed = after.exhausted and before.cycle != after.cycle
        return renewed or before.exhausted != after.exhausted


def reached(quota: int, percent: int, used: int) -> bool:
    """A level is reached at `quota * percent / 100` bytes, in exact integers (contract)."""
    return used * 100 >= quota * percent


def decide(
    pool: Pool,
    state: PoolState,
    used: int,
    now: datetime,
    top: Sequence[tuple[str, int]] = (),
) -> PoolDecision:
    """The pool's levels for `used`, its usage in its current cycle at `now`: alerts for
    levels newly reached (`pool_threshold`, and `pool_exhausted` at 100 %), and whether it
    is exhausted. A new cycle starts with nothing announced; a quota raised above the
    usage re-arms the levels it no longer reaches."""
    cycle = pool.cycle(now)
    if state.cycle != cycle:
        state = PoolState(cycle, frozenset(), False, 0)
    quota = pool.quota_bytes
    levels = (*pool.warn_percents, EXHAUSTED)
    stale = {p for p in state.fired if not reached(quota, p, used)}
    if stale:
        state = replace(state, fired=state.fired - stale, rearm=state.rearm + 1)
    crossed = [p for p in levels if p not in state.fired and reached(quota, p, used)]
    exhausted = reached(quota, EXHAUSTED, used)
    state = replace(state, fired=state.fired | set(crossed), exhausted=exhausted)
    members = tuple({"iccid": i, "used_bytes": b} for i, b in top[:TOP_MEMBERS])
    # An exhaustion that stops the members says so, and when it ends (the notifier's text).
    stop: dict[str, object] = {}
    if pool.suspend_all:
        ends = cycle_start(next_cycle(cycle), pool.timezone)
        stop = {
            "trigger": Reason.POOL_OVER_QUOTA,
            "lifts": ({"reason": Reason.POOL_OVER_QUOTA, "how": "pool_next_cycle", "at": ends},),
        }
    alerts = tuple(
        CardAlert.model_validate(
            {
                "alert_id": stable_id("palr", pool.pool_id, cycle, p, state.rearm),
                "type": AlertType.POOL_EXHAUSTED if p == EXHAUSTED else AlertType.POOL_THRESHOLD,
                "pool_id": pool.pool_id,
                "customer_id": pool.customer_id,
                "cycle": cycle,
                "occurred_at": now.astimezone(zone(pool.timezone)),
                "percent": p,
                "used_bytes": used,
                "quota_bytes": quota,
                "top_members": members,
                **(stop if p == EXHAUSTED else {}),
            },
            strict=False,
        )
        for p in crossed
    )
    return PoolDecision(state, alerts)


def wake(pool: Pool, state: PoolState) -> int:
    """The pool usage at which deciding again can change something (in its current
    cycle): the lowest level not yet announced."""
    quota = pool.quota_bytes
    pending = [p for p in (*pool.warn_percents, EXHAUSTED) if p not in state.fired]
    return min(((quota * p + 99) // 100 for p in pending), default=-1)


def view(pool: Pool, state: PoolState, now: datetime) -> PoolView:
    cycle = pool.cycle(now)
    stopping = pool.suspend_all and state.cycle == cycle and state.exhausted
    return PoolView(pool.pool_id, cycle, stopping, pool.timezone, pool.cycle_day)


def apply_view(state: CardState, v: PoolView, now: datetime) -> CardState:
    """A member takes its pool's calendar (it joined before the pool was known, or the pool's
    calendar changed: its cycle is named anew, like a card whose cycle_day changed), then
    holds or lifts its pool stop for the pool's cycle. A card of another pool, or of none,
    is left alone: a card that moved keeps nothing of its old pool."""
    profile = state.profile
    if profile is None or profile.plan.pool_id != v.pool_id:
        return state
    if (profile.timezone, profile.cycle_day) != (v.timezone, v.cycle_day):
        profile = replace(
            profile,
            timezone=v.timezone,
            cycle_day=v.cycle_day,
            expires_at=profile.expires_at.astimezone(zone(v.timezone)),
        )
        state = replace(state, profile=profile)
        cycle = cycle_of(now, v.timezone, v.cycle_day)
        if cycle != state.cycle:
            state = replace(state, cycle=cycle, fired=frozenset(), rearm=state.rearm + 1)
    if v.stopping:
        return replace(state, pool_stop=(v.pool_id, v.cycle))
    if state.pool_stop == (v.pool_id, v.cycle):
        return replace(state, pool_stop=None)
    return state
