"""Named regressions: each scenario is a defect of issue #12 or a counterexample the
reference comparison shrank to. Each runs through both the production domain and the
reference model (they must agree) and asserts the rule it is about."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from simwatch_contracts import parse_card_event
from tests.reference import production
from tests.reference.scenario import Effect, Input, Scenario, Usage

from .test_lifecycle_reference import check

ICCID = "89860412345678901234"
SH = timedelta(hours=8)
_seq = iter(range(1, 10**9))


def sh(y: int, m: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    """A Shanghai wall time as a UTC instant."""
    return datetime(y, m, d, h, mi, tzinfo=UTC) - SH


def ev(kind: str, at: datetime, **fields: Any) -> Input:
    doc = {"type": kind, "event_id": f"e{next(_seq)}", "iccid": ICCID, **fields}
    doc["occurred_at"] = at.isoformat()
    return Input(at, parse_card_event(json.dumps(doc)))


def upsert(at: datetime, expires: str = "2099-01-01T00:00:00+08:00", **kw: Any) -> Input:
    plan = {
        "plan_id": "p",
        "quota_bytes": kw.pop("quota", 1000),
        "monthly_fee": kw.pop("fee", 100),
        "auto_suspend": kw.pop("auto", True),
        "warn_percents": list(kw.pop("warn", (80, 90))),
        "auto_restore_on_recharge": kw.pop("auto_restore", False),
    }
    if "credit_limit" in kw:
        plan["credit_limit"] = kw.pop("credit_limit")
    fields = {
        "customer_id": "acme",
        "billing": "prepaid",
        "balance": 1000,
        "expires_at": expires,
        "plan": plan,
        **kw,
    }
    return ev("card.upserted", at, **fields)


def use(at: datetime, nbytes: int) -> Input:
    return Input(at, Usage(f"r{next(_seq)}", at, nbytes))


def run(*inputs: Input, until: datetime, debt: int = 0) -> list[Effect]:
    scenario = Scenario(ICCID, inputs, until, customer_debt=debt)
    check(scenario)  # the production domain and the reference agree
    return production.run(scenario)[0]


def of(effects: list[Effect], kind: str, what: str | None = None) -> list[Effect]:
    return [e for e in effects if e.kind == kind and (what is None or e.what == what)]


def test_no_plan_fee_for_a_cycle_that_starts_at_expiry_and_renewal_resumes() -> None:
    effects = run(
        upsert(sh(2026, 11, 20), expires="2026-12-01T00:00:00+08:00", balance=600),
        ev("card.renewed", sh(2026, 12, 5), expires_at="2027-12-01T00:00:00+08:00"),
        until=sh(2026, 12, 6),
    )
    assert of(effects, "charge", "plan_fee") == []  # no December fee: the plan had ended
    commands = [(e.what, e.detail) for e in of(effects, "command")]
    assert commands == [("suspend", ("expired", "expired")), ("resume", ("expired",))]


def test_a_postpaid_card_that_paid_its_debt_is_never_cancelled() -> None:
    effects = run(
        upsert(sh(2026, 11, 20), billing="postpaid", balance=0),
        ev("card.recharged", sh(2026, 12, 20), amount=1000),  # after the due date (Dec 16)
        until=sh(2027, 6, 1),
    )
    commands = [(e.what, e.detail[0]) for e in of(effects, "command")]
    assert ("cancel", "arrears") not in commands
    assert commands[:2] == [("suspend", "arrears"), ("resume", "arrears")]


def test_a_postpaid_bill_is_not_a_suspension_before_it_falls_due() -> None:
    effects = run(
        upsert(sh(2026, 11, 20), billing="postpaid", balance=0),
        ev("card.recharged", sh(2026, 12, 10), amount=100),
        until=sh(2027, 1, 1),
    )
    assert of(effects, "command") == []


def test_expires_at_in_any_offset_gives_the_same_fees_and_cancellation() -> None:
    def at(expires: str) -> list[Effect]:
        return run(upsert(sh(2026, 11, 20), expires=expires), until=sh(2027, 6, 1))

    local = at("2027-01-31T00:30:00+08:00")
    assert local == at("2027-01-30T16:30:00Z") == at("2027-01-30T11:30:00-05:00")
    fees = [(e.at, e.detail) for e in of(local, "charge", "retention_fee")]
    assert fees[1] == (sh(2027, 2, 28, 0, 30), (500, 1))  # Jan 31 + 1 month, clamped, local
    (cancel,) = of(local, "command", "cancel")
    assert cancel.at == sh(2027, 4, 30, 0, 30)


def test_a_manual_stop_while_over_quota_holds_after_the_next_cycle() -> None:
    effects = run(
        upsert(sh(2026, 11, 20)),
        use(sh(2026, 11, 21), 1000),
        ev("card.suspend_requested", sh(2026, 11, 22)),
        ev("card.violation_reported", sh(2026, 11, 23)),
        ev("card.violation_cleared", sh(2026, 12, 2)),
        until=sh(2026, 12, 10),
    )
    assert [e.what for e in of(effects, "command")] == ["suspend"]  # never restarted


def test_a_violation_before_the_profile_suspends_and_the_alert_waits() -> None:
    effects = run(
        ev("card.violation_reported", sh(2026, 11, 20)),
        upsert(sh(2026, 11, 21)),
        until=sh(2026, 11, 22),
    )
    (cmd,) = of(effects, "command")
    (alert,) = of(effects, "alert", "suspended")
    assert (cmd.at, cmd.what, alert.at) == (sh(2026, 11, 20), "suspend", sh(2026, 11, 21))


def test_quota_zero_and_warn_100_send_no_noise() -> None:
    zero = run(upsert(sh(2026, 11, 20), quota=0, auto=False), until=sh(2027, 2, 1))
    assert of(zero, "alert") == []
    hundred = run(
        upsert(sh(2026, 11, 20), warn=(100,), auto=False),
        use(sh(2026, 11, 21), 1000),
        until=sh(2026, 11, 22),
    )
    assert [e.what for e in of(hundred, "alert")] == ["quota_exhausted"]


def test_a_quota_raised_mid_cycle_warns_again_before_the_next_suspension() -> None:
    effects = run(
        upsert(sh(2026, 11, 20)),
        use(sh(2026, 11, 21), 1000),
        upsert(sh(2026, 11, 22), quota=2000),
        use(sh(2026, 11, 23), 700),
        use(sh(2026, 11, 24), 400),
        until=sh(2026, 11, 25),
    )
    after = [(e.what, e.detail) for e in of(effects, "alert") if e.at > sh(2026, 11, 22)]
    assert sorted(after) == [  # every level announced again before the new suspension
        ("quota_exhausted", (100,)),
        ("suspended", ("over_quota", "over_quota")),
        ("usage_threshold", (80,)),
        ("usage_threshold", (90,)),
    ]


def test_a_new_card_of_a_blacklisted_customer_is_held_until_the_debt_is_paid() -> None:
    effects = run(
        upsert(sh(2026, 11, 20), balance=0),
        ev("card.recharged", sh(2026, 11, 21), amount=200),
        ev("card.recharged", sh(2026, 11, 22), amount=150),
        until=sh(2026, 11, 23),
        debt=300,
    )
    commands = [(e.at, e.what, e.detail[0]) for e in of(effects, "command")]
    assert commands == [
        (sh(2026, 11, 20), "suspend", "blacklisted"),
        (sh(2026, 11, 22), "resume", "blacklisted"),
    ]


def test_a_retention_fee_the_balance_cannot_cover_is_owed() -> None:
    effects = run(
        upsert(sh(2026, 11, 20), expires="2026-11-25T00:00:00+08:00", balance=300, fee=0),
        ev("card.renewed", sh(2026, 12, 1), expires_at="2027-11-25T00:00:00+08:00"),
        until=sh(2026, 12, 2),
    )
    # 300 of the 500 paid, 200 owed: the renewal leaves the card in arrears.
    assert [(e.what, e.detail) for e in of(effects, "command")] == [
        ("suspend", ("expired", "expired")),
    ]


def test_a_renewal_to_a_date_already_past_is_refused() -> None:
    effects = run(
        upsert(sh(2026, 11, 20), expires="2026-11-25T00:00:00+08:00"),
        ev("card.renewed", sh(2026, 12, 1), expires_at="2026-11-30T00:00:00+08:00"),
        until=sh(2027, 3, 1),
    )
    fees = [e.detail for e in of(effects, "charge", "retention_fee")]
    assert fees == [(500, 0), (500, 1), (500, 2)]  # one grace period, not two


def test_a_cycle_day_moved_mid_month_never_charges_twice_in_a_month() -> None:
    effects = run(
        upsert(sh(2026, 11, 20)),
        upsert(sh(2026, 12, 5), cycle_day=15),
        until=sh(2027, 1, 20),
    )
    months = [e.at.astimezone(UTC) + SH for e in of(effects, "charge", "plan_fee")]
    assert [(m.year, m.month) for m in months] == [(2026, 12), (2027, 1)]


def test_a_held_card_whose_plan_has_ended_is_suspended_for_expiry_first() -> None:
    effects = run(
        upsert(sh(2026, 11, 20), expires="2026-11-20T00:00:00+08:00", billing="postpaid"),
        until=sh(2026, 11, 20),
        debt=300,
    )
    (cmd,) = of(effects, "command")
    assert cmd.detail == ("expired", "blacklisted", "expired")


def test_an_upsert_never_moves_the_term_back() -> None:
    effects = run(
        upsert(sh(2026, 11, 20), expires="2026-11-25T00:00:00+08:00"),
        ev("card.renewed", sh(2026, 12, 1), expires_at="2027-12-01T00:00:00+08:00"),
        upsert(sh(2027, 3, 1), expires="2026-11-25T00:00:00+08:00"),
        until=sh(2027, 4, 1),
    )
    assert of(effects, "command", "cancel") == []


def test_days_left_are_counted_on_the_cards_wall_clock_across_dst() -> None:
    start = datetime(2026, 3, 19, 1, 0, tzinfo=UTC)  # London, GMT
    effects = run(
        upsert(start, timezone="Europe/London", expires="2026-04-30T00:00:00Z"),
        ev("card.renewed", start, expires_at="2026-03-29T01:00:00Z"),  # 02:00 BST
        until=start,
    )
    assert [e.detail for e in of(effects, "alert", "expiry_upcoming")] == [(11,)]


def test_a_suspension_waiting_for_the_profile_is_announced_before_a_cancellation() -> None:
    effects = run(
        ev("card.violation_reported", sh(2026, 11, 20)),
        upsert(sh(2026, 11, 21), expires="2026-06-01T00:00:00+08:00"),
        until=sh(2026, 11, 21),
    )
    assert [e.what for e in of(effects, "alert")] == ["cancelled", "suspended"]  # sorted


def test_a_quota_taken_away_and_given_back_announces_nothing_twice() -> None:
    effects = run(
        upsert(sh(2026, 11, 20), auto=False),
        use(sh(2026, 11, 21), 1000),
        upsert(sh(2026, 11, 22), quota=None, auto=False),
        upsert(sh(2026, 11, 23), auto=False),
        until=sh(2026, 11, 24),
    )
    assert len(of(effects, "alert", "quota_exhausted")) == 1


def test_a_bill_issued_when_dst_skips_midnight_falls_due_on_the_wall_clock() -> None:
    # Havana skips 00:00 on 2026-03-08: that cycle starts at 01:00 CDT (05:00 UTC), and its
    # bill falls due 15 days later on the wall clock, 2026-03-23 01:00 CDT (05:00 UTC).
    start = datetime(2026, 2, 20, 15, tzinfo=UTC)
    effects = run(
        upsert(start, billing="postpaid", balance=0, cycle_day=8, timezone="America/Havana"),
        until=datetime(2026, 3, 24, tzinfo=UTC),
    )
    (suspend,) = of(effects, "command", "suspend")
    assert suspend.at == datetime(2026, 3, 23, 5, tzinfo=UTC)


def test_a_term_corrected_back_and_forth_warns_once_per_lead() -> None:
    # Found by the reference comparison: a renewal to an earlier date, corrected minutes
    # later by an upsert back to the first term, announced that term's 30-day warning again.
    first = "2026-04-30T16:00:00+00:00"
    effects = run(
        upsert(datetime(2026, 3, 1, tzinfo=UTC), expires=first),
        ev(
            "card.renewed",
            datetime(2026, 3, 31, 16, 3, tzinfo=UTC),
            expires_at="2026-04-01T16:03:00+00:00",
        ),
        upsert(datetime(2026, 3, 31, 16, 4, tzinfo=UTC), expires=first),
        until=datetime(2026, 4, 2, tzinfo=UTC),
    )
    warned = [e.detail for e in of(effects, "alert", "expiry_upcoming")]
    assert warned.count((30,)) == 1


def test_expiry_and_arrears_cancellations_due_together_are_one_with_the_first_reason() -> None:
    # Found by the reference comparison: expires 1 April (Shanghai), its grace ends 1 July;
    # a bill of the 17th-day cycle falls due unpaid and arrears begin on 1 April: 3 months
    # later is also 1 July. One cancellation, its trigger `expired` (first in priority).
    expires = "2026-03-31T16:00:00+00:00"
    effects = run(
        upsert(
            datetime(2026, 1, 1, tzinfo=UTC),
            expires,
            quota=None,
            fee=0,
            auto=False,
            warn=(),
            billing="postpaid",
            balance=0,
        ),
        use(datetime(2026, 1, 31, 16, 0, tzinfo=UTC), 0),
        use(datetime(2026, 1, 31, 16, 1, tzinfo=UTC), 0),
        upsert(
            datetime(2026, 1, 31, 16, 2, tzinfo=UTC),
            expires,
            quota=None,
            auto=False,
            warn=(),
            billing="postpaid",
            balance=0,
            cycle_day=17,
        ),
        ev("card.recharged", datetime(2026, 2, 28, 16, tzinfo=UTC), amount=100),
        until=datetime(2026, 6, 30, 16, tzinfo=UTC),
    )
    (cancel,) = of(effects, "command", "cancel")
    assert cancel.detail[0] == "expired"


def test_a_billing_calendar_corrected_back_and_forth_warns_of_the_balance_once() -> None:
    """Counterexample of the reference comparison (round 2, session 4): the balance warning
    of the rollover on the 2nd was forgotten while the calendar read day 1 for a minute, and
    announced again when it was corrected back."""
    t = datetime(2026, 1, 1, tzinfo=UTC)  # 08:00 in Shanghai: the rollover on the 2nd is near
    effects = run(
        upsert(t, balance=0, fee=100, cycle_day=2, expires="2026-02-02T00:00:00+08:00"),
        upsert(t + timedelta(minutes=1), balance=0, fee=0, cycle_day=1),
        use(t + timedelta(minutes=2), 0),
        upsert(t + timedelta(minutes=3), balance=0, fee=100, cycle_day=2),
        until=t + timedelta(minutes=3),
    )
    assert len(of(effects, "alert", "balance_insufficient")) == 1
