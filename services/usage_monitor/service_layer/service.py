"""The service layer: read a card, let the domain decide, commit the decision and its messages
atomically (outbox), then publish the outbox. The only place decisions are written."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import orjson

from simwatch_contracts import (
    CardDecision,
    CardEvent,
    CardUpserted,
    CommandResult,
    CommandType,
    NetworkObserved,
    Reason,
)
from simwatch_contracts.ids import stable_id
from simwatch_runtime.errors import component_of, is_transient

from ..crash_points import crash_point
from ..domain import pools
from ..domain.audit import decisions_of
from ..domain.card import CardState, CardStatus
from ..domain.cycles import previous_cycle
from ..domain.enforcement import Outcome
from ..domain.lifecycle import Decision, apply_event, apply_result, evaluate
from ..domain.pools import PoolView
from ..metrics import Metrics
from ..ports import (
    CONFLICT,
    DUPLICATE_EVENT,
    CardStore,
    CommitRequest,
    OutboxEntry,
    PoolRecord,
    Publisher,
    Snapshot,
    new_token,
)
from ..settings import Settings, calendar_key
from . import history
from .blacklist import LEDGER, ledger_entry

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
MAX_CAS_ATTEMPTS = 20
OUTBOX_LOCK_MS = 10_000
OUTBOX_READ = 2000  # entries (a decision's 1-5 messages each) per Kafka batch read and published
TICK_SLICE = 2000  # due cards read, decided and committed per round trip (a setting)


@dataclass(frozen=True, slots=True)
class EventOutcome:
    decision: Decision | None
    duplicate: bool = False
    outbox: int | None = None
    """The shard whose outbox the event added messages to, when left to the caller to drain
    (`apply_event(..., drain=False)`)."""


@dataclass(frozen=True, slots=True)
class ResultOutcome:
    """What a command result did: `outcome` (see `enforcement.Outcome`), or `duplicate`
    when this very result was applied before, or `unknown` (the caller dead-letters it)."""

    outcome: str
    error: str | None = None
    outbox: int | None = None
    """As `EventOutcome.outbox`."""


def result_id(result: CommandResult) -> str:
    """The de-duplication id of a result: the same answer delivered twice applies once."""
    return stable_id(
        "res", result.command_id, result.status.value, result.network_state.value, result.at
    )


class CardService:
    def __init__(
        self,
        store: CardStore,
        publisher: Publisher,
        settings: Settings,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.policy = settings.policy

    async def apply_event(self, event: CardEvent, *, drain: bool = True) -> EventOutcome:
        """Apply one card event exactly once (de-duplicated by `event_id`), then publish; with
        `drain=False` the caller publishes, once for a whole batch of events (`drain_soon` on
        each `outbox` returned): a drain is two Redis round trips and a Kafka produce, most
        of an event's cost when a fleet's profiles arrive at once."""
        pool = None
        if isinstance(event, CardUpserted) and event.plan.pool_id is not None:
            event, pool = await self._in_pool(event, event.plan.pool_id)
        for _ in range(MAX_CAS_ATTEMPTS):
            snap = (await self.store.load([event.iccid]))[event.iccid]
            debt = 0
            if isinstance(event, CardUpserted) and snap.state.profile is None:
                debt = (await self.store.customer_debt(event.customer_id)).debt
            decision = apply_event(
                snap.state, event, snap.usage, self.clock(), self.policy, debt, pool
            )
            request = self._request(snap, decision, event.event_id)
            version = await self.store.commit(request)
            outcome = self._settled(event, snap, decision, request, version)
            if outcome is None:
                continue
            if drain and outcome.outbox is not None:
                await self.drain_soon(outcome.outbox)
                return EventOutcome(outcome.decision, outcome.duplicate)
            return outcome
        raise RuntimeError(f"card {event.iccid[-4:]}: too many concurrent writers")

    async def apply_events(
        self, events: Sequence[CardEvent], outcomes: list[EventOutcome | None] | None = None
    ) -> list[EventOutcome]:
        """`apply_event(e, drain=False)` for each event in order, with one load and one commit
        round trip for each run of events about distinct cards (a fleet's profiles are
        thousands of events for different cards: one at a time, three round trips each, one
        worker applied ~270 a second on two shared cores).

        Deciding a run at once changes nothing an event sees but its timing: a card event
        reads only its own card, its customer's debt and, for a pool member's profile, its
        pool. None of them is written by the events of a run (a customer's debt changes when
        an outbox is drained: this batch's own after it; one drained meanwhile by another
        task or worker races with the run as it raced with one event), and a pool changes by
        usage and definitions, never by a member's profile. A second event for a card of the
        run starts a new run: it must see the first's decision.

        `outcomes`, one slot per event, keeps what an attempt settled when a later part of
        it fails: the caller's retry then skips those (counted once, as applied) instead of
        finding them duplicates."""
        if outcomes is None:
            outcomes = [None] * len(events)
        run: list[int] = []
        cards: set[str] = set()
        for n, event in enumerate(events):
            if outcomes[n] is not None:
                continue
            if event.iccid in cards:
                await self._apply_run_safely(events, run, outcomes)
                run, cards = [], set()
            run.append(n)
            cards.add(event.iccid)
        await self._apply_run_safely(events, run, outcomes)
        return [o for o in outcomes if o is not None]

    async def _apply_run_safely(
        self, events: Sequence[CardEvent], run: Sequence[int], outcomes: list[EventOutcome | None]
    ) -> None:
        """`_apply_run`; when it fails for good (an event that cannot be read or decided),
        the run's events are applied one at a time, so that those before the failing one
        still apply, as they did before runs: the failure then ends the batch as it did."""
        try:
            await self._apply_run(events, run, outcomes)
        except Exception as exc:
            if is_transient(exc):
                raise  # the caller retries the batch; what settled stays in `outcomes`
            log.warning(
                "a run of %d card events failed (%r); applying them one by one", len(run), exc
            )
            for n in run:
                if outcomes[n] is None:
                    outcomes[n] = await self.apply_event(events[n], drain=False)

    async def _apply_run(
        self, events: Sequence[CardEvent], run: Sequence[int], outcomes: list[EventOutcome | None]
    ) -> None:
        """Decide and commit events about distinct cards at once; a card written meanwhile
        by another (a conflict) is applied again on its own."""
        if not run:
            return
        snaps = await self.store.load([events[n].iccid for n in run])
        new = [
            e
            for n in run
            if isinstance(e := events[n], CardUpserted) and snaps[e.iccid].state.profile is None
        ]
        debts = await self.store.customer_debts(e.customer_id for e in new) if new else {}
        pool_ids = {
            e.plan.pool_id
            for n in run
            if isinstance(e := events[n], CardUpserted) and e.plan.pool_id is not None
        }
        pool_records = await self.store.pool_load(pool_ids) if pool_ids else {}
        now = self.clock()
        decisions, requests = [], []
        for n in run:
            event, snap = events[n], snaps[events[n].iccid]
            debt, pool = 0, None
            if isinstance(event, CardUpserted):
                if snap.state.profile is None:
                    debt = debts[event.customer_id].debt
                if event.plan.pool_id is not None:
                    event, pool = self._member(event, pool_records[event.plan.pool_id])
            decision = apply_event(snap.state, event, snap.usage, now, self.policy, debt, pool)
            decisions.append(decision)
            requests.append(self._request(snap, decision, event.event_id))
        versions = await self.store.commit_many(requests)
        lost: list[int] = []  # conflicts: decided again once every commit is settled
        for n, decision, request, version in zip(run, decisions, requests, versions, strict=True):
            event = events[n]
            outcomes[n] = self._settled(event, snaps[event.iccid], decision, request, version)
            if outcomes[n] is None:
                lost.append(n)
        for n in lost:
            outcomes[n] = await self.apply_event(events[n], drain=False)

    def _settled(
        self,
        event: CardEvent,
        snap: Snapshot,
        decision: Decision,
        request: CommitRequest,
        version: int,
    ) -> EventOutcome | None:
        """What a commit of `event`'s decision came to; None: a conflict (decide again)."""
        shard = self.store.shard(event.iccid)
        if version == DUPLICATE_EVENT:  # applied before: what it added may still wait
            return EventOutcome(None, duplicate=True, outbox=shard)
        if version == CONFLICT:
            self.metrics.evaluations.labels("conflict").inc()
            return None
        source = "observation" if isinstance(event, NetworkObserved) else ""
        self._count(decision, snap, source)
        return EventOutcome(decision, outbox=shard if request.messages else None)

    async def _in_pool(
        self, event: CardUpserted, pool_id: str
    ) -> tuple[CardUpserted, PoolView | None]:
        """A member's profile takes its pool's calendar (members are counted in their pool's
        cycles), and the card is evaluated with the pool's view (joining an exhausted pool
        stops it with the others). A pool not defined yet: the card keeps its own calendar."""
        return self._member(event, (await self.store.pool_load([pool_id]))[pool_id])

    def _member(
        self, event: CardUpserted, record: PoolRecord
    ) -> tuple[CardUpserted, PoolView | None]:
        """`_in_pool` with the pool as read."""
        pool = record.definition
        if pool is None:
            return event, None
        event = event.model_copy(update={"cycle_day": pool.cycle_day, "timezone": pool.timezone})
        return event, pools.view(pool, record.state, self.clock())

    async def apply_result(self, result: CommandResult, *, drain: bool = True) -> ResultOutcome:
        """Apply the network's result for a command exactly once (de-duplicated by
        `result_id`). A result for a card or command we never had is `unknown`: nothing is
        written, and the caller dead-letters it. `drain` as for `apply_event`."""
        event_id = result_id(result)
        for _ in range(MAX_CAS_ATTEMPTS):
            snap = (await self.store.load([result.iccid]))[result.iccid]
            if snap.version == 0:
                return ResultOutcome(Outcome.UNKNOWN.value, "unknown card")
            decision = apply_result(snap.state, result, snap.usage, self.clock(), self.policy)
            if decision.rejected:
                return ResultOutcome(Outcome.UNKNOWN.value, decision.rejected)
            request = self._request(snap, decision, event_id)
            version = await self.store.commit(request)
            if version == DUPLICATE_EVENT:  # applied before: what it added may still wait
                shard = self.store.shard(result.iccid)
                if drain:
                    await self.drain_soon(shard)
                    return ResultOutcome("duplicate")
                return ResultOutcome("duplicate", outbox=shard)
            if version != CONFLICT:
                self._count(decision, snap, "result")
                outbox = self.store.shard(result.iccid) if request.messages else None
                if outbox is not None and drain:
                    await self.drain_soon(outbox)
                    outbox = None
                note = decision.notes[0]
                return ResultOutcome((note.outcome or Outcome.STALE).value, outbox=outbox)
            self.metrics.evaluations.labels("conflict").inc()
        raise RuntimeError(f"card {result.iccid[-4:]}: too many concurrent writers")

    async def evaluate(
        self,
        iccids: Iterable[str],
        customer_debt: int | None = None,
        origin: datetime | None = None,
        pool: PoolView | None = None,
    ) -> int:
        """Settle cards (usage reached a wake level, or a step fell due, or a command's
        next attempt); returns how many decisions changed something. Reads and commits the
        whole slice in one round trip each; conflicting cards are read and decided again.
        `customer_debt`: the cards are held for a customer's debt that is now this (see
        `blacklist`). `origin`: when the input that woke them arrived. `pool`: their pool's
        stop began or ended (``pooling``)."""
        pending = list(dict.fromkeys(iccids))
        changed, attempts = 0, 0
        shards: set[int] = set()
        while pending and attempts < MAX_CAS_ATTEMPTS:
            attempts += 1
            snaps = await self.store.load(pending)
            now = self.clock()
            decisions = [
                evaluate(
                    snaps[i].state, snaps[i].usage, now, self.policy, customer_debt, origin, pool
                )
                for i in pending
            ]
            requests = [self._request(snaps[i], d) for i, d in zip(pending, decisions, strict=True)]
            results = await self.store.commit_many(requests)
            retry = []
            for iccid, decision, request, result in zip(
                pending, decisions, requests, results, strict=True
            ):
                if result == CONFLICT:
                    self.metrics.evaluations.labels("conflict").inc()
                    retry.append(iccid)
                    continue
                self._count(decision, snaps[iccid])
                changed += decision.changed
                if request.messages:
                    shards.add(self.store.shard(iccid))
            pending = retry
        if pending:
            raise RuntimeError(f"{len(pending)} cards: too many concurrent writers")
        # Every shard's outbox at once: each is drained in its own order under its own lock,
        # and a card's messages all come from its shard's outbox. One after the other, a
        # batch that woke cards in all twelve shards waited for twelve Kafka acknowledgements
        # in a row (p50 record -> suspend ~200 ms at half capacity).
        drained = await asyncio.gather(
            *(self.drain_soon(shard) for shard in sorted(shards)), return_exceptions=True
        )
        for outcome in drained:  # all settled (none left running unobserved), then the first
            if isinstance(outcome, BaseException):
                raise outcome
        return changed

    def _request(
        self, snap: Snapshot, decision: Decision, event_id: str | None = None
    ) -> CommitRequest:
        state = decision.state
        audit = decisions_of(decision, snap.usage, event_id)
        return CommitRequest(
            snap,
            state,
            calendar=self._calendar(state),
            wakes=dict(decision.wakes),
            messages=self._messages(decision, snap, event_id, audit),
            drop_cycles=_stale_cycles(state, snap.usage),
            event_id=event_id,
            due=decision.due,
            suspended_delta=_suspended_delta(snap.state, state),
            history=_history(audit, decision),
            counts=_ack_counts(snap.state, state),
        )

    def _calendar(self, state: CardState) -> str:
        if state.profile is None:
            return ""
        key = calendar_key(state.profile.timezone, state.profile.cycle_day)
        return "" if key == self.settings.default_calendar else key

    def _messages(
        self,
        decision: Decision,
        snap: Snapshot,
        event_id: str | None,
        audit: Sequence[CardDecision] = (),
    ) -> list[tuple[str, bytes, bytes]]:
        s = self.settings
        out = []
        entry = ledger_entry(snap.state, decision.state, snap.version + 1, event_id)
        if entry is not None:
            out.append((LEDGER, *entry))
        for command in (*decision.resent, *decision.commands):
            out.append(
                (s.topic_commands, command.iccid.encode(), command.model_dump_json().encode())
            )
        for alert in decision.alerts:
            value = alert.model_dump_json(exclude_none=True).encode()
            out.append((s.topic_alerts, alert.key.encode(), value))
        for record in audit:  # the audit trail: every decision with its facts
            value = record.model_dump_json(exclude_none=True).encode()
            out.append((s.topic_decisions, record.iccid.encode(), value))
        return out

    def _count(self, decision: Decision, snap: Snapshot, source: str = "") -> None:
        m = self.metrics
        self._count_loop(decision, snap, source)
        if decision.state.profile is None:
            m.evaluations.labels("unknown_card").inc()
            return
        m.evaluations.labels("changed" if decision.changed else "unchanged").inc()
        for alert in decision.alerts:
            m.alerts.labels(alert.type.value).inc()
        for command in decision.commands:
            m.commands.labels(command.type.value, command.trigger.value).inc()
            if command.trigger is Reason.RECONCILE:
                m.commands_reconciled.labels(command.type.value, source or "result").inc()
            elif command.type is CommandType.SUSPEND:
                m.card_transitions.labels(command.trigger.value).inc()

    def _count_loop(self, decision: Decision, snap: Snapshot, source: str) -> None:
        """The loop with the network: results, retries, enforcement latency, overshoot."""
        m, before, after = self.metrics, snap.state, decision.state
        for note in decision.notes:
            kind = note.type.value if note.type else "unknown"
            if note.kind == "retry":
                m.command_retries.labels(kind).inc()
            elif note.kind == "unconfirmed":
                m.commands_gave_up.labels(kind).inc()
            elif note.kind == "result" and note.status is not None and note.outcome:
                m.command_results.labels(note.status.value, note.outcome.value).inc()
                if note.outcome is Outcome.UNCONFIRMED:
                    m.commands_gave_up.labels(kind).inc()
                if note.latency_s is not None:
                    m.enforcement_seconds.labels(kind).observe(note.latency_s)
                    if note.type is CommandType.SUSPEND and after.overshoot_from is not None:
                        used = snap.usage.get(after.cycle, 0) if after.cycle else 0
                        m.overshoot_bytes.labels("enforced").observe(used - after.overshoot_from)
        if decision.diverged is not None:
            m.network_divergent.labels(decision.diverged.value).inc()
        if (
            before.overshoot_from is not None
            and before.cycle is not None
            and (after.overshoot_from is None or after.cycle != before.cycle)
        ):
            used = snap.usage.get(before.cycle, 0)
            m.overshoot_bytes.labels("cycle_end").observe(max(0, used - before.overshoot_from))

    async def drain_soon(self, shard: int) -> None:
        """Publish now if Kafka takes it; otherwise the sweeper will. The decision is already
        durable in the outbox, so a slow or failing producer must not stall counting."""
        try:
            await self.drain(shard)
        except Exception as exc:
            if not is_transient(exc):
                raise
            # Kafka or Redis unreachable: the sweep retries.
            self.metrics.transient_errors.labels(component_of(exc)).inc()
            log.warning("outbox of shard %d left for the sweeper: %s", shard, exc)

    async def drain(self, shard: int) -> int:
        """Publish a shard's outbox in order, under the shard's drain lock.

        If another worker holds the lock it will publish what we appended (the release is
        atomic with an emptiness check), so returning at once loses nothing. Two Redis round
        trips a round (claim, then settle: delete, then release or read on), not four: each
        may wait behind another batch's scripts queued in Redis.
        """
        token = new_token()
        entries = await self.store.outbox_claim(shard, token, OUTBOX_LOCK_MS, OUTBOX_READ)
        if entries is None:
            return 0
        published = 0
        while True:
            if entries:
                crash_point("outbox.before_publish")
                kafka = [(e.topic, e.key, e.value) for e in entries if e.topic != LEDGER]
                await self.publisher.publish(kafka)
                await self._apply_ledger([e for e in entries if e.topic == LEDGER])
                crash_point("outbox.before_ack")
                published += len(entries)
                for topic, n in Counter(e.topic for e in entries).items():
                    self.metrics.outbox_published.labels(topic).inc(n)
            done = [e.entry_id for e in entries]
            entries = await self.store.outbox_settle(
                shard, token, OUTBOX_LOCK_MS, done, OUTBOX_READ
            )
            if entries is None:
                log.warning("outbox lock of shard %d expired while draining", shard)
                return published
            if not entries:
                return published

    async def _apply_ledger(self, entries: Sequence[OutboxEntry]) -> None:
        """Blacklist changes (see `blacklist`): applied to each customer's hash; cards held
        for a debt now paid are released."""
        for e in entries:
            customer = e.key.decode()
            owed = await self.store.customer_apply(customer, orjson.loads(e.value))
            if owed.held and owed.debt == 0:
                await self.evaluate(owed.held, customer_debt=0)

    async def tick(
        self, owned: Callable[[], Collection[int]] | None = None, batch: int = TICK_SLICE
    ) -> int:
        """Bring every card whose due time has come up to now (rollovers, warnings, expiry,
        fees, cancellation), `batch` cards per round trip. `owned`: the shards this worker
        settles, asked again before each slice (a rebalance may move them mid-tick); None:
        all of them. A card fired twice (two owners during a rebalance) decides nothing
        twice: the commit's version check and the due sets make each step happen once."""
        now = self.clock()
        total = 0
        shards = range(self.store.shards) if owned is None else sorted(owned())
        for shard in shards:
            while owned is None or shard in owned():
                due = await self.store.due_cards(shard, now, batch)
                if due:
                    await self.evaluate(due)
                    total += len(due)
                if len(due) < batch:
                    break
        self.metrics.scheduled.inc(total)
        return total

    async def sweep(self) -> int:
        """Drain every shard with waiting messages (leftovers of a crash or a lost race)."""
        depth = await self.store.outbox_depth(range(self.store.shards))
        self.metrics.outbox_depth.set(sum(depth.values()))
        self.metrics.suspended_cards.set(await self.store.suspended_cards())
        tracked = self.metrics.commands_tracked
        for name, value in (await self.store.counts(list(tracked))).items():
            tracked[name].set(value)
        total = 0
        for shard, n in depth.items():
            if n:
                total += await self.drain(shard)
        return total


def _history(audit: Sequence[CardDecision], decision: Decision) -> list[str]:
    """The card's history lines of a decision, oldest first."""
    lines = [(d.at.timestamp(), history.entry(d)) for d in audit]
    lines += [(n.at.timestamp(), history.note_entry(n)) for n in decision.notes]
    return [line for _, line in sorted(lines, key=lambda x: x[0])]


def _ack_counts(before: CardState, after: CardState) -> dict[str, int]:
    """How the fleet's counts of tracked commands by status change with this commit."""
    was = before.pending.status.value if before.pending is not None else None
    now = after.pending.status.value if after.pending is not None else None
    if was == now:
        return {}
    out = {}
    if was is not None:
        out[was] = -1
    if now is not None:
        out[now] = 1
    return out


def _suspended_delta(before: CardState, after: CardState) -> int:
    was, now = before.status is CardStatus.SUSPENDED, after.status is CardStatus.SUSPENDED
    return int(now) - int(was)


def _stale_cycles(state: CardState, usage: dict[date, int]) -> Sequence[date]:
    """Counters older than the previous cycle are no longer read: drop them."""
    if state.cycle is None:
        return ()
    keep_from = previous_cycle(state.cycle)
    return [c for c in usage if c < keep_from]
