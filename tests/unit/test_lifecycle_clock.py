"""The clock-driven lifecycle: rollover, arrears (prepaid and postpaid), expiry with grace and
cancellation, and catching up after downtime. Time is injected; nothing sleeps."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from simwatch_contracts import AlertType, Reason
from usage_monitor.domain.card import CardState, CardStatus
from usage_monitor.domain.lifecycle import Decision, apply_event, evaluate
from usage_monitor.domain.policy import DEFAULT_POLICY, Policy
from usage_monitor.domain.steps import next_due

from .factories import blank, event, upsert

SH = timedelta(hours=8)  # Asia/Shanghai


def at(y: int, m: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    """A local Shanghai wall time as an aware UTC instant."""
    return datetime(y, m, d, h, mi, tzinfo=UTC) - SH


def cmds(d: Decision) -> list[tuple[str, str]]:
    return [(c.type.value, c.trigger.value) for c in d.commands]


def kinds(d: Decision) -> list[str]:
    return [a.type.value for a in d.alerts]


def card(now: datetime, **kw: object) -> CardState:
    expires = kw.pop("expires", "2099-01-01T00:00:00+08:00")
    return apply_event(blank(), upsert(expires_at=expires, **kw), {}, now).state  # type: ignore[arg-type]


def test_rollover_at_local_midnight_charges_the_fee_and_lifts_over_quota() -> None:
    nov = date(2026, 11, 1)
    s = card(at(2026, 11, 20), balance=1000)
    s = evaluate(s, {nov: 1000}, at(2026, 11, 20)).state
    assert s.reasons == {Reason.OVER_QUOTA}
    assert next_due(s, _policy()) == at(2026, 12, 1) - timedelta(days=3)  # balance check first
    before = evaluate(s, {nov: 1000}, at(2026, 11, 30, 23, 59))
    assert before.commands == ()
    d = evaluate(s, {nov: 1000}, at(2026, 12, 1, 0, 0))
    assert cmds(d) == [("resume", "over_quota")]
    assert d.state.cycle == date(2026, 12, 1) and d.state.balance == 900 and d.state.fired == set()


def test_cycle_day_28_in_new_york_rolls_at_its_own_midnight() -> None:
    ny = timedelta(hours=-5)  # EST in December
    s = card(datetime(2026, 12, 20, tzinfo=UTC), cycle_day=28, timezone="America/New_York")
    assert s.cycle == date(2026, 11, 28)
    edge = datetime(2026, 12, 28, tzinfo=UTC) - ny
    assert evaluate(s, {}, edge - timedelta(seconds=1)).state.cycle == date(2026, 11, 28)
    assert evaluate(s, {}, edge).state.cycle == date(2026, 12, 28)


def test_february_of_a_leap_year() -> None:
    s = card(at(2028, 2, 10), cycle_day=28)
    assert s.cycle == date(2028, 1, 28)
    d = evaluate(s, {}, at(2028, 2, 29, 12))
    assert d.state.cycle == date(2028, 2, 28)
    # Next: the balance check 3 days before the 28 March rollover, then the rollover.
    assert next_due(d.state, _policy()) == at(2028, 3, 25)
    assert evaluate(d.state, {}, at(2028, 3, 28)).state.cycle == date(2028, 3, 28)


def test_prepaid_arrears_warned_suspended_and_restored_after_recharge() -> None:
    s = card(at(2026, 11, 20), balance=150)  # fee 100: covers one month, not two
    s = evaluate(s, {}, at(2026, 12, 1)).state
    assert s.balance == 50 and s.reasons == set()
    warn = evaluate(s, {}, at(2026, 12, 29))
    (a,) = warn.alerts
    assert (a.type, a.balance, a.amount_due) == (AlertType.BALANCE_INSUFFICIENT, 50, 100)
    assert evaluate(warn.state, {}, at(2026, 12, 30)).alerts == ()  # once per cycle
    d = evaluate(warn.state, {}, at(2027, 1, 1))
    assert cmds(d) == [("suspend", "arrears")] and d.state.owed == 100
    d = apply_event(d.state, event("card.recharged", amount=50), {}, at(2027, 1, 2))
    assert d.commands == () and d.state.balance == 100  # recharged, not restored yet
    d = apply_event(d.state, event("card.resume_requested"), {}, at(2027, 1, 2))
    assert cmds(d) == [("resume", "arrears")]
    assert (d.state.balance, d.state.owed) == (0, 0)  # a recharge covering exactly the fee


def test_resume_before_the_balance_covers_the_fee_is_refused() -> None:
    s = card(at(2026, 11, 20), balance=0)
    s = evaluate(s, {}, at(2026, 12, 1)).state
    d = apply_event(s, event("card.resume_requested"), {}, at(2026, 12, 2))
    assert d.commands == () and d.rejected is not None and "arrears" in d.rejected


def test_auto_restore_on_recharge() -> None:
    s = card(at(2026, 11, 20), balance=0)
    plan_upsert = upsert(expires_at="2099-01-01T00:00:00+08:00", balance=0)
    plan = plan_upsert.plan.model_copy(update={"auto_restore_on_recharge": True})  # type: ignore[union-attr]
    s = apply_event(s, plan_upsert.model_copy(update={"plan": plan}), {}, at(2026, 11, 20)).state
    s = evaluate(s, {}, at(2026, 12, 1)).state
    assert s.reasons == {Reason.ARREARS}
    d = apply_event(s, event("card.recharged", amount=100), {}, at(2026, 12, 2))
    assert cmds(d) == [("resume", "arrears")] and d.state.balance == 0


def test_postpaid_debt_past_the_credit_limit_then_cancelled_and_blacklisted() -> None:
    up = upsert(billing="postpaid", balance=0, expires_at="2099-01-01T00:00:00+08:00")
    plan = up.plan.model_copy(update={"credit_limit": 150})  # type: ignore[union-attr]
    s = apply_event(blank(), up.model_copy(update={"plan": plan}), {}, at(2026, 11, 20)).state
    s = evaluate(s, {}, at(2026, 12, 16)).state
    assert (s.balance, s.reasons) == (-100, set())  # due, but within the credit limit
    d = evaluate(s, {}, at(2027, 1, 15, 23, 59))
    assert cmds(d) == [] and d.state.balance == -200  # January's bill is not due yet
    d = evaluate(d.state, {}, at(2027, 1, 16))
    assert cmds(d) == [("suspend", "arrears")]
    assert d.commands[0].issued_at == at(2027, 1, 16)
    d = evaluate(d.state, {}, at(2027, 4, 16))
    assert cmds(d) == [("cancel", "arrears")]
    assert d.state.status is CardStatus.CANCELLED and d.state.blacklisted
    assert next_due(d.state, _policy()) is None


def test_postpaid_first_bill_is_not_a_suspension() -> None:
    s = card(at(2026, 11, 20), billing="postpaid", balance=0)
    d = evaluate(s, {}, at(2026, 12, 1))
    assert cmds(d) == [] and d.state.balance == -100  # billed, due in 15 days
    d = apply_event(d.state, event("card.recharged", amount=100), {}, at(2026, 12, 10))
    assert evaluate(d.state, {}, at(2026, 12, 16)).state.reasons == frozenset()


def test_postpaid_payment_that_clears_the_debt_restores_and_stops_the_cancellation() -> None:
    s = card(at(2026, 11, 20), billing="postpaid", balance=0)
    s = evaluate(s, {}, at(2026, 12, 16)).state
    assert s.reasons == {Reason.ARREARS}
    d = apply_event(s, event("card.recharged", amount=100), {}, at(2026, 12, 20))
    assert cmds(d) == [("resume", "arrears")] and d.state.arrears_since is None
    later = evaluate(d.state, {}, at(2027, 3, 15))  # bills of Jan-Mar paid as they fall due
    assert later.state.cancelled is False


def test_expiry_warnings_suspension_retention_fees_and_cancellation() -> None:
    s = card(at(2026, 11, 1), expires="2027-01-15T00:00:00+08:00", balance=10_000)
    w30 = evaluate(s, {}, at(2026, 12, 16))
    (a,) = w30.alerts
    assert (a.type, a.days_left) == (AlertType.EXPIRY_UPCOMING, 30)
    w7 = evaluate(w30.state, {}, at(2027, 1, 8))
    assert [(x.type.value, x.days_left) for x in w7.alerts] == [("expiry_upcoming", 7)]
    w1 = evaluate(w7.state, {}, at(2027, 1, 14))
    assert [x.days_left for x in w1.alerts] == [1]
    exp = evaluate(w1.state, {}, at(2027, 1, 15))
    assert cmds(exp) == [("suspend", "expired")]
    fees = exp.state.balance
    feb = evaluate(exp.state, {}, at(2027, 2, 15))
    assert feb.state.balance == fees - 500  # retention fee; no plan fee after expiry
    gone = evaluate(feb.state, {}, at(2027, 4, 15))
    assert cmds(gone) == [("cancel", "expired")] and gone.state.status is CardStatus.CANCELLED
    assert kinds(gone) == ["cancelled"]


def test_renewal_on_the_last_day_of_grace_restores() -> None:
    s = card(at(2026, 11, 1), expires="2027-01-15T00:00:00+08:00", balance=10_000)
    s = evaluate(s, {}, at(2027, 1, 15)).state
    last_day = at(2027, 4, 14, 23, 59)
    d = apply_event(s, event("card.renewed", expires_at="2028-01-15T00:00:00+08:00"), {}, last_day)
    assert cmds(d) == [("resume", "expired")]
    assert evaluate(d.state, {}, at(2027, 4, 16)).commands == ()


def test_card_upserted_already_expired_or_past_grace() -> None:
    d = apply_event(blank(), upsert(expires_at="2026-11-01T00:00:00+08:00"), {}, at(2026, 11, 20))
    assert cmds(d) == [("suspend", "expired")]
    assert d.state.balance == 1000  # no retroactive retention fee: billing's balance holds
    d = apply_event(blank(), upsert(expires_at="2026-06-01T00:00:00+08:00"), {}, at(2026, 11, 20))
    assert cmds(d) == [("suspend", "expired"), ("cancel", "expired")]


def test_several_reasons_deep_brought_back_one_by_one() -> None:
    nov = date(2026, 11, 1)
    s = card(at(2026, 11, 20), expires="2026-12-10T00:00:00+08:00", balance=0)
    s = evaluate(s, {nov: 1000}, at(2026, 11, 21)).state  # over quota
    s = evaluate(s, {nov: 1000}, at(2026, 12, 10, 12)).state  # Dec: arrears; then expired
    assert s.reasons == {Reason.EXPIRED, Reason.ARREARS}
    s = apply_event(s, event("card.suspend_requested"), {}, at(2026, 12, 11)).state
    assert Reason.MANUAL in s.reasons  # the customer's stop is recorded whatever holds
    d = apply_event(
        s, event("card.renewed", expires_at="2027-12-10T00:00:00+08:00"), {}, at(2026, 12, 11)
    )
    assert d.commands == () and d.state.reasons == {Reason.ARREARS, Reason.MANUAL}
    # The first grace month's retention fee (500) found a balance of 0: it is owed too.
    assert (d.state.balance, d.state.owed) == (0, 600)
    d = apply_event(d.state, event("card.recharged", amount=500), {}, at(2026, 12, 12))
    refused = apply_event(d.state, event("card.resume_requested"), {}, at(2026, 12, 12))
    assert refused.commands == ()  # manual lifted; a balance of 500 does not cover 600 owed
    assert refused.state.reasons == {Reason.ARREARS}
    d = apply_event(refused.state, event("card.recharged", amount=100), {}, at(2026, 12, 12))
    assert d.commands == ()
    d = apply_event(d.state, event("card.resume_requested"), {}, at(2026, 12, 12))
    assert cmds(d) == [("resume", "arrears")] and d.state.balance == 0


def test_a_card_left_alone_for_months_catches_up_in_order() -> None:
    s = card(at(2026, 11, 1), expires="2027-01-15T00:00:00+08:00", balance=10_000)
    d = evaluate(s, {}, at(2027, 6, 1))
    assert cmds(d) == [("suspend", "expired"), ("cancel", "expired")]
    assert [c.issued_at for c in d.commands] == [at(2027, 1, 15), at(2027, 4, 15)]
    assert "expiry_upcoming" not in kinds(d)  # stale warnings are not sent after the fact
    # Rollovers of Dec and Jan charged the plan fee; three retention fees were charged.
    assert d.state.balance == 10_000 - 2 * 100 - 3 * 500


def test_late_catch_up_sends_only_the_latest_expiry_warning() -> None:
    s = card(at(2026, 11, 1), expires="2027-01-15T00:00:00+08:00")
    d = evaluate(s, {}, at(2027, 1, 10))
    assert [(a.type.value, a.days_left) for a in d.alerts] == [("expiry_upcoming", 5)]


def test_evaluating_again_at_the_same_time_changes_nothing() -> None:
    s = card(at(2026, 11, 1), expires="2027-01-15T00:00:00+08:00", balance=0)
    for when in (at(2026, 12, 1), at(2027, 1, 15), at(2027, 4, 15)):
        d = evaluate(s, {}, when)
        assert evaluate(d.state, {}, when).changed is False
        s = d.state


def _policy() -> Policy:
    return DEFAULT_POLICY


def test_a_card_keeps_only_the_milestones_it_can_still_need() -> None:
    """A year of monthly balance warnings leaves one key, not twelve."""
    s = card(at(2026, 11, 20), balance=100_000)
    for month in range(1, 13):
        s = evaluate(s, {}, at(2027 + (month - 1) // 12, (month - 1) % 12 + 1, 2)).state
    warnings = sorted(m for m in s.milestones if m.startswith("b@"))
    assert warnings in ([], ["b@2028-01-01"])  # at most the upcoming rollover's
