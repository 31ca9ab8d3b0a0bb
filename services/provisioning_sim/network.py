"""The simulated network's decisions, pure and synchronous: which outcome a command meets, how
it changes the network's view of the card, and what a periodic observation reports."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum

from simwatch_contracts import CardCommand, CommandType, NetworkState, ResultStatus

_AFTER: dict[CommandType, NetworkState] = {
    CommandType.SUSPEND: NetworkState.SUSPENDED,
    CommandType.RESUME: NetworkState.ACTIVE,
    CommandType.CANCEL: NetworkState.CANCELLED,
}


class Outcome(StrEnum):
    APPLY = "apply"
    FAIL = "fail"
    REJECT = "reject"
    DROP = "drop"
    """No result, ever: the command is lost on the way."""


@dataclass(frozen=True, slots=True)
class Rates:
    """Probabilities per handling of a command. `drop`, `fail` and `reject` exclude each other
    (their sum is at most 1; the rest is applied); `duplicate` is drawn apart: the result,
    whatever it is, is published twice."""

    drop: float = 0.0
    fail: float = 0.0
    reject: float = 0.0
    duplicate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("drop", "fail", "reject", "duplicate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} rate must be within [0, 1], got {value}")
        if self.drop + self.fail + self.reject > 1.0 + 1e-9:
            raise ValueError("drop + fail + reject rates must not exceed 1")


@dataclass(frozen=True, slots=True)
class Draw:
    """What happens to one handling of a command: after `delay_s` seconds, `outcome`; the
    result is published twice when `duplicate`."""

    outcome: Outcome
    duplicate: bool
    delay_s: float


def draw(rng: random.Random, rates: Rates, delay_min_s: float, delay_max_s: float) -> Draw:
    """One random draw (three numbers from `rng`, always, so a seed gives the same sequence)."""
    roll = rng.random()
    twice = rng.random() < rates.duplicate
    delay = rng.uniform(delay_min_s, delay_max_s)
    if roll < rates.drop:
        outcome = Outcome.DROP
    elif roll < rates.drop + rates.fail:
        outcome = Outcome.FAIL
    elif roll < rates.drop + rates.fail + rates.reject:
        outcome = Outcome.REJECT
    else:
        outcome = Outcome.APPLY
    return Draw(outcome, twice and outcome is not Outcome.DROP, delay)


@dataclass(frozen=True, slots=True)
class Answer:
    """The network's answer to one command (a `card.command_results` message without `at`)."""

    status: ResultStatus
    network_state: NetworkState
    detail: str
    changed: bool = False


@dataclass(frozen=True, slots=True)
class Observation:
    iccid: str
    network_state: NetworkState
    drifted: bool


@dataclass
class NetworkView:
    """The network's own state per ICCID (a card it never heard of is active), and the command
    ids it has applied (a re-published command is answered again, never applied twice)."""

    states: dict[str, NetworkState] = field(default_factory=dict)
    applied_ids: set[str] = field(default_factory=set)
    _cursor: int = 0

    def state(self, iccid: str) -> NetworkState:
        return self.states.get(iccid, NetworkState.ACTIVE)

    def answer(self, command: CardCommand, outcome: Outcome) -> Answer | None:
        """Apply `outcome` to `command`; None for a drop. Only `APPLY` changes the view."""
        current = self.state(command.iccid)
        if outcome is Outcome.DROP:
            return None
        if outcome is Outcome.FAIL:
            return Answer(ResultStatus.FAILED, current, "HLR timeout (simulated); try again")
        if outcome is Outcome.REJECT:
            return Answer(
                ResultStatus.REJECTED,
                current,
                "CMP rejected: subscriber profile locked (simulated)",
            )
        return self._apply(command, current)

    def _apply(self, command: CardCommand, current: NetworkState) -> Answer:
        if command.command_id in self.applied_ids:
            return Answer(ResultStatus.APPLIED, current, "HLR ok: already applied, no change")
        self.applied_ids.add(command.command_id)
        self.states.setdefault(command.iccid, current)
        if current is NetworkState.CANCELLED:
            return Answer(ResultStatus.APPLIED, current, "HLR ok: card is cancelled, no change")
        after = _AFTER[command.type]
        if after is current:
            return Answer(ResultStatus.APPLIED, current, f"HLR ok: already {after}")
        self.states[command.iccid] = after
        return Answer(ResultStatus.APPLIED, after, f"HLR ok: {after}", changed=True)

    def observe(self, rng: random.Random, drift_rate: float, limit: int) -> list[Observation]:
        """Up to `limit` cards, round-robin over the known ones (in the order first seen), so
        every card is observed within ceil(cards / limit) rounds. A suspended card flips back
        to active first with probability `drift_rate` (the network re-activated it)."""
        iccids = list(self.states)
        if not iccids or limit <= 0:
            return []
        start = self._cursor % len(iccids)
        chosen = (iccids[start:] + iccids[:start])[:limit]
        self._cursor = start + len(chosen)
        out = []
        for iccid in chosen:
            state = self.states[iccid]
            drifted = state is NetworkState.SUSPENDED and rng.random() < drift_rate
            if drifted:
                state = self.states[iccid] = NetworkState.ACTIVE
            out.append(Observation(iccid, state, drifted))
        return out
