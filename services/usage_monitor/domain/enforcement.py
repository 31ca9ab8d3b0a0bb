"""Closing the loop with the network: a card's latest command is tracked until the network
confirms it (`card.command_results`), published again when no result comes, marked
unconfirmed when none ever does, and the network's own view of the card
(`card.network_observed`, a result's `network_state`) is compared with ours.

Only the latest command of a card is tracked: a newer decision supersedes the one before
(a resume after a suspend), and a result for a superseded command is recorded, never acted
on. Every rule here is level-triggered like the lifecycle's: a result or an observation
applied twice, or out of order, changes nothing the second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from simwatch_contracts import (
    CardCommand,
    CommandResult,
    CommandType,
    NetworkState,
    Reason,
    ResultStatus,
)
from simwatch_contracts.ids import stable_id

from .card import CardState, CardStatus
from .copying import replace
from .policy import Policy

FAILED_BACKOFF_S = 10
"""After a `failed` result the next attempt waits this long, doubling per attempt (capped
by the ack timeout): the adapter said it is over, so there is no point in waiting longer."""
KNOWN_LOOKBACK = 64
"""How many of a card's past transitions a result's command id is looked up among."""
TRIGGERS = tuple(Reason)


class AckStatus(StrEnum):
    PENDING = "pending"
    """Published, no final result yet: published again at `retry_at`."""
    UNCONFIRMED = "unconfirmed"
    """Every attempt went unanswered (or failed): an operator must look."""
    REJECTED = "rejected"
    """The network refused it for good: not repeated; an operator must look."""


@dataclass(frozen=True, slots=True)
class Pending:
    """The card's latest command while the network has not confirmed it."""

    command: CardCommand
    """As first published (attempt 1); a re-publication changes only `attempt`."""
    attempt: int
    sent: int
    """When the latest attempt was published (POSIX seconds)."""
    retry_at: int | None
    """When it is published again (POSIX seconds); None: not again."""
    origin_ms: int
    """When the input that caused the command arrived (POSIX milliseconds): enforcement
    latency runs from here to the network's `applied`."""
    status: AckStatus = AckStatus.PENDING
    detail: str = ""
    """The network's last word on it (a failure's or a rejection's detail)."""

    def republished(self) -> CardCommand:
        return self.command.model_copy(update={"attempt": self.attempt})


class Outcome(StrEnum):
    """What a result did (a metric label, and the card's history)."""

    CONFIRMED = "confirmed"
    RETRY = "retry"
    REJECTED = "rejected"
    UNCONFIRMED = "unconfirmed"
    SUPERSEDED = "superseded"
    STALE = "stale"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Note:
    """Something the loop did that is not a new decision: for the card's history and the
    metrics. `kind`: retry, unconfirmed, result."""

    kind: str
    at: datetime
    command_id: str
    type: CommandType | None = None
    """The command's type when it is the tracked one (unknown for an older command's)."""
    attempt: int = 1
    status: ResultStatus | None = None
    network_state: NetworkState | None = None
    outcome: Outcome | None = None
    latency_s: float | None = None


def tracking(policy: Policy) -> bool:
    return policy.ack_timeout_s > 0


def wait_s(policy: Policy, attempt: int) -> int:
    """How long attempt `attempt` is given before the next: the timeout, doubling."""
    return int(min(policy.ack_backoff_max_s, policy.ack_timeout_s * 2 ** (attempt - 1)))


def issued(command: CardCommand, now: datetime, origin: datetime, policy: Policy) -> Pending:
    """A new command becomes the card's tracked one (superseding any before it)."""
    sent = int(now.timestamp())
    return Pending(
        command=command,
        attempt=1,
        sent=sent,
        retry_at=sent + wait_s(policy, 1),
        origin_ms=int(origin.timestamp() * 1000),
    )


def due(state: CardState) -> int | None:
    """When the tracked command needs the clock (POSIX seconds), if it does."""
    p = state.pending
    return p.retry_at if p is not None and p.status is AckStatus.PENDING else None


def retry(state: CardState, now: datetime, policy: Policy) -> tuple[CardState, Note | None]:
    """Publish the tracked command again if its time has come, or give up on it (never
    with tracking turned off: commands tracked before wait for their results)."""
    p = state.pending
    if not tracking(policy):
        return state, None
    ts = int(now.timestamp())
    if p is None or p.status is not AckStatus.PENDING or p.retry_at is None or p.retry_at > ts:
        return state, None
    if p.attempt >= policy.ack_max_attempts:
        q = replace(p, status=AckStatus.UNCONFIRMED, retry_at=None)
        return replace(state, pending=q), _note("unconfirmed", now, p)
    attempt = p.attempt + 1
    q = replace(p, attempt=attempt, sent=ts, retry_at=ts + wait_s(policy, attempt))
    return replace(state, pending=q), _note("retry", now, q)


def desired(state: CardState) -> NetworkState:
    """The network state simwatch holds for the card."""
    match state.status:
        case CardStatus.CANCELLED:
            return NetworkState.CANCELLED
        case CardStatus.SUSPENDED:
            return NetworkState.SUSPENDED
        case _:
            return NetworkState.ACTIVE


def known_command(state: CardState, command_id: str) -> bool:
    """Whether `command_id` is one of this card's commands: ids are derived from the card's
    transition count, so the recent ones can be recomputed rather than stored."""
    if state.pending is not None and state.pending.command.command_id == command_id:
        return True
    low = max(1, state.transitions - KNOWN_LOOKBACK + 1)
    for seq in range(state.transitions, low - 1, -1):
        for kind in CommandType:
            for trigger in TRIGGERS:
                if stable_id("cmd", state.iccid, seq, kind.value, trigger.value) == command_id:
                    return True
    return False


def on_result(
    state: CardState, result: CommandResult, now: datetime, policy: Policy
) -> tuple[CardState, Note]:
    """Apply the network's answer to a command. Only the tracked command's results act;
    any other known command's is recorded (superseded or already settled)."""
    p = state.pending
    tracked = p is not None and p.command.command_id == result.command_id
    note = Note(
        "result",
        now,
        result.command_id,
        p.command.type if tracked and p is not None else None,
        p.attempt if tracked and p is not None else 0,
        result.status,
        result.network_state,
    )
    if p is None or p.command.command_id != result.command_id:
        if not known_command(state, result.command_id):
            return state, replace(note, outcome=Outcome.UNKNOWN)
        return state, replace(note, outcome=Outcome.SUPERSEDED if p else Outcome.STALE)
    at = int(result.at.timestamp())
    if p.status is not AckStatus.PENDING and result.status is not ResultStatus.APPLIED:
        return state, replace(note, outcome=Outcome.STALE)  # already settled; nothing to do
    match result.status:
        case ResultStatus.APPLIED:
            latency = max(0.0, now.timestamp() - p.origin_ms / 1000)
            return replace(state, pending=None), replace(
                note, outcome=Outcome.CONFIRMED, latency_s=latency
            )
        case ResultStatus.REJECTED:
            q = replace(p, status=AckStatus.REJECTED, retry_at=None, detail=result.detail or "")
            return replace(state, pending=q), replace(note, outcome=Outcome.REJECTED)
        case _:  # failed: the attempt is over, the next comes soon (not for an older attempt)
            if at < p.sent:
                return state, replace(note, outcome=Outcome.STALE)
            detail = result.detail or ""
            if p.attempt >= policy.ack_max_attempts:
                q = replace(p, status=AckStatus.UNCONFIRMED, retry_at=None, detail=detail)
                return replace(state, pending=q), replace(note, outcome=Outcome.UNCONFIRMED)
            soon = int(now.timestamp()) + min(
                wait_s(policy, p.attempt), int(FAILED_BACKOFF_S * 2 ** (p.attempt - 1))
            )
            retry_at = soon if p.retry_at is None else min(p.retry_at, soon)
            q = replace(p, retry_at=retry_at, detail=detail)
            return replace(state, pending=q), replace(note, outcome=Outcome.RETRY)


def needs_correction(state: CardState, observed: NetworkState) -> CommandType | None:
    """The command that brings a network seen in `observed` to what simwatch holds, if one
    is needed and may be sent: not while the tracked command is still on its way (it will
    make the difference good), not after a rejection (an operator must look first), and
    never to un-cancel (cancellation is final; the network is ahead of us: see `diverged`)."""
    want = desired(state)
    if observed in (NetworkState.UNKNOWN, want) or state.profile is None:
        return None
    p = state.pending
    if p is not None and p.status in (AckStatus.PENDING, AckStatus.REJECTED):
        return None
    if observed is NetworkState.CANCELLED:
        return None
    return {
        NetworkState.CANCELLED: CommandType.CANCEL,
        NetworkState.SUSPENDED: CommandType.SUSPEND,
        NetworkState.ACTIVE: CommandType.RESUME,
    }[want]


def diverged(state: CardState, observed: NetworkState) -> bool:
    """The network cancelled a card simwatch still holds: nothing simwatch may send fixes it."""
    return observed is NetworkState.CANCELLED and not state.cancelled and state.profile is not None


def _note(kind: str, at: datetime, p: Pending) -> Note:
    return Note(kind, at, p.command.command_id, p.command.type, p.attempt)
