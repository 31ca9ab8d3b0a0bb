"""The card lifecycle: thresholds, over-quota suspension, manual stop/start, violation."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

from simwatch_contracts import AlertType, CommandType, Reason
from usage_monitor.domain.card import CardStatus
from usage_monitor.domain.lifecycle import NEVER, Decision, apply_event, evaluate

from .factories import CYCLE, ICCID, NOW, blank, event, upsert


def profiled(quota: int | None = 1000, **kw: object) -> Decision:
    return apply_event(blank(), upsert(quota, **kw), {}, NOW)  # type: ignore[arg-type]


def kinds(decision: Decision) -> list[tuple[str, int | None]]:
    return [(a.type.value, a.percent) for a in decision.alerts]


def test_new_card_waits_for_its_first_threshold() -> None:
    d = profiled(1000)
    assert d.alerts == () and d.commands == ()
    assert d.wakes == {CYCLE: 800}
    assert d.state.cycle == CYCLE and d.state.status is CardStatus.ACTIVE


def test_thresholds_fire_once_each_in_order() -> None:
    d = profiled(1000)
    d = evaluate(d.state, {CYCLE: 800}, NOW)
    assert kinds(d) == [("usage_threshold", 80)] and d.wakes[CYCLE] == 900
    again = evaluate(d.state, {CYCLE: 850}, NOW)
    assert again.alerts == () and again.commands == ()
    d = evaluate(d.state, {CYCLE: 999}, NOW)
    assert kinds(d) == [("usage_threshold", 90)] and d.wakes[CYCLE] == 1000


def test_one_record_can_cross_every_threshold_and_suspend() -> None:
    d = evaluate(profiled(1000).state, {CYCLE: 5000}, NOW)
    assert kinds(d) == [
        ("usage_threshold", 80),
        ("usage_threshold", 90),
        ("quota_exhausted", 100),
        ("suspended", None),
    ]
    (cmd,) = d.commands
    assert (cmd.type, cmd.trigger, cmd.reasons, cmd.cycle) == (
        CommandType.SUSPEND,
        Reason.OVER_QUOTA,
        (Reason.OVER_QUOTA,),
        CYCLE,
    )
    assert d.state.status is CardStatus.SUSPENDED
    assert d.wakes[CYCLE] == NEVER
    assert evaluate(d.state, {CYCLE: 9000}, NOW).changed is False


def test_threshold_is_crossed_at_exactly_p_percent() -> None:
    d = profiled(3, warn=(80,))
    assert d.wakes[CYCLE] == 3  # 80 % of 3 bytes is 2.4: crossed at 3
    assert kinds(evaluate(d.state, {CYCLE: 2}, NOW)) == []
    d = profiled(1000, warn=(80,))
    assert kinds(evaluate(d.state, {CYCLE: 799}, NOW)) == []
    assert kinds(evaluate(d.state, {CYCLE: 800}, NOW)) == [("usage_threshold", 80)]


def test_without_auto_suspend_quota_is_announced_but_card_stays_active() -> None:
    d = evaluate(profiled(1000, auto_suspend=False).state, {CYCLE: 1000}, NOW)
    assert kinds(d)[-1] == ("quota_exhausted", 100)
    assert d.commands == () and d.state.status is CardStatus.ACTIVE
    assert d.wakes[CYCLE] == NEVER


def test_unlimited_plan_never_alerts_on_quota() -> None:
    d = profiled(None)
    assert d.wakes == {CYCLE: NEVER}
    assert evaluate(d.state, {CYCLE: 10**15}, NOW).changed is False


def test_usage_before_the_profile_is_evaluated_when_it_arrives() -> None:
    early = evaluate(blank(), {CYCLE: 950}, NOW)
    assert early.changed is False and early.wakes == {CYCLE: NEVER}
    d = apply_event(early.state, upsert(1000), {CYCLE: 950}, NOW)
    assert kinds(d) == [("usage_threshold", 80), ("usage_threshold", 90)]


def test_late_usage_counts_but_never_suspends_the_current_cycle() -> None:
    d = profiled(1000)
    previous = date(2026, 10, 1)
    late = evaluate(d.state, {previous: 10_000, CYCLE: 10}, NOW)
    assert late.changed is False
    assert late.wakes == {previous: NEVER, CYCLE: 800}


def test_next_cycle_lifts_over_quota_and_rearms_thresholds() -> None:
    d = evaluate(profiled(1000).state, {CYCLE: 1000}, NOW)
    assert d.state.reasons == {Reason.OVER_QUOTA}
    december = NOW + timedelta(days=7)
    d2 = evaluate(d.state, {CYCLE: 1000}, december)
    (cmd,) = d2.commands
    assert (cmd.type, cmd.trigger, cmd.reasons, cmd.cycle) == (
        CommandType.RESUME,
        Reason.OVER_QUOTA,
        (),
        date(2026, 12, 1),
    )
    assert kinds(d2) == [("resumed", None)]
    assert d2.alerts[0].lifted == (Reason.OVER_QUOTA,)  # what the resume lifted
    assert d2.state.fired == frozenset() and d2.wakes[date(2026, 12, 1)] == 800


def test_a_resume_says_every_reason_it_lifted() -> None:
    """In arrears at the rollover, then stopped by hand: a recharge and the customer's resume
    lift both at once. The `resumed` names both (`lifted`, the trigger first), so the notifier
    can tell a pool's end from a member's own."""
    d = evaluate(profiled(None, balance=0).state, {}, NOW + timedelta(days=7))
    assert d.state.reasons == {Reason.ARREARS}
    later = NOW + timedelta(days=8)
    d = apply_event(d.state, event("card.suspend_requested"), {}, later)
    d = apply_event(d.state, event("card.recharged", amount=1000), {}, later)
    assert d.state.reasons == {Reason.ARREARS, Reason.MANUAL}
    d = apply_event(d.state, event("card.resume_requested"), {}, later)
    (alert,) = d.alerts
    assert alert.type.value == "resumed" and alert.lifted is not None
    assert set(alert.lifted) == {Reason.ARREARS, Reason.MANUAL}
    assert alert.trigger == alert.lifted[0]


def test_bigger_plan_mid_cycle_lifts_over_quota() -> None:
    d = evaluate(profiled(1000).state, {CYCLE: 1000}, NOW)
    d2 = apply_event(d.state, upsert(2000), {CYCLE: 1000}, NOW)
    assert [c.type for c in d2.commands] == [CommandType.RESUME]
    # Usage (50 %) no longer reaches 80 % and 90 %: they are re-armed, so the next
    # suspension comes with its warnings again (under new alert ids).
    assert d2.wakes[CYCLE] == 1600
    assert d2.state.fired == frozenset() and d2.state.rearm == 1
    d3 = evaluate(d2.state, {CYCLE: 1700}, NOW)
    (warning,) = d3.alerts
    assert warning.percent == 80
    first = [a for a in d.alerts if a.percent == 80]
    assert first and first[0].alert_id != warning.alert_id


def test_manual_stop_and_start() -> None:
    d = apply_event(profiled().state, event("card.suspend_requested"), {}, NOW)
    assert [(c.type, c.trigger) for c in d.commands] == [(CommandType.SUSPEND, Reason.MANUAL)]
    same = apply_event(d.state, event("card.suspend_requested"), {}, NOW)
    assert same.commands == () and same.rejected is None
    d = apply_event(d.state, event("card.resume_requested"), {}, NOW)
    assert [(c.type, c.trigger) for c in d.commands] == [(CommandType.RESUME, Reason.MANUAL)]
    assert d.state.status is CardStatus.ACTIVE


def test_manual_stop_while_over_quota_is_kept_through_the_next_cycle() -> None:
    over = evaluate(profiled(1000).state, {CYCLE: 1000}, NOW)
    d = apply_event(over.state, event("card.suspend_requested"), {CYCLE: 1000}, NOW)
    assert d.commands == () and d.rejected is None
    assert d.state.reasons == {Reason.OVER_QUOTA, Reason.MANUAL}
    december = evaluate(d.state, {CYCLE: 1000}, NOW + timedelta(days=7))
    assert december.commands == () and december.state.reasons == {Reason.MANUAL}


def test_manual_start_never_bypasses_another_reason() -> None:
    d = apply_event(profiled().state, event("card.suspend_requested"), {}, NOW)
    d = apply_event(d.state, event("card.violation_reported"), {}, NOW)
    assert d.commands == () and d.state.reasons == {Reason.MANUAL, Reason.VIOLATION}
    d = apply_event(d.state, event("card.resume_requested"), {}, NOW)
    assert d.commands == () and d.state.reasons == {Reason.VIOLATION}
    refused = apply_event(d.state, event("card.resume_requested"), {}, NOW)
    assert refused.rejected is not None and refused.state.reasons == {Reason.VIOLATION}
    d = apply_event(d.state, event("card.violation_cleared"), {}, NOW)
    assert [(c.type, c.trigger, c.reasons) for c in d.commands] == [
        (CommandType.RESUME, Reason.VIOLATION, ())
    ]


def test_several_reasons_come_back_one_by_one() -> None:
    d = evaluate(profiled(1000).state, {CYCLE: 1000}, NOW)
    d = apply_event(d.state, event("card.violation_reported"), {CYCLE: 1000}, NOW)
    assert d.commands == ()
    d = apply_event(d.state, event("card.violation_cleared"), {CYCLE: 1000}, NOW)
    assert d.commands == () and d.state.reasons == {Reason.OVER_QUOTA}
    d = evaluate(d.state, {CYCLE: 1000}, NOW + timedelta(days=7))
    assert [c.type for c in d.commands] == [CommandType.RESUME]


def test_ids_are_deterministic_and_distinct_per_transition() -> None:
    start = profiled().state
    first = apply_event(start, event("card.suspend_requested"), {}, NOW)
    replay = apply_event(start, event("card.suspend_requested"), {}, NOW + timedelta(seconds=5))
    assert first.commands[0].command_id == replay.commands[0].command_id
    assert first.alerts[0].alert_id == replay.alerts[0].alert_id
    resumed = apply_event(first.state, event("card.resume_requested"), {}, NOW)
    again = apply_event(resumed.state, event("card.suspend_requested"), {}, NOW)
    ids = {
        first.commands[0].command_id,
        resumed.commands[0].command_id,
        again.commands[0].command_id,
    }
    assert len(ids) == 3


def test_cancelled_card_ignores_events() -> None:
    state = replace(profiled().state, cancelled=True)
    d = apply_event(state, event("card.suspend_requested"), {}, NOW)
    assert d.rejected == "card is cancelled" and d.commands == ()
    assert d.state.status is CardStatus.CANCELLED


def test_alert_payload_carries_customer_and_usage() -> None:
    d = evaluate(profiled(1000).state, {CYCLE: 800}, NOW)
    (alert,) = d.alerts
    assert (alert.type, alert.iccid, alert.customer_id, alert.used_bytes, alert.quota_bytes) == (
        AlertType.USAGE_THRESHOLD,
        ICCID,
        "acme",
        800,
        1000,
    )
    assert alert.occurred_at.utcoffset() == timedelta(hours=8)
