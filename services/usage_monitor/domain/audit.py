"""The audit trail: every decision as a `card.decisions` record with the facts it was made
on, and a replay of one card's inputs through the same rules.

Ids are those of what was published (command_id, alert_id) or, for a charge, named by what
it pays for, so a replay names every decision exactly as the live service did.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from simwatch_contracts import (
    CardDecision,
    CardEvent,
    CommandResult,
    DecisionFacts,
    DecisionKind,
    UsageRecord,
)
from simwatch_contracts.ids import stable_id

from .card import CardState, ordered
from .cycles import cycle_of
from .draft import Decision
from .lifecycle import apply_event, apply_result, evaluate
from .policy import Policy

MAX_TICKS = 100_000


def decisions_of(
    d: Decision, usage: Mapping[date, int], event_id: str | None = None
) -> list[CardDecision]:
    """The audit records of one decision (commands, alerts, charges), in that order."""
    s = d.state
    facts = _facts(s, usage, event_id)
    out = [
        CardDecision(
            decision_id=stable_id("dec", c.command_id),
            iccid=c.iccid,
            at=c.issued_at,
            kind=DecisionKind.COMMAND,
            type=c.type.value,
            ref=c.command_id,
            trigger=c.trigger,
            reasons=c.reasons,
            facts=facts,
        )
        for c in d.commands
    ]
    out += [
        CardDecision(
            decision_id=stable_id("dec", a.alert_id),
            iccid=a.iccid,
            at=a.occurred_at,
            kind=DecisionKind.ALERT,
            type=a.type.value,
            ref=a.alert_id,
            trigger=a.trigger,
            reasons=a.reasons or (),
            facts=facts,
        )
        for a in d.alerts
    ]
    out += [
        CardDecision(
            decision_id=stable_id("dec", s.iccid, c.kind, c.ref, int(c.at.timestamp())),
            iccid=s.iccid,
            at=c.at,
            kind=DecisionKind.CHARGE,
            type=c.kind,
            ref=c.ref,
            reasons=ordered(s.reasons),
            amount=c.amount,
            facts=facts,
        )
        for c in d.charges
    ]
    return out


def _facts(s: CardState, usage: Mapping[date, int], event_id: str | None) -> DecisionFacts:
    p = s.profile
    return DecisionFacts(
        used_bytes=usage.get(s.cycle, 0) if s.cycle else None,
        quota_bytes=p.plan.quota_bytes if p else None,
        balance=s.balance,
        fee=p.plan.monthly_fee if p else None,
        expires_at=p.expires_at if p else None,
        cycle=s.cycle.isoformat() if s.cycle else None,
        event_id=event_id,
    )


@dataclass(slots=True)
class Replay:
    """One card's inputs through the rules, with the clock of when each input arrived and
    the lifecycle clock woken exactly when the card was next due."""

    state: CardState
    policy: Policy
    usage: dict[date, int]
    seen: set[str]
    due: datetime | None = None

    @classmethod
    def start(cls, iccid: str, policy: Policy) -> Replay:
        return cls(CardState(iccid), policy, {}, set())

    def feed(
        self, at: datetime, item: CardEvent | UsageRecord | CommandResult
    ) -> list[CardDecision]:
        """Everything due before `at`, then the input (a redelivered record counts once).
        The network's results take part: whether a command was still on its way decides
        whether an observation of the network is corrected."""
        out = self.until(at)
        if isinstance(item, CommandResult):
            return out + self._take(apply_result(self.state, item, self.usage, at, self.policy))
        if isinstance(item, UsageRecord):
            if item.record_id in self.seen:
                return out
            self.seen.add(item.record_id)
            p = self.state.profile
            tz = p.timezone if p else self.policy.default_timezone
            day = p.cycle_day if p else self.policy.default_cycle_day
            cycle = cycle_of(item.event_time, tz, day)
            self.usage[cycle] = self.usage.get(cycle, 0) + item.total_bytes
            return out + self._take(evaluate(self.state, self.usage, at, self.policy))
        decided = apply_event(self.state, item, self.usage, at, self.policy)
        return out + self._take(decided, item.event_id)

    def until(self, limit: datetime) -> list[CardDecision]:
        """The lifecycle clock up to `limit`."""
        out: list[CardDecision] = []
        for _ in range(MAX_TICKS):
            if self.due is None or self.due > limit:
                return out
            out += self._take(evaluate(self.state, self.usage, self.due, self.policy))
        raise RuntimeError("the clock does not move forward")

    def _take(self, d: Decision, event_id: str | None = None) -> list[CardDecision]:
        self.state, self.due = d.state, d.due
        return decisions_of(d, self.usage, event_id)


def replay(
    iccid: str,
    inputs: Iterable[tuple[datetime, CardEvent | UsageRecord | CommandResult]],
    until: datetime,
    policy: Policy,
) -> list[CardDecision]:
    """Every decision the rules make for `inputs` (in arrival order) up to `until`."""
    r = Replay.start(iccid, policy)
    out: list[CardDecision] = []
    for at, item in inputs:
        out += r.feed(at, item)
    return out + r.until(until)


@dataclass(frozen=True, slots=True)
class Comparison:
    reproduced: int
    differ: int
    first: tuple[CardDecision | None, CardDecision | None] | None = None
    """The first difference: (what was recorded, what the replay decided); None on a side
    means that side has no such decision."""


def _essence(d: CardDecision) -> tuple[object, ...]:
    """What must match. Not `at`: a usage decision is stamped when the worker processed it,
    the replay stamps it when the record arrived."""
    return (d.kind, d.type, d.ref, d.trigger, tuple(d.reasons), d.amount)


def compare(recorded: Iterable[CardDecision], replayed: Iterable[CardDecision]) -> Comparison:
    """Recorded decisions against a replay's, matched by decision id."""
    mine = {d.decision_id: d for d in replayed}
    theirs = {d.decision_id: d for d in recorded}
    same = differ = 0
    first: tuple[CardDecision | None, CardDecision | None] | None = None
    for did in sorted(set(mine) | set(theirs), key=lambda i: _when(theirs.get(i) or mine[i])):
        a, b = theirs.get(did), mine.get(did)
        if a is not None and b is not None and _essence(a) == _essence(b):
            same += 1
            continue
        differ += 1
        first = first or (a, b)
    return Comparison(same, differ, first)


def _when(d: CardDecision) -> float:
    return d.at.timestamp()
