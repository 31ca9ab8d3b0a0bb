"""A decision being built: the state so far and the messages and charges decided so far,
and the one rule that turns a change of the reason set into a command."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from simwatch_contracts import AlertType, CardAlert, CardCommand, CommandType, NetworkState, Reason

from . import enforcement
from .billing import Charge
from .card import REASON_ORDER, CardState, ordered
from .copying import replace
from .cycles import cycle_of, zone
from .effects import alert, command
from .explain import lift_hints
from .policy import Policy
from .steps import Step, keys_in_play, next_due
from .usage_rules import NEVER, wake_level


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one input. `wakes` maps a cycle to the used-bytes level at which the
    card must be evaluated again (``NEVER`` for none); `due` is when the clock next needs
    the card (None: never); `charges` the fees assessed."""

    state: CardState
    alerts: tuple[CardAlert, ...] = ()
    commands: tuple[CardCommand, ...] = ()
    wakes: Mapping[date, int] = field(default_factory=dict)
    rejected: str | None = None
    due: datetime | None = None
    charges: tuple[Charge, ...] = ()
    resent: tuple[CardCommand, ...] = ()
    """Commands published again (the same id, the next attempt): not new decisions."""
    notes: tuple[enforcement.Note, ...] = ()
    """What the loop with the network did (retries, results, giving up): for the history."""
    diverged: NetworkState | None = None
    """The network's view differs in a way no command may correct (it cancelled the card)."""

    @property
    def changed(self) -> bool:
        return bool(self.alerts or self.commands)


@dataclass(slots=True)
class Draft:
    state: CardState
    policy: Policy
    alerts: list[CardAlert] = field(default_factory=list)
    commands: list[CardCommand] = field(default_factory=list)
    charges: list[Charge] = field(default_factory=list)
    since: frozenset[Reason] | None = None
    """The reasons before an event whose transition is not decided yet: the event and the
    steps it makes due at once are one change (see `clock.advance`)."""
    now: datetime | None = None
    """When the decision is made (its commands are published then, whatever their `at`)."""
    origin: datetime | None = None
    """When the input that caused it arrived (enforcement latency starts there)."""
    resent: list[CardCommand] = field(default_factory=list)
    notes: list[enforcement.Note] = field(default_factory=list)
    diverged: NetworkState | None = None

    def before(self) -> frozenset[Reason]:
        """The reason set a transition compares with (and the pending one is used up)."""
        since, self.since = self.since, None
        return self.state.reasons if since is None else since

    def transition(self, before: frozenset[Reason], at: datetime) -> None:
        """`suspend` when the reason set becomes non-empty, `resume` when it empties."""
        after = self.state.reasons
        if before != after:
            self._stamp(before, at)
        if bool(before) == bool(after) or self.state.cancelled:
            return
        if after:
            self._issue(CommandType.SUSPEND, AlertType.SUSPENDED, first(after - before), at)
        else:
            self._issue(CommandType.RESUME, AlertType.RESUMED, first(before), at, before)

    def _stamp(self, before: frozenset[Reason], at: datetime) -> None:
        """Remember since when each held reason holds (explain's "since")."""
        after = self.state.reasons
        kept = tuple((r, t) for r, t in self.state.since if r in after)
        held = {r for r, _ in kept}
        ts = int(at.timestamp())
        added = tuple((r, ts) for r in ordered(after - before) if r not in held)
        self.state = replace(self.state, since=kept + added)

    def cancel(self, trigger: Reason, at: datetime, *, blacklist: bool = False) -> None:
        if self.since is not None:  # the suspension an event decided comes first
            self.transition(self.before(), at)
        self.announce_pending(at)  # and one that waited for the profile
        self.state = replace(self.state, cancelled=True, blacklisted=blacklist)
        self._issue(CommandType.CANCEL, AlertType.CANCELLED, trigger, at)

    def _issue(
        self,
        kind: CommandType,
        alert_kind: AlertType,
        trigger: Reason,
        at: datetime,
        lifted: frozenset[Reason] | None = None,
    ) -> None:
        seq = self.state.transitions + 1
        self.state = replace(self.state, transitions=seq)
        self._command(kind, trigger, at)
        if self.state.profile is None:
            # No customer to tell yet: a suspension is announced when the profile arrives.
            pending = trigger if kind is CommandType.SUSPEND else None
            self.state = replace(self.state, announce=pending)
            return
        hints = lift_hints(self.state, self.policy) if kind is CommandType.SUSPEND else None
        self.alerts.append(
            alert(
                self.state,
                alert_kind,
                at,
                f"n{seq}",
                trigger=trigger,
                reasons=ordered(self.state.reasons),
                lifts=hints,
                lifted=ordered(lifted) if lifted else None,
            )
        )

    def _command(self, kind: CommandType, trigger: Reason, at: datetime) -> None:
        """Publish a command and track it until the network confirms it (it supersedes the
        one tracked before)."""
        cycle, tz = self._calendar(at)
        cmd = command(self.state, kind, trigger, at, cycle, tz)
        self.commands.append(cmd)
        if enforcement.tracking(self.policy):
            now = self.now or at
            pending = enforcement.issued(cmd, now, self.origin or now, self.policy)
            self.state = replace(self.state, pending=pending)

    def retry(self, now: datetime) -> None:
        """Publish the tracked command again if no result came in time (or give up)."""
        self.state, note = enforcement.retry(self.state, now, self.policy)
        if note is None:
            return
        self.notes.append(note)
        if note.kind == "retry":
            assert self.state.pending is not None
            self.resent.append(self.state.pending.republished())

    def reconcile(self, observed: NetworkState, at: datetime) -> None:
        """Correct a network whose own view of the card differs from ours (trigger
        `reconcile`; the id is the card's next transition's, so it is decided once)."""
        kind = enforcement.needs_correction(self.state, observed)
        if kind is None:
            if enforcement.diverged(self.state, observed):
                self.diverged = observed
            return
        self.state = replace(self.state, transitions=self.state.transitions + 1)
        self._command(kind, Reason.RECONCILE, at)

    def _retry_due(self) -> int | None:
        return enforcement.due(self.state) if enforcement.tracking(self.policy) else None

    def announce_pending(self, at: datetime) -> None:
        """The `suspended` alert of a suspension decided before the card had a profile."""
        s = self.state
        if s.announce is None or s.profile is None:
            return
        self.state = replace(s, announce=None)
        if s.reasons and not s.cancelled:
            self.alerts.append(
                alert(
                    self.state,
                    AlertType.SUSPENDED,
                    at,
                    f"n{s.transitions}",
                    trigger=s.announce,
                    reasons=ordered(s.reasons),
                    lifts=lift_hints(s, self.policy),
                )
            )

    def _calendar(self, at: datetime) -> tuple[date, str]:
        s, p = self.state, self.policy
        if s.profile is not None and s.cycle is not None:
            return s.cycle, s.profile.timezone
        tz = s.profile.timezone if s.profile else p.default_timezone
        day = s.profile.cycle_day if s.profile else p.default_cycle_day
        return s.cycle or cycle_of(at, tz, day), tz

    def mark(self, step: Step) -> None:
        self.state = replace(self.state, milestones=self.state.milestones | {step.key})

    def decision(self, usage: Mapping[date, int], rejected: str | None = None) -> Decision:
        state = self.state
        in_play = keys_in_play(state, self.policy)
        if in_play is not None and not state.milestones <= in_play:
            state = self.state = replace(state, milestones=state.milestones & in_play)
        cycle, profile = state.cycle, state.profile
        if profile is None or cycle is None:
            wakes = dict.fromkeys(usage, NEVER)
        else:
            wakes = {c: NEVER for c in usage if c < cycle}
            wakes[cycle] = wake_level(state, profile)
        if state.pool_stop is not None and (cycle is None or state.pool_stop[1] < cycle):
            state = self.state = replace(state, pool_stop=None)  # its cycle has passed
        if state.overshoot_from is not None and Reason.OVER_QUOTA not in state.reasons:
            state = self.state = replace(state, overshoot_from=None)
        return Decision(
            state,
            tuple(self.alerts),
            tuple(self.commands),
            wakes,
            rejected,
            _earliest(next_due(state, self.policy), self._retry_due(), state),
            tuple(self.charges),
            tuple(self.resent),
            tuple(self.notes),
            self.diverged,
        )


def first(reasons: frozenset[Reason]) -> Reason:
    return next(r for r in REASON_ORDER if r in reasons)


def _earliest(step: datetime | None, retry: int | None, state: CardState) -> datetime | None:
    """The card's next due time: its next lifecycle step or its command's next attempt."""
    if retry is None:
        return step
    tz = zone(state.profile.timezone) if state.profile is not None else UTC
    at = datetime.fromtimestamp(retry, tz)
    return at if step is None or at < step else step
