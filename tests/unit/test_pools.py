"""Pooled quotas (issue #19): a pool's levels and exhaustion, and its members' reasons."""

from __future__ import annotations

from datetime import datetime, timedelta

from simwatch_contracts import AlertType, CommandType, Reason
from usage_monitor.domain.explain import Lifts, explain
from usage_monitor.domain.lifecycle import apply_event, evaluate
from usage_monitor.domain.policy import Policy
from usage_monitor.domain.pools import Pool, PoolState, apply_view, decide, view, wake

from .factories import CYCLE, NOW, blank, event, upsert

POOL = Pool("P", "acme", 10_000, (80, 90))
NEXT = datetime.fromisoformat("2026-12-01T00:00:00+08:00")


def member(cap: int | None = None, quota: int | None = None) -> object:
    e = upsert(quota)
    plan = e.plan.model_copy(update={"pool_id": "P", "member_cap_bytes": cap})  # type: ignore[union-attr]
    return e.model_copy(update={"plan": plan})


def test_levels_are_announced_once_each_and_several_at_once() -> None:
    d = decide(POOL, PoolState(), 9_000, NOW, [("89860412345678901234", 5000)])
    assert [(a.type, a.percent) for a in d.alerts] == [
        (AlertType.POOL_THRESHOLD, 80),
        (AlertType.POOL_THRESHOLD, 90),
    ]
    assert d.alerts[0].iccid is None and d.alerts[0].pool_id == "P"
    assert d.alerts[0].top_members and d.alerts[0].top_members[0].used_bytes == 5000
    again = decide(POOL, d.state, 9_500, NOW)
    assert again.alerts == () and again.state == d.state
    done = decide(POOL, d.state, 10_000, NOW)
    assert [(a.type, a.percent) for a in done.alerts] == [(AlertType.POOL_EXHAUSTED, 100)]
    assert done.state.exhausted and done.fans_out(d.state, POOL)
    assert wake(POOL, done.state) == -1


def test_a_level_is_reached_at_exactly_p_percent() -> None:
    odd = Pool("P", "acme", 10_001, (80,))
    assert decide(odd, PoolState(), 8_000, NOW).alerts == ()
    assert [a.percent for a in decide(odd, PoolState(), 8_001, NOW).alerts] == [80]
    assert wake(odd, PoolState(NOW.date())) == 8001


def test_a_new_cycle_starts_with_nothing_announced_and_not_exhausted() -> None:
    done = decide(POOL, PoolState(), 10_000, NOW).state
    later = decide(POOL, done, 0, NEXT + timedelta(hours=1))
    assert later.state.cycle == NEXT.date() and not later.state.exhausted
    assert later.state.fired == frozenset() and later.alerts == ()
    # Members' stops are lifted by their own rollover, which is the pool's: no fan-out.
    assert not view(POOL, later.state, NEXT + timedelta(hours=1)).stopping


def test_a_quota_raised_above_the_usage_ends_the_stop_and_rearms_with_new_ids() -> None:
    done = decide(POOL, PoolState(), 10_000, NOW)
    bigger = Pool("P", "acme", 20_000, (80, 90))
    raised = decide(bigger, done.state, 10_000, NOW)
    assert not raised.state.exhausted and raised.fans_out(done.state, bigger)
    assert raised.state.fired == frozenset() and raised.state.rearm == 1
    again = decide(bigger, raised.state, 16_000, NOW)
    assert again.alerts[0].alert_id != done.alerts[0].alert_id


def test_alert_only_pools_never_stop_their_members() -> None:
    soft = Pool("P", "acme", 10_000, (80,), suspend_all=False)
    d = decide(soft, PoolState(), 10_000, NOW)
    assert d.state.exhausted and not d.fans_out(PoolState(), soft)
    assert not view(soft, d.state, NOW).stopping


def test_members_are_stopped_and_a_pool_resume_lifts_only_the_pools_reason() -> None:
    card = apply_event(blank(), member(quota=500), {}, NOW).state
    card = apply_event(card, event("card.suspend_requested"), {}, NOW).state
    usage = {CYCLE: 600}  # its own quota too
    stopped = view(POOL, decide(POOL, PoolState(), 10_000, NOW).state, NOW)
    d = evaluate(card, usage, NOW, pool=stopped)
    assert Reason.POOL_OVER_QUOTA in d.state.reasons and d.commands == ()  # already stopped
    assert d.state.reasons == {Reason.MANUAL, Reason.OVER_QUOTA, Reason.POOL_OVER_QUOTA}
    # The pool's next cycle: only its reason goes; the manual stop holds the card.
    nxt = evaluate(d.state, usage, NEXT + timedelta(seconds=1))
    assert nxt.state.reasons == {Reason.MANUAL}
    assert nxt.commands == ()


def test_a_card_joining_an_exhausted_pool_is_stopped_and_one_leaving_is_started() -> None:
    stopped = view(POOL, decide(POOL, PoolState(), 10_000, NOW).state, NOW)
    d = apply_event(blank(), member(), {}, NOW, pool=stopped)
    (cmd,) = d.commands
    assert (cmd.type, cmd.trigger) == (CommandType.SUSPEND, Reason.POOL_OVER_QUOTA)
    left = apply_event(d.state, upsert(None), {}, NOW + timedelta(minutes=1))
    (cmd,) = left.commands
    assert cmd.type is CommandType.RESUME and left.state.reasons == frozenset()


def test_a_member_cap_stops_one_card_until_its_next_cycle() -> None:
    card = apply_event(blank(), member(cap=1000), {}, NOW).state
    d = evaluate(card, {CYCLE: 999}, NOW)
    assert d.commands == () and d.wakes[CYCLE] == 1000
    d = evaluate(d.state, {CYCLE: 1000}, NOW)
    (cmd,) = d.commands
    assert (cmd.type, cmd.trigger) == (CommandType.SUSPEND, Reason.MEMBER_CAP)
    e = explain(d.state, {CYCLE: 1000}, NOW, Policy())
    assert e.reasons[0].lifts.how == Lifts.NEXT_CYCLE and e.reasons[0].lifts.at == NEXT
    back = evaluate(d.state, {CYCLE: 1000}, NEXT + timedelta(seconds=1))
    assert [c.type for c in back.commands] == [CommandType.RESUME]


def test_a_pool_stop_is_explained_as_lifted_at_the_pools_next_cycle() -> None:
    card = apply_event(blank(), member(), {}, NOW).state
    stopped = view(POOL, decide(POOL, PoolState(), 10_000, NOW).state, NOW)
    held = apply_view(card, stopped, NOW)
    d = evaluate(held, {CYCLE: 10}, NOW)
    e = explain(d.state, {CYCLE: 10}, NOW, Policy())
    (reason,) = e.reasons
    assert reason.reason is Reason.POOL_OVER_QUOTA
    assert (reason.lifts.how, reason.lifts.at) == (Lifts.POOL_NEXT_CYCLE, NEXT)
    assert reason.facts["pool_id"] == "P"


def test_a_member_takes_its_pools_calendar() -> None:
    card = apply_event(blank(), member(), {}, NOW).state  # Asia/Shanghai, day 1
    utc15 = Pool("P", "acme", 10_000, (80,), cycle_day=15, timezone="UTC")
    v = view(utc15, PoolState(), NOW)
    d = evaluate(card, {}, NOW, pool=v)
    assert d.state.profile is not None
    assert (d.state.profile.timezone, d.state.profile.cycle_day) == ("UTC", 15)
    assert d.state.cycle == v.cycle == datetime(2026, 11, 15).date()
