"""Properties of the lifecycle under any order, duplication and re-evaluation of inputs.

`FakeCounter` mirrors what ``ingest.lua`` promises (count a record id once; ask for an
evaluation when usage reaches the wake level); the Redis tests prove the script keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from simwatch_contracts import CommandType, Reason
from usage_monitor.domain.card import CardState, CardStatus
from usage_monitor.domain.lifecycle import NEVER, Decision, apply_event, evaluate

from .factories import CYCLE, NOW, blank, event, upsert


@dataclass
class FakeCounter:
    state: CardState = field(default_factory=blank)
    seen: set[str] = field(default_factory=set)
    used: int = 0
    wake: int | None = None
    decisions: list[Decision] = field(default_factory=list)

    def record(self, record_id: str, nbytes: int) -> None:
        if record_id not in self.seen:
            self.seen.add(record_id)
            self.used += nbytes
        if self.wake is None or (self.wake != NEVER and self.used >= self.wake):
            self.settle()

    def settle(self) -> None:
        self.commit(evaluate(self.state, {CYCLE: self.used}, NOW))

    def commit(self, d: Decision) -> None:
        self.state = d.state
        self.wake = d.wakes.get(CYCLE, self.wake)
        self.decisions.append(d)

    @property
    def alerts(self) -> list[tuple[str, int | None]]:
        return [(a.type.value, a.percent) for d in self.decisions for a in d.alerts]

    @property
    def commands(self) -> list[tuple[CommandType, Reason]]:
        return [(c.type, c.trigger) for d in self.decisions for c in d.commands]


records = st.lists(
    st.tuples(st.integers(0, 40).map(lambda i: f"r{i}"), st.integers(0, 400)), max_size=80
)


def distinct_sum(stream: list[tuple[str, int]]) -> int:
    first: dict[str, int] = {}
    for rid, n in stream:
        first.setdefault(rid, n)
    return sum(first.values())


@settings(max_examples=300)
@given(
    records,
    st.integers(0, 5000),
    st.lists(st.integers(1, 100), max_size=4, unique=True),
    st.booleans(),
    st.data(),
)
def test_any_order_and_duplication_counts_once_and_alerts_once(
    stream: list[tuple[str, int]], quota: int, warn: list[int], auto: bool, data: st.DataObject
) -> None:
    # Redelivery: the same record id always carries the same bytes; duplicates and reordering.
    bytes_of = dict(reversed(stream))
    stream = [(rid, bytes_of[rid]) for rid, _ in stream]
    delivered = data.draw(
        st.permutations(
            stream + data.draw(st.lists(st.sampled_from(stream)) if stream else st.just([]))
        )
    )
    card = FakeCounter()
    card.commit(
        apply_event(card.state, upsert(quota, auto_suspend=auto, warn=tuple(warn)), {CYCLE: 0}, NOW)
    )
    for rid, n in delivered:
        card.record(rid, n)
        if data.draw(st.booleans()):
            card.settle()  # a spurious re-evaluation (crash recovery, conflict) is harmless

    total = distinct_sum(stream)
    assert card.used == total
    # Levels are announced on usage (never at 0 bytes); 100 % only as quota_exhausted.
    reached = total > 0
    expected = [
        ("usage_threshold", p)
        for p in sorted(warn)
        if p < 100 and reached and total * 100 >= quota * p
    ]
    if reached and total >= quota:
        expected.append(("quota_exhausted", 100))
    fired = [a for a in card.alerts if a[0] in {"usage_threshold", "quota_exhausted"}]
    assert sorted(fired, key=str) == sorted(expected, key=str)
    suspends = [c for c in card.commands if c[0] is CommandType.SUSPEND]
    assert suspends == (
        [(CommandType.SUSPEND, Reason.OVER_QUOTA)] if auto and total >= quota else []
    )


ACTIONS = st.sampled_from(
    [
        "suspend_requested",
        "resume_requested",
        "violation_reported",
        "violation_cleared",
        "usage",
        "upsert_small",
        "upsert_big",
        "next_month",
    ]
)


@settings(max_examples=300)
@given(st.lists(ACTIONS, max_size=40), st.lists(st.integers(0, 600), min_size=40, max_size=40))
def test_commands_alternate_and_state_follows_reasons(
    actions: list[str], amounts: list[int]
) -> None:
    now = NOW
    used: dict[date, int] = {}
    d = apply_event(blank(), upsert(1000), used, now)
    state = d.state
    suspended = False
    ids: set[str] = set()
    for action, amount in zip(actions, amounts, strict=False):
        cycle = state.cycle or CYCLE
        if action == "usage":
            used[cycle] = used.get(cycle, 0) + amount
            d = evaluate(state, used, now)
        elif action == "next_month":
            now += timedelta(days=31)
            d = evaluate(state, used, now)
        elif action.startswith("upsert"):
            d = apply_event(state, upsert(500 if action == "upsert_small" else 5000), used, now)
        else:
            d = apply_event(state, event(f"card.{action}"), used, now)
        for cmd in d.commands:
            assert cmd.command_id not in ids
            ids.add(cmd.command_id)
            assert cmd.type is (CommandType.RESUME if suspended else CommandType.SUSPEND)
            suspended = not suspended
            assert set(cmd.reasons) == d.state.reasons
        state = d.state
        assert (state.status is CardStatus.SUSPENDED) == bool(state.reasons) == suspended
        # Settling again right away changes nothing: evaluation is idempotent.
        assert evaluate(state, used, now).changed is False


CLOCK_ACTIONS = st.sampled_from(
    [
        "tick_hour",
        "tick_day",
        "tick_month",
        "suspend_requested",
        "resume_requested",
        "violation_reported",
        "violation_cleared",
        "recharge",
        "renew",
        "usage",
    ]
)


def _drive(
    actions: list[str], billing: str, balance: int, expires_days: int
) -> tuple[list[Decision], CardState]:
    now = NOW
    expires = (NOW + timedelta(days=expires_days)).isoformat()
    usage: dict[date, int] = {}
    d = apply_event(
        blank(), upsert(1000, billing=billing, balance=balance, expires_at=expires), usage, now
    )
    out = [d]
    for action in actions:
        cycle = d.state.cycle or CYCLE
        if action.startswith("tick"):
            now += {
                "tick_hour": timedelta(hours=1),
                "tick_day": timedelta(days=1),
                "tick_month": timedelta(days=31),
            }[action]
            d = evaluate(d.state, usage, now)
        elif action == "usage":
            usage[cycle] = usage.get(cycle, 0) + 400
            d = evaluate(d.state, usage, now)
        elif action == "recharge":
            d = apply_event(d.state, event("card.recharged", amount=300), usage, now)
        elif action == "renew":
            later = (now + timedelta(days=40)).isoformat()
            d = apply_event(d.state, event("card.renewed", expires_at=later), usage, now)
        else:
            d = apply_event(d.state, event(f"card.{action}"), usage, now)
        out.append(d)
        assert evaluate(d.state, usage, now).changed is False, "re-evaluation decided again"
    return out, d.state


@settings(max_examples=300, deadline=None)
@given(
    st.lists(CLOCK_ACTIONS, max_size=40),
    st.sampled_from(["prepaid", "postpaid"]),
    st.integers(0, 400),
    st.integers(-120, 120),
)
def test_every_transition_fires_once_and_state_follows_reasons(
    actions: list[str], billing: str, balance: int, expires_days: int
) -> None:
    decisions, final = _drive(actions, billing, balance, expires_days)
    suspended, cancelled = False, False
    ids: set[str] = set()
    for d in decisions:
        for cmd in d.commands:
            assert not cancelled, "nothing after cancel"
            assert cmd.command_id not in ids
            ids.add(cmd.command_id)
            if cmd.type is CommandType.CANCEL:
                cancelled = True
                continue
            assert cmd.type is (CommandType.RESUME if suspended else CommandType.SUSPEND)
            suspended = not suspended
        alert_ids = [a.alert_id for a in d.alerts]
        assert len(alert_ids) == len(set(alert_ids))
        s = d.state
        if not s.cancelled:
            assert (s.status is CardStatus.SUSPENDED) == bool(s.reasons) == suspended
    assert final.cancelled == cancelled


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 200),
    st.sampled_from(["prepaid", "postpaid"]),
    st.integers(0, 400),
    st.integers(-100, 100),
)
def test_many_small_ticks_decide_what_one_jump_decides(
    days: int, billing: str, balance: int, expires_days: int
) -> None:
    small, _ = _drive(["tick_day"] * days, billing, balance, expires_days)
    expires = (NOW + timedelta(days=expires_days)).isoformat()
    start = apply_event(
        blank(), upsert(1000, billing=billing, balance=balance, expires_at=expires), {}, NOW
    )
    jump = evaluate(start.state, {}, NOW + timedelta(days=days))

    def commands(ds: list[Decision]) -> list[str]:
        return [c.command_id for d in ds for c in d.commands]

    assert commands(small) == commands([start, jump])
    assert small[-1].state.balance == jump.state.balance
    assert small[-1].state.reasons == jump.state.reasons
