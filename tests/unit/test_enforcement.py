"""The loop with the network (issue #18): commands tracked until confirmed, published again
without a result, given up on, results applied once whatever their order, and the network's
own view corrected."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from simwatch_contracts import (
    CommandResult,
    CommandType,
    NetworkState,
    Reason,
    ResultStatus,
)
from usage_monitor.domain.card import CardState
from usage_monitor.domain.enforcement import AckStatus, Outcome
from usage_monitor.domain.lifecycle import UNKNOWN_COMMAND, apply_event, apply_result, evaluate
from usage_monitor.domain.policy import Policy

from .factories import CYCLE, ICCID, NOW, blank, event, upsert

POLICY = Policy()  # 300 s, 5 attempts, waits doubling up to an hour


def suspended(used: int = 1000) -> tuple[CardState, dict[date, int]]:
    """A card just suspended over quota at NOW, its suspend tracked."""
    state = apply_event(blank(), upsert(1000), {}, NOW).state
    usage = {CYCLE: used}
    d = evaluate(state, usage, NOW, origin=NOW - timedelta(seconds=2))
    assert [c.type for c in d.commands] == [CommandType.SUSPEND]
    return d.state, usage


def result(
    command_id: str,
    status: str = "applied",
    network: str = "suspended",
    at: datetime = NOW,
    iccid: str = ICCID,
) -> CommandResult:
    return CommandResult(
        command_id=command_id,
        iccid=iccid,
        status=ResultStatus(status),
        network_state=NetworkState(network),
        at=at,
    )


def test_a_command_is_tracked_until_confirmed() -> None:
    state, usage = suspended()
    p = state.pending
    assert p is not None and p.status is AckStatus.PENDING and p.attempt == 1
    assert p.retry_at == int(NOW.timestamp()) + 300
    d = apply_result(state, result(p.command.command_id), usage, NOW + timedelta(seconds=8))
    assert d.state.pending is None
    (note,) = d.notes
    assert note.outcome is Outcome.CONFIRMED
    assert note.latency_s == 10.0  # from the arrival of the batch that crossed the quota


def test_without_a_result_the_same_command_is_published_again_with_backoff() -> None:
    state, usage = suspended()
    first = state.pending
    assert first is not None
    at, waits = NOW, []
    for attempt in range(2, POLICY.ack_max_attempts + 1):
        due = evaluate(state, usage, at).due
        assert due is not None
        waits.append(int((due - at).total_seconds()))
        at = due
        d = evaluate(state, usage, at)
        (again,) = d.resent
        assert again.command_id == first.command.command_id
        assert again.attempt == attempt
        assert again.model_copy(update={"attempt": 1}) == first.command
        assert not d.commands and not d.alerts  # not a new decision
        state = d.state
    assert waits == [300, 600, 1200, 2400]
    # The last attempt's wait passes without a result: unconfirmed, never published again.
    due = evaluate(state, usage, at).due
    assert due is not None
    d = evaluate(state, usage, due)
    assert not d.resent and d.state.pending is not None
    assert d.state.pending.status is AckStatus.UNCONFIRMED
    assert [n.kind for n in d.notes] == ["unconfirmed"]
    assert evaluate(d.state, usage, due + timedelta(days=3)).resent == ()


def test_failed_is_retried_soon_and_a_failure_of_an_older_attempt_is_ignored() -> None:
    state, usage = suspended()
    p = state.pending
    assert p is not None
    later = NOW + timedelta(seconds=5)
    d = apply_result(state, result(p.command.command_id, "failed", "active", later), usage, later)
    assert d.notes[0].outcome is Outcome.RETRY
    assert d.state.pending is not None and d.state.pending.retry_at == int(later.timestamp()) + 10
    retried = evaluate(d.state, usage, later + timedelta(seconds=10))
    assert [c.attempt for c in retried.resent] == [2]
    # The attempt-1 failure delivered again after attempt 2 went out: nothing changes.
    stale = apply_result(
        retried.state, result(p.command.command_id, "failed", "active", later), usage, later
    )
    assert stale.notes[0].outcome is Outcome.STALE
    assert stale.state == retried.state


def test_rejected_is_never_repeated() -> None:
    state, usage = suspended()
    p = state.pending
    assert p is not None
    d = apply_result(state, result(p.command.command_id, "rejected", "active"), usage, NOW)
    assert d.state.pending is not None and d.state.pending.status is AckStatus.REJECTED
    assert evaluate(d.state, usage, NOW + timedelta(days=2)).resent == ()
    # And no observation re-sends it either: an operator must look first.
    obs = event("card.network_observed", network_state="active")
    assert apply_event(d.state, obs, usage, NOW + timedelta(hours=1)).commands == ()


def test_a_superseded_commands_result_is_recorded_never_acted_on() -> None:
    state, usage = suspended()
    old = state.pending
    assert old is not None
    resumed = apply_event(state, upsert(5000), usage, NOW + timedelta(minutes=1))
    assert [c.type for c in resumed.commands] == [CommandType.RESUME]
    new = resumed.state.pending
    assert new is not None and new.command.command_id != old.command.command_id
    later = NOW + timedelta(minutes=2)
    d = apply_result(resumed.state, result(old.command.command_id), usage, later)
    assert d.notes[0].outcome is Outcome.SUPERSEDED
    assert d.state == resumed.state and not d.commands  # no reconcile either


def test_results_twice_or_out_of_order_change_nothing() -> None:
    state, usage = suspended()
    p = state.pending
    assert p is not None
    cid = p.command.command_id
    applied = apply_result(state, result(cid), usage, NOW)
    again = apply_result(applied.state, result(cid), usage, NOW)
    assert again.state == applied.state and again.notes[0].outcome is Outcome.STALE
    late_failure = apply_result(applied.state, result(cid, "failed", "active"), usage, NOW)
    assert late_failure.state == applied.state and not late_failure.commands


def test_a_result_for_a_command_the_card_never_had_is_refused() -> None:
    state, usage = suspended()
    d = apply_result(state, result("cmd-not-ours"), usage, NOW)
    assert d.rejected == UNKNOWN_COMMAND
    assert d.notes[0].outcome is Outcome.UNKNOWN


def test_a_network_that_reactivates_a_suspended_card_is_corrected_once() -> None:
    state, usage = suspended()
    p = state.pending
    assert p is not None
    confirmed = apply_result(state, result(p.command.command_id), usage, NOW).state
    obs = event("card.network_observed", network_state="active")
    d = apply_event(confirmed, obs, usage, NOW + timedelta(hours=1))
    (fix,) = d.commands
    assert (fix.type, fix.trigger) == (CommandType.SUSPEND, Reason.RECONCILE)
    assert fix.reasons == (Reason.OVER_QUOTA,)
    assert not d.alerts  # nothing changed for the customer
    assert d.state.pending is not None and d.state.pending.command == fix
    # The same observation seen again by another worker decides the same id; a second
    # observation while the correction is on its way decides nothing.
    assert apply_event(confirmed, obs, usage, NOW + timedelta(hours=1)).commands == (fix,)
    obs2 = event("card.network_observed", network_state="active")
    assert apply_event(d.state, obs2, usage, NOW + timedelta(hours=1, seconds=5)).commands == ()
    # Once confirmed, an agreeing observation decides nothing.
    ok = apply_result(d.state, result(fix.command_id), usage, NOW + timedelta(hours=1)).state
    obs3 = event("card.network_observed", network_state="suspended")
    assert apply_event(ok, obs3, usage, NOW + timedelta(hours=2)).commands == ()


def test_a_confirmation_showing_another_state_is_corrected() -> None:
    state, usage = suspended()
    p = state.pending
    assert p is not None
    d = apply_result(state, result(p.command.command_id, network="active"), usage, NOW)
    (fix,) = d.commands
    assert (fix.type, fix.trigger) == (CommandType.SUSPEND, Reason.RECONCILE)


def test_a_network_that_cancelled_a_card_we_hold_is_reported_not_corrected() -> None:
    state, usage = suspended()
    p = state.pending
    assert p is not None
    confirmed = apply_result(state, result(p.command.command_id), usage, NOW).state
    obs = event("card.network_observed", network_state="cancelled")
    d = apply_event(confirmed, obs, usage, NOW + timedelta(hours=1))
    assert d.commands == () and d.diverged is NetworkState.CANCELLED


def test_overshoot_is_what_is_counted_after_the_suspension_was_decided() -> None:
    state, _ = suspended(used=1200)
    assert state.overshoot_from == 1200
    later = evaluate(state, {CYCLE: 1900}, NOW + timedelta(minutes=3)).state
    assert later.overshoot_from == 1200
    rolled = evaluate(later, {CYCLE: 1900}, datetime.fromisoformat("2026-12-01T00:00:01+08:00"))
    assert rolled.state.overshoot_from is None


def test_tracking_off_tracks_nothing() -> None:
    state = apply_event(blank(), upsert(1000), {}, NOW).state
    d = evaluate(state, {CYCLE: 1000}, NOW, Policy(ack_timeout_s=0))
    assert d.commands and d.state.pending is None


STATUSES = st.sampled_from(["applied", "failed", "rejected"])
NETWORK = st.sampled_from(["active", "suspended", "unknown"])


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["result", "tick", "usage_up", "bigger_plan", "manual"]),
            st.integers(0, 5),  # which command a result is about (older ones included)
            STATUSES,
            NETWORK,
            st.integers(1, 4000),  # seconds later
        ),
        max_size=30,
    )
)
def test_the_loop_never_resends_a_settled_command_and_results_apply_once(
    steps: list[tuple[str, int, str, str, int]],
) -> None:
    """Random interleavings of results (for the tracked command and older ones, repeated,
    in any order), clock ticks and decisions: a result applied twice changes nothing the
    second time; nothing is re-published once its command is settled or superseded; no
    command goes out more than `ack_max_attempts` times; the tracked command is always
    the latest one decided."""
    state, usage = suspended()
    now = NOW
    issued = [state.pending.command] if state.pending else []
    sent: dict[str, int] = {c.command_id: 1 for c in issued}
    settled: set[str] = set()
    manual = False
    for kind, which, status, network, later in steps:
        now += timedelta(seconds=later)
        if kind == "result" and issued:
            cmd = issued[-1 - which % len(issued)]
            r = result(cmd.command_id, status, network, now)
            d = apply_result(state, r, usage, now)
            twice = apply_result(d.state, r, usage, now)
            assert twice.state == d.state and not twice.commands and not twice.resent
            tracked = state.pending is not None and state.pending.command == cmd
            if not tracked:
                assert d.state == state and not d.commands
            if tracked and status == "applied":
                settled.add(cmd.command_id)
        elif kind == "tick":
            d = evaluate(state, usage, now)
        elif kind == "usage_up":
            usage = {CYCLE: usage[CYCLE] + 100}
            d = evaluate(state, usage, now)
        elif kind == "bigger_plan":
            d = apply_event(state, upsert(10**6 if usage[CYCLE] < 10**6 else 10**9), usage, now)
        else:
            manual = not manual
            name = "card.suspend_requested" if manual else "card.resume_requested"
            d = apply_event(state, event(name), usage, now)
        for c in d.resent:
            assert c.command_id not in settled
            assert issued and c.command_id == issued[-1].command_id
            sent[c.command_id] = max(sent[c.command_id], c.attempt)
            assert c.attempt <= POLICY.ack_max_attempts
        issued += d.commands
        for c in d.commands:
            sent[c.command_id] = 1
        state = d.state
        if state.pending is not None:
            assert state.pending.command == issued[-1]
            assert state.pending.status is not AckStatus.PENDING or state.pending.retry_at
