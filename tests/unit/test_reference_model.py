"""Hand-computed examples for the reference lifecycle model (tests/reference/model.py).

Each example follows one rule of ../shared/domain.md or docs/lifecycle-rules.md; the
expected effects are worked out by hand in the comments.
"""

from __future__ import annotations

import itertools
import json
import time
from datetime import UTC, datetime
from typing import Any

from simwatch_contracts import parse_card_event
from tests.reference.model import final_state, run
from tests.reference.scenario import Effect, Input, Scenario, Usage

ICCID = "89860412345678901234"
_ids = itertools.count()


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def event(kind: str, at: str, **fields: Any) -> Input:
    body = {"type": kind, "event_id": f"ev-{next(_ids)}", "occurred_at": at, "iccid": ICCID}
    return Input(ts(at), parse_card_event(json.dumps(body | fields)))


def upsert(
    at: str,
    *,
    quota: int | None = 1000,
    fee: int = 0,
    auto_suspend: bool = True,
    billing: str = "prepaid",
    balance: int = 0,
    expires_at: str = "2030-01-01T00:00:00+08:00",
    cycle_day: int = 1,
    timezone: str = "Asia/Shanghai",
    warn: list[int] | None = None,
    credit_limit: int | None = None,
    auto_restore: bool = False,
) -> Input:
    plan: dict[str, Any] = {
        "plan_id": "p1",
        "quota_bytes": quota,
        "monthly_fee": fee,
        "auto_suspend": auto_suspend,
        "auto_restore_on_recharge": auto_restore,
    }
    if warn is not None:
        plan["warn_percents"] = warn
    if credit_limit is not None:
        plan["credit_limit"] = credit_limit
    return event(
        "card.upserted",
        at,
        customer_id="acme",
        plan=plan,
        billing=billing,
        balance=balance,
        expires_at=expires_at,
        cycle_day=cycle_day,
        timezone=timezone,
    )


def usage(at: str, nbytes: int, event_time: str | None = None) -> Input:
    return Input(ts(at), Usage(f"r-{next(_ids)}", ts(event_time or at), nbytes))


def scenario(*inputs: Input, until: str, debt: int = 0) -> Scenario:
    return Scenario(ICCID, tuple(inputs), ts(until), customer_debt=debt)


def sim(*inputs: Input, until: str, debt: int = 0) -> list[Effect]:
    return run(scenario(*inputs, until=until, debt=debt))


def eff(at: str, kind: str, what: str, *detail: object) -> Effect:
    return Effect(ts(at).astimezone(UTC), kind, what, tuple(detail))


def suspended(at: str, trigger: str, *reasons: str) -> list[Effect]:
    return [
        eff(at, "command", "suspend", trigger, *reasons),
        eff(at, "alert", "suspended", trigger, *reasons),
    ]


def resumed(at: str, trigger: str) -> list[Effect]:
    return [eff(at, "command", "resume", trigger), eff(at, "alert", "resumed", trigger)]


def cancelled(at: str, trigger: str, *reasons: str) -> list[Effect]:
    return [
        eff(at, "command", "cancel", trigger, *reasons),
        eff(at, "alert", "cancelled", trigger, *reasons),
    ]


# ------------------------------------------------------------------------- rule 1: quota


def test_kolkata_warnings_suspend_and_resume_at_local_midnight_of_cycle_day() -> None:
    # 800/900/1050 of 1000 -> 80 %, 90 %, exhausted + over_quota stop; cycle_day 5 in
    # Asia/Kolkata: the next cycle starts 2026-04-05T00:00+05:30 (= 04-04T18:30Z).
    effects = sim(
        upsert("2026-03-10T10:00:00+05:30", cycle_day=5, timezone="Asia/Kolkata"),
        usage("2026-03-12T10:00:00+05:30", 800),
        usage("2026-03-13T10:00:00+05:30", 100),
        usage("2026-03-14T10:00:00+05:30", 150),
        until="2026-04-10T00:00:00+05:30",
    )
    assert effects == sorted(
        [
            eff("2026-03-12T10:00:00+05:30", "alert", "usage_threshold", 80),
            eff("2026-03-13T10:00:00+05:30", "alert", "usage_threshold", 90),
            eff("2026-03-14T10:00:00+05:30", "alert", "quota_exhausted", 100),
            *suspended("2026-03-14T10:00:00+05:30", "over_quota", "over_quota"),
            *resumed("2026-04-04T18:30:00Z", "over_quota"),
        ]
    )


def test_one_record_crossing_several_levels_announces_each() -> None:
    effects = sim(
        upsert("2026-01-05T10:00:00+08:00", auto_suspend=False),
        usage("2026-01-06T10:00:00+08:00", 1000),
        until="2026-01-10T00:00:00+08:00",
    )
    at = "2026-01-06T10:00:00+08:00"
    assert effects == sorted(
        [
            eff(at, "alert", "usage_threshold", 80),
            eff(at, "alert", "usage_threshold", 90),
            eff(at, "alert", "quota_exhausted", 100),
        ]
    )


def test_quota_zero_no_alert_at_zero_bytes_but_held_from_the_start() -> None:
    # quota 0 + auto_suspend: over_quota holds at once and again after the rollover (no
    # command, still held); 0 bytes announce nothing; the first byte crosses every level.
    effects = sim(
        upsert("2026-01-05T10:00:00+08:00", quota=0),
        usage("2026-01-06T10:00:00+08:00", 0),
        usage("2026-02-02T10:00:00+08:00", 1),
        until="2026-02-05T00:00:00+08:00",
    )
    at = "2026-02-02T10:00:00+08:00"
    assert effects == sorted(
        [
            *suspended("2026-01-05T10:00:00+08:00", "over_quota", "over_quota"),
            eff(at, "alert", "usage_threshold", 80),
            eff(at, "alert", "usage_threshold", 90),
            eff(at, "alert", "quota_exhausted", 100),
        ]
    )


def test_warn_percent_100_gives_only_quota_exhausted() -> None:
    effects = sim(
        upsert("2026-01-05T10:00:00+08:00", auto_suspend=False, warn=[100]),
        usage("2026-01-06T10:00:00+08:00", 1000),
        until="2026-01-10T00:00:00+08:00",
    )
    assert effects == [eff("2026-01-06T10:00:00+08:00", "alert", "quota_exhausted", 100)]


def test_warn_threshold_is_rounded_up() -> None:
    # ceil(999 * 80 / 100) = 800: 799 bytes is not yet 80 %.
    effects = sim(
        upsert("2026-01-05T10:00:00+08:00", quota=999, auto_suspend=False),
        usage("2026-01-06T10:00:00+08:00", 799),
        usage("2026-01-07T10:00:00+08:00", 1),
        until="2026-01-10T00:00:00+08:00",
    )
    assert effects == [eff("2026-01-07T10:00:00+08:00", "alert", "usage_threshold", 80)]


def test_quota_raised_mid_cycle_lifts_over_quota_and_re_arms_warnings() -> None:
    # 1000/1000: 80, 90, exhausted, stop. Quota 2000: over_quota re-decided at once
    # (resume), all levels re-armed; 1700 >= 1600 announces 80 % again.
    effects = sim(
        upsert("2026-01-05T10:00:00+08:00"),
        usage("2026-01-06T10:00:00+08:00", 1000),
        upsert("2026-01-07T10:00:00+08:00", quota=2000),
        usage("2026-01-08T10:00:00+08:00", 700),
        until="2026-01-10T00:00:00+08:00",
    )
    at = "2026-01-06T10:00:00+08:00"
    assert effects == sorted(
        [
            eff(at, "alert", "usage_threshold", 80),
            eff(at, "alert", "usage_threshold", 90),
            eff(at, "alert", "quota_exhausted", 100),
            *suspended(at, "over_quota", "over_quota"),
            *resumed("2026-01-07T10:00:00+08:00", "over_quota"),
            eff("2026-01-08T10:00:00+08:00", "alert", "usage_threshold", 80),
        ]
    )


def test_rollover_due_at_an_inputs_instant_happens_before_the_input() -> None:
    # The record arrives exactly at the Feb 1 rollover: over_quota of January is lifted
    # first, then the record counts in February and stops the card again.
    feb = "2026-02-01T00:00:00+08:00"
    effects = sim(
        upsert("2026-01-05T10:00:00+08:00", auto_suspend=True, warn=[]),
        usage("2026-01-06T10:00:00+08:00", 1000),
        usage(feb, 1000),
        until="2026-02-05T00:00:00+08:00",
    )
    assert effects == sorted(
        [
            eff("2026-01-06T10:00:00+08:00", "alert", "quota_exhausted", 100),
            *suspended("2026-01-06T10:00:00+08:00", "over_quota", "over_quota"),
            *resumed(feb, "over_quota"),
            eff(feb, "alert", "quota_exhausted", 100),
            *suspended(feb, "over_quota", "over_quota"),
        ]
    )


def test_late_record_for_a_past_cycle_decides_nothing() -> None:
    effects = sim(
        upsert("2026-01-05T10:00:00+08:00"),
        usage("2026-02-02T10:00:00+08:00", 1000, event_time="2026-01-31T10:00:00+08:00"),
        until="2026-02-05T00:00:00+08:00",
    )
    assert effects == []
    state = final_state(
        scenario(
            upsert("2026-01-05T10:00:00+08:00"),
            usage("2026-02-02T10:00:00+08:00", 1000, event_time="2026-01-31T10:00:00+08:00"),
            until="2026-02-05T00:00:00+08:00",
        )
    )
    assert state["status"] == "active"
    assert state["used_bytes"] == 0


def test_record_cycle_is_decided_in_the_card_zone_not_in_utc() -> None:
    # 2026-01-31T17:00Z is 02-01T01:00 in Shanghai: it counts in the February cycle.
    effects = sim(
        upsert("2026-01-05T10:00:00+08:00", auto_suspend=False),
        usage("2026-02-01T02:00:00+08:00", 850, event_time="2026-01-31T17:00:00Z"),
        until="2026-02-05T00:00:00+08:00",
    )
    assert effects == [eff("2026-02-01T02:00:00+08:00", "alert", "usage_threshold", 80)]


# -------------------------------------------------------------- rule 2: manual, violation


def test_manual_stop_while_over_quota_survives_the_rollover() -> None:
    inputs = (
        upsert("2026-01-05T10:00:00+08:00"),
        usage("2026-01-06T10:00:00+08:00", 1000),
        event("card.suspend_requested", "2026-01-07T10:00:00+08:00"),
    )
    effects = sim(*inputs, until="2026-02-05T00:00:00+08:00")
    assert [e.what for e in effects if e.kind == "command"] == ["suspend"]
    state = final_state(scenario(*inputs, until="2026-02-05T00:00:00+08:00"))
    assert state["status"] == "suspended"
    assert state["reasons"] == ["manual"]
    # The manual start then lifts the last reason.
    more = sim(
        *inputs,
        event("card.resume_requested", "2026-02-03T10:00:00+08:00"),
        until="2026-02-05T00:00:00+08:00",
    )
    assert more == sorted([*effects, *resumed("2026-02-03T10:00:00+08:00", "manual")])


def test_violation_without_profile_commands_at_once_and_alert_waits_for_profile() -> None:
    # Usage before the profile is counted; thresholds apply once the profile arrives.
    effects = sim(
        event("card.violation_reported", "2026-01-03T10:00:00+08:00"),
        usage("2026-01-04T10:00:00+08:00", 900),
        upsert("2026-01-05T10:00:00+08:00"),
        event("card.violation_cleared", "2026-01-06T10:00:00+08:00"),
        until="2026-01-10T00:00:00+08:00",
    )
    at = "2026-01-05T10:00:00+08:00"
    assert effects == sorted(
        [
            eff("2026-01-03T10:00:00+08:00", "command", "suspend", "violation", "violation"),
            eff(at, "alert", "suspended", "violation", "violation"),
            eff(at, "alert", "usage_threshold", 80),
            eff(at, "alert", "usage_threshold", 90),
            *resumed("2026-01-06T10:00:00+08:00", "violation"),
        ]
    )


def test_manual_start_never_lifts_violation() -> None:
    effects = sim(
        upsert("2026-01-05T10:00:00+08:00"),
        event("card.suspend_requested", "2026-01-06T10:00:00+08:00"),
        event("card.violation_reported", "2026-01-07T10:00:00+08:00"),
        event("card.resume_requested", "2026-01-08T10:00:00+08:00"),
        event("card.violation_cleared", "2026-01-09T10:00:00+08:00"),
        until="2026-01-10T00:00:00+08:00",
    )
    assert effects == sorted(
        [
            *suspended("2026-01-06T10:00:00+08:00", "manual", "manual"),
            *resumed("2026-01-09T10:00:00+08:00", "violation"),
        ]
    )


# ---------------------------------------------------------------- rule 3: prepaid fees


def test_prepaid_balance_warning_arrears_and_manual_restore() -> None:
    # Fee 500, balance 600. Jan 29 (3 days before Feb 1): 600 covers 500, no warning.
    # Feb 1 paid (100 left). Feb 26: 100 < 500 -> warn 500. Mar 1: owed 500, arrears.
    # Mar 29: warn owed + fee = 1000. Recharge 2000 (no auto restore), manual start
    # settles (2100 - 500 = 1600) and resumes. Apr 1 paid: 1100.
    inputs = (
        upsert("2026-01-10T10:00:00+08:00", fee=500, balance=600),
        event("card.recharged", "2026-03-30T10:00:00+08:00", amount=2000),
        event("card.resume_requested", "2026-03-31T10:00:00+08:00"),
    )
    effects = sim(*inputs, until="2026-04-02T00:00:00+08:00")
    assert effects == sorted(
        [
            eff("2026-02-01T00:00:00+08:00", "charge", "plan_fee", 500, "2026-02-01"),
            eff("2026-02-26T00:00:00+08:00", "alert", "balance_insufficient", 500),
            eff("2026-03-01T00:00:00+08:00", "charge", "plan_fee", 500, "2026-03-01"),
            *suspended("2026-03-01T00:00:00+08:00", "arrears", "arrears"),
            eff("2026-03-29T00:00:00+08:00", "alert", "balance_insufficient", 1000),
            *resumed("2026-03-31T10:00:00+08:00", "arrears"),
            eff("2026-04-01T00:00:00+08:00", "charge", "plan_fee", 500, "2026-04-01"),
        ]
    )
    state = final_state(scenario(*inputs, until="2026-04-02T00:00:00+08:00"))
    assert (state["status"], state["balance"], state["owed"]) == ("active", 1100, 0)


def test_arrival_inside_window_warned_at_once_and_auto_restore_on_recharge() -> None:
    effects = sim(
        upsert("2026-01-30T10:00:00+08:00", fee=500, balance=100, auto_restore=True),
        event("card.recharged", "2026-02-02T10:00:00+08:00", amount=1000),
        until="2026-02-05T00:00:00+08:00",
    )
    assert effects == sorted(
        [
            eff("2026-01-30T10:00:00+08:00", "alert", "balance_insufficient", 500),
            eff("2026-02-01T00:00:00+08:00", "charge", "plan_fee", 500, "2026-02-01"),
            *suspended("2026-02-01T00:00:00+08:00", "arrears", "arrears"),
            *resumed("2026-02-02T10:00:00+08:00", "arrears"),
        ]
    )


def test_manual_start_lifting_manual_and_arrears_at_once_uses_trigger_order() -> None:
    effects = sim(
        upsert("2026-01-10T10:00:00+08:00", fee=500),
        event("card.suspend_requested", "2026-02-02T10:00:00+08:00"),
        event("card.recharged", "2026-02-03T10:00:00+08:00", amount=1000),
        event("card.resume_requested", "2026-02-04T10:00:00+08:00"),
        until="2026-02-05T00:00:00+08:00",
    )
    assert effects == sorted(
        [
            eff("2026-01-29T00:00:00+08:00", "alert", "balance_insufficient", 500),
            eff("2026-02-01T00:00:00+08:00", "charge", "plan_fee", 500, "2026-02-01"),
            *suspended("2026-02-01T00:00:00+08:00", "arrears", "arrears"),
            *resumed("2026-02-04T10:00:00+08:00", "arrears"),
        ]
    )


def test_at_most_one_plan_fee_per_calendar_month_when_cycle_day_changes() -> None:
    # Feb 1 charged; cycle_day 15 from Feb 10: the Feb 15 rollover is in a month already
    # charged; Mar 15 is charged.
    effects = sim(
        upsert("2026-01-20T10:00:00+08:00", fee=100, balance=10_000),
        upsert("2026-02-10T10:00:00+08:00", fee=100, balance=9_900, cycle_day=15),
        until="2026-03-20T00:00:00+08:00",
    )
    assert [e for e in effects if e.kind == "charge"] == [
        eff("2026-02-01T00:00:00+08:00", "charge", "plan_fee", 100, "2026-02-01"),
        eff("2026-03-15T00:00:00+08:00", "charge", "plan_fee", 100, "2026-03-15"),
    ]


def test_blacklisted_customers_new_card_is_held_until_the_debt_is_paid() -> None:
    inputs = (
        upsert("2026-01-05T10:00:00+08:00"),
        event("card.recharged", "2026-01-06T10:00:00+08:00", amount=2000),
        event("card.recharged", "2026-01-07T10:00:00+08:00", amount=1500),
    )
    effects = sim(*inputs, until="2026-01-10T00:00:00+08:00", debt=3000)
    assert effects == sorted(
        [
            *suspended("2026-01-05T10:00:00+08:00", "blacklisted", "blacklisted"),
            *resumed("2026-01-07T10:00:00+08:00", "blacklisted"),
        ]
    )
    state = final_state(scenario(*inputs, until="2026-01-10T00:00:00+08:00", debt=3000))
    assert (state["balance"], state["customer_debt"]) == (500, 0)


# ------------------------------------------------------------------------------ postpaid

POSTPAID = {"billing": "postpaid", "fee": 1000, "quota": None, "auto_suspend": False}


def test_postpaid_bill_falls_due_15_days_later_then_cancel_3_months_after_stop() -> None:
    # Bills of Feb 1, Mar 1, Apr 1, May 1; the first is due Feb 16 (arrears, stop);
    # still unpaid May 16: cancel, and the customer is blacklisted for 4000.
    inputs = (upsert("2026-01-10T09:00:00+08:00", **POSTPAID),)
    effects = sim(*inputs, until="2026-05-20T00:00:00+08:00")
    assert effects == sorted(
        [
            eff("2026-02-01T00:00:00+08:00", "charge", "plan_fee", 1000, "2026-02-01"),
            *suspended("2026-02-16T00:00:00+08:00", "arrears", "arrears"),
            eff("2026-03-01T00:00:00+08:00", "charge", "plan_fee", 1000, "2026-03-01"),
            eff("2026-04-01T00:00:00+08:00", "charge", "plan_fee", 1000, "2026-04-01"),
            eff("2026-05-01T00:00:00+08:00", "charge", "plan_fee", 1000, "2026-05-01"),
            *cancelled("2026-05-16T00:00:00+08:00", "arrears", "arrears"),
        ]
    )
    state = final_state(scenario(*inputs, until="2026-05-20T00:00:00+08:00"))
    assert (state["status"], state["customer_debt"]) == ("cancelled", 4000)


def test_postpaid_payment_lifts_arrears_and_stops_the_cancellation_clock() -> None:
    effects = sim(
        upsert("2026-01-10T09:00:00+08:00", **POSTPAID),
        event("card.recharged", "2026-02-20T10:00:00+08:00", amount=1000),
        event("card.recharged", "2026-03-10T10:00:00+08:00", amount=1000),
        until="2026-05-20T00:00:00+08:00",
    )
    # The Apr 1 bill is unpaid at Apr 16: a new stop; its clock would end Jul 16.
    assert effects == sorted(
        [
            eff("2026-02-01T00:00:00+08:00", "charge", "plan_fee", 1000, "2026-02-01"),
            *suspended("2026-02-16T00:00:00+08:00", "arrears", "arrears"),
            *resumed("2026-02-20T10:00:00+08:00", "arrears"),
            eff("2026-03-01T00:00:00+08:00", "charge", "plan_fee", 1000, "2026-03-01"),
            eff("2026-04-01T00:00:00+08:00", "charge", "plan_fee", 1000, "2026-04-01"),
            *suspended("2026-04-16T00:00:00+08:00", "arrears", "arrears"),
            eff("2026-05-01T00:00:00+08:00", "charge", "plan_fee", 1000, "2026-05-01"),
        ]
    )


def test_postpaid_debt_within_credit_limit_does_not_stop() -> None:
    effects = sim(
        upsert("2026-01-10T09:00:00+08:00", **POSTPAID, credit_limit=1500),
        until="2026-03-20T00:00:00+08:00",
    )
    # Feb 16: 1000 <= 1500; Mar 16: 2000 > 1500.
    assert [e for e in effects if e.kind == "command"] == [
        eff("2026-03-16T00:00:00+08:00", "command", "suspend", "arrears", "arrears")
    ]


# -------------------------------------------------------------------------- rule 4: expiry

MONTH_END = "2026-03-01T00:00:00+08:00"


def month_end_expiry(expires_at: str) -> list[Effect]:
    return sim(
        upsert("2026-01-15T12:00:00+08:00", fee=300, balance=10_000, expires_at=expires_at),
        until="2026-03-02T00:00:00+08:00",
    )


def test_expiry_coinciding_with_a_cycle_start_charges_no_plan_fee() -> None:
    # Warnings 30/7/1 days before; the Mar 1 cycle starts at expiry: no plan fee (and no
    # balance warning for it); expired + retention fee for grace month 0 instead.
    assert month_end_expiry(MONTH_END) == sorted(
        [
            eff("2026-01-30T00:00:00+08:00", "alert", "expiry_upcoming", 30),
            eff("2026-02-01T00:00:00+08:00", "charge", "plan_fee", 300, "2026-02-01"),
            eff("2026-02-22T00:00:00+08:00", "alert", "expiry_upcoming", 7),
            eff("2026-02-28T00:00:00+08:00", "alert", "expiry_upcoming", 1),
            *suspended(MONTH_END, "expired", "expired"),
            eff(MONTH_END, "charge", "retention_fee", 500, 0),
        ]
    )


def test_expires_at_offset_does_not_matter() -> None:
    assert month_end_expiry("2026-02-28T16:00:00Z") == month_end_expiry(MONTH_END)


def test_retention_fees_and_cancellation_in_the_card_zone() -> None:
    # New York, expiry Jan 31 20:00 local. Arrival 11 days 8 hours before: only the
    # 30-day warning has passed -> at once, 12 days left (rounded up). Fees at Jan 31,
    # Feb 28 (clamped) and Mar 31 20:00 local (EDT: Apr 1 00:00Z, not 01:00Z); cancel
    # at Apr 30 20:00 EDT.
    ny = "America/New_York"
    effects = sim(
        upsert(
            "2026-01-20T12:00:00-05:00", balance=10_000, timezone=ny,
            expires_at="2026-01-31T20:00:00-05:00",
        ),
        until="2026-05-05T00:00:00Z",
    )  # fmt: skip
    assert effects == sorted(
        [
            eff("2026-01-20T12:00:00-05:00", "alert", "expiry_upcoming", 12),
            eff("2026-01-24T20:00:00-05:00", "alert", "expiry_upcoming", 7),
            eff("2026-01-30T20:00:00-05:00", "alert", "expiry_upcoming", 1),
            *suspended("2026-01-31T20:00:00-05:00", "expired", "expired"),
            eff("2026-01-31T20:00:00-05:00", "charge", "retention_fee", 500, 0),
            eff("2026-02-28T20:00:00-05:00", "charge", "retention_fee", 500, 1),
            eff("2026-04-01T00:00:00Z", "charge", "retention_fee", 500, 2),
            *cancelled("2026-05-01T00:00:00Z", "expired", "expired"),
        ]
    )


def test_renewal_to_a_past_date_is_refused_and_a_future_one_restores() -> None:
    exp = "2026-02-01T00:00:00+08:00"
    effects = sim(
        upsert("2025-12-20T10:00:00+08:00", balance=10_000, expires_at=exp),
        event("card.renewed", "2026-02-10T10:00:00+08:00", expires_at="2026-02-05T00:00:00Z"),
        event("card.renewed", "2026-02-11T10:00:00+08:00", expires_at="2027-01-01T00:00:00Z"),
        until="2026-05-20T00:00:00+08:00",
    )
    # No retention fee for grace months 1 and 2 and no cancellation after the renewal.
    assert effects == sorted(
        [
            eff("2026-01-02T00:00:00+08:00", "alert", "expiry_upcoming", 30),
            eff("2026-01-25T00:00:00+08:00", "alert", "expiry_upcoming", 7),
            eff("2026-01-31T00:00:00+08:00", "alert", "expiry_upcoming", 1),
            *suspended(exp, "expired", "expired"),
            eff(exp, "charge", "retention_fee", 500, 0),
            *resumed("2026-02-11T10:00:00+08:00", "expired"),
        ]
    )


def test_upsert_with_a_later_expiry_renews_an_earlier_one_is_ignored() -> None:
    exp = "2026-02-01T00:00:00+08:00"
    effects = sim(
        upsert("2025-12-20T10:00:00+08:00", balance=10_000, expires_at=exp),
        upsert("2026-02-04T10:00:00+08:00", balance=9_500, expires_at="2026-01-20T00:00:00Z"),
        upsert("2026-02-05T10:00:00+08:00", balance=9_500, expires_at="2026-12-31T00:00:00Z"),
        until="2026-03-10T00:00:00+08:00",
    )
    assert effects == sorted(
        [
            eff("2026-01-02T00:00:00+08:00", "alert", "expiry_upcoming", 30),
            eff("2026-01-25T00:00:00+08:00", "alert", "expiry_upcoming", 7),
            eff("2026-01-31T00:00:00+08:00", "alert", "expiry_upcoming", 1),
            *suspended(exp, "expired", "expired"),
            eff(exp, "charge", "retention_fee", 500, 0),
            *resumed("2026-02-05T10:00:00+08:00", "expired"),
        ]
    )


def test_prepaid_retention_fee_beyond_the_balance_is_owed_and_holds_arrears() -> None:
    exp = "2026-02-01T00:00:00+08:00"
    inputs = (upsert("2026-01-25T10:00:00+08:00", balance=200, expires_at=exp),)
    effects = sim(*inputs, until="2026-02-02T00:00:00+08:00")
    assert effects == sorted(
        [
            eff("2026-01-25T10:00:00+08:00", "alert", "expiry_upcoming", 7),
            eff("2026-01-31T00:00:00+08:00", "alert", "expiry_upcoming", 1),
            *suspended(exp, "expired", "expired"),
            eff(exp, "charge", "retention_fee", 500, 0),
        ]
    )
    state = final_state(scenario(*inputs, until="2026-02-02T00:00:00+08:00"))
    assert state["reasons"] == ["arrears", "expired"]
    assert (state["balance"], state["owed"]) == (0, 300)


def test_cancelled_card_ignores_every_input() -> None:
    exp = "2026-01-10T00:00:00+08:00"
    base = (upsert("2025-12-20T10:00:00+08:00", balance=10_000, expires_at=exp),)
    later = (
        event("card.renewed", "2026-04-15T10:00:00+08:00", expires_at="2027-01-01T00:00:00Z"),
        event("card.suspend_requested", "2026-04-16T10:00:00+08:00"),
        event("card.violation_reported", "2026-04-17T10:00:00+08:00"),
        usage("2026-04-18T10:00:00+08:00", 5000),
        event("card.recharged", "2026-04-19T10:00:00+08:00", amount=100),
    )
    until = "2026-06-01T00:00:00+08:00"
    effects = sim(*base, until=until)
    assert effects[-2:] == sorted(cancelled("2026-04-10T00:00:00+08:00", "expired", "expired"))
    assert sim(*base, *later, until=until) == effects
    assert final_state(scenario(*base, *later, until=until))["status"] == "cancelled"


# ------------------------------------------------------------------------------- speed


def test_six_months_with_forty_inputs_is_fast() -> None:
    inputs = [upsert("2026-01-03T10:00:00+08:00", fee=300, balance=1000, cycle_day=7)]
    for day in range(39):
        month, dom = 1 + day // 7, 4 + (day % 7) * 3
        inputs.append(usage(f"2026-{month:02d}-{dom:02d}T10:00:00+08:00", 150))
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        run(scenario(*inputs, until="2026-07-03T00:00:00+08:00"))
        best = min(best, time.perf_counter() - start)
    assert best < 0.05
