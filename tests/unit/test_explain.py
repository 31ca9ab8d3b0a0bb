"""Explain: every reason and every pair of reasons in both languages against golden files
(tests/unit/golden/explain/, reviewed by eye; `SIMWATCH_UPDATE_GOLDEN=1` rewrites them), and
the property that what explain says lifts a reason does lift it, while one cent less or one
second earlier does not."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from simwatch_contracts import Reason
from tests.reference import production
from tests.reference.scenario import Input, Policy, Scenario, Usage
from tests.reference.strategies import scenarios
from usage_monitor.domain.card import CardState
from usage_monitor.domain.explain import Explanation, Lifts, explain
from usage_monitor.domain.explain_texts import LANGUAGES, render
from usage_monitor.domain.lifecycle import apply_event, evaluate
from usage_monitor.domain.policy import DEFAULT_POLICY

from .factories import event, upsert

GOLDEN = Path(__file__).parent / "golden" / "explain"
SH = timedelta(hours=8)
REASONS = [
    Reason.OVER_QUOTA,
    Reason.MANUAL,
    Reason.ARREARS,
    Reason.EXPIRED,
    Reason.VIOLATION,
    Reason.BLACKLISTED,
]


def sh(m: int, d: int, h: int = 0) -> datetime:
    return datetime(2026, m, d, h, tzinfo=UTC) - SH


def card_with(reasons: tuple[Reason, ...]) -> tuple[CardState, dict[date, int], datetime]:
    """A prepaid card that came to hold exactly `reasons` by the rules (not by hand)."""
    held = set(reasons)
    expires = "2026-12-05T00:00:00+08:00" if Reason.EXPIRED in held else "2027-06-30T00:00:00+08:00"
    balance = 0 if Reason.ARREARS in held else 10_000
    debt = 300 if Reason.BLACKLISTED in held else 0
    d = apply_event(
        CardState("89860412345678901234"),
        upsert(1000, expires_at=expires, balance=balance),
        {},
        sh(11, 20, 10),
        DEFAULT_POLICY,
        debt,
    )
    state, usage = d.state, {}
    if Reason.OVER_QUOTA in held:
        usage = {date(2026, 12, 1): 1000}
    state = evaluate(state, usage, sh(12, 8, 9)).state
    for reason, kind in (
        (Reason.MANUAL, "suspend_requested"),
        (Reason.VIOLATION, "violation_reported"),
    ):
        if reason in held:
            state = apply_event(state, event(f"card.{kind}"), usage, sh(12, 9, 12)).state
    now = sh(12, 10, 9)
    state = evaluate(state, usage, now).state
    assert state.reasons == held, (state.reasons, held)
    return state, usage, now


CASES = [()] + [(r,) for r in REASONS] + list(itertools.combinations(REASONS, 2))


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("reasons", CASES, ids=lambda rs: "+".join(rs) or "active")
def test_explain_reads_as_the_golden_file(reasons: tuple[Reason, ...], lang: str) -> None:
    state, usage, now = card_with(reasons)
    body = render(explain(state, usage, now, DEFAULT_POLICY), lang, "Asia/Shanghai")
    name = ("+".join(reasons) or "active") + f".{lang}.json"
    text = json.dumps(body, ensure_ascii=False, indent=2) + "\n"
    path = GOLDEN / name
    if os.environ.get("SIMWATCH_UPDATE_GOLDEN") or not path.exists():
        GOLDEN.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text


def test_a_cancelled_card_has_nothing_to_lift() -> None:
    state, usage, _ = card_with((Reason.EXPIRED,))
    later = evaluate(state, usage, sh(12, 10) + timedelta(days=120))
    assert later.state.cancelled
    body = render(
        explain(later.state, usage, sh(12, 10) + timedelta(days=120), DEFAULT_POLICY), "en", "UTC"
    )
    assert body["state"] == "cancelled"
    assert {r["lifts"]["how"] for r in body["reasons"]} == {Lifts.NONE}


# --- what explain says lifts a reason does ---------------------------------------------


def _recharge(amount: int) -> Callable[[CardState, dict[date, int], datetime], CardState]:
    def act(state: CardState, usage: dict[date, int], now: datetime) -> CardState:
        if amount > 0:
            state = apply_event(state, event("card.recharged", amount=amount), usage, now).state
        return state

    return act


def _lifted(e: Explanation, state: CardState, usage: dict[date, int], now: datetime) -> None:
    """Do what each reason's `lifts` says; it must go. Do a little less; it must stay."""
    for held in e.reasons:
        lift, reason = held.lifts, held.reason
        if lift.how in (Lifts.RECHARGE, Lifts.PAY_DEBT):
            assert lift.amount is not None and lift.amount > 0
            then = lift.then_resume
            enough = _with_resume(_recharge(lift.amount), then)(state, usage, now)
            short = _with_resume(_recharge(lift.amount - 1), then)(state, usage, now)
            assert reason not in enough.reasons and reason in short.reasons
        elif lift.how == Lifts.NEXT_CYCLE:
            assert lift.at is not None
            at = evaluate(state, usage, lift.at).state  # the new cycle's counter is empty
            before = evaluate(state, usage, lift.at - timedelta(seconds=1)).state
            if at.cancelled:
                # Cancelled before the next cycle (an expired card's grace or a postpaid
                # card's arrears ran out; explain's `next` lists it): nothing lifts then, and
                # only those two reasons lead there.
                assert {Reason.EXPIRED, Reason.ARREARS} & (before.reasons | at.reasons)
                continue
            assert reason not in at.reasons and reason in before.reasons
        elif lift.how == Lifts.RENEW:
            assert lift.deadline is not None
            renewal = event(
                "card.renewed", expires_at=(lift.deadline + timedelta(days=365)).isoformat()
            )
            just_in_time = lift.deadline - timedelta(seconds=1)
            assert reason not in apply_event(state, renewal, usage, just_in_time).state.reasons
            too_late = apply_event(state, renewal, usage, lift.deadline)
            assert too_late.state.cancelled or reason in too_late.state.reasons
        elif lift.how == Lifts.CUSTOMER_RESUME:
            resumed = apply_event(state, event("card.resume_requested"), usage, now).state
            assert reason not in resumed.reasons
        elif lift.how == Lifts.VIOLATION_CLEARED:
            cleared = apply_event(state, event("card.violation_cleared"), usage, now).state
            assert reason not in cleared.reasons


def _with_resume(
    act: Callable[[CardState, dict[date, int], datetime], CardState], resume: bool
) -> Callable[[CardState, dict[date, int], datetime], CardState]:
    def both(state: CardState, usage: dict[date, int], now: datetime) -> CardState:
        state = act(state, usage, now)
        if resume:
            state = apply_event(state, event("card.resume_requested"), usage, now).state
        return state

    return both


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_doing_what_explain_says_lifts_the_reason_and_a_little_less_does_not(
    scenario: Scenario,
) -> None:
    _, state, usage = production.simulate(scenario)
    if state.cancelled or not state.reasons or state.profile is None:
        return
    _lifted(explain(state, usage, scenario.until, DEFAULT_POLICY), state, usage, scenario.until)


def test_a_blacklisted_card_whose_balance_covers_its_arrears_needs_only_a_resume() -> None:
    """Found by the property above: a prepaid card expired, in arrears (owes 200, balance
    300) and held for its customer's old debt of 300. Explain said "recharge 300, then
    resume" for the arrears, but a recharge pays the held debt first and the arrears need
    no money at all: the customer's resume lifts them (the debt stays held)."""
    at, minute = datetime(2026, 1, 1, tzinfo=UTC), timedelta(minutes=1)

    def card(n: int) -> Input:
        expires = (at + minute).isoformat()
        doc = upsert(None, auto_suspend=False, warn=(), balance=300, expires_at=expires)
        plan = doc.plan.model_copy(update={"monthly_fee": 0})  # type: ignore[union-attr]
        changes = {"plan": plan, "event_id": f"e{n}", "occurred_at": at + n * minute}
        return Input(at + n * minute, doc.model_copy(update=changes))

    inputs = [card(0)]
    inputs += [Input(at + i * minute, Usage(f"r{i}", at + i * minute, 0)) for i in range(1, 8)]
    inputs += [card(8)]
    until = datetime(2026, 1, 31, 16, tzinfo=UTC)
    inputs += [Input(until, Usage("r8", until, 0))]
    _, state, usage = production.simulate(
        Scenario(upsert().iccid, tuple(inputs), until, Policy(), customer_debt=300)
    )
    assert state.reasons == {Reason.ARREARS, Reason.EXPIRED, Reason.BLACKLISTED}
    assert state.balance >= state.owed > 0
    e = explain(state, usage, until, DEFAULT_POLICY)
    (arrears,) = [h for h in e.reasons if h.reason is Reason.ARREARS]
    assert arrears.lifts.how == Lifts.CUSTOMER_RESUME
    _lifted(e, state, usage, until)
