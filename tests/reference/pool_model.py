"""Independent reference model of pooled quotas (流量池, issue #19), for tests only.

Written from ../shared/contract.md ("Round 2 additions" -> "Pools"), ../shared/domain.md and
issue #19 alone, without reading the production domain. Slow and plain on purpose: it keeps
every counted record, computes every usage figure by summing records, derives every
suspension reason from scratch at each instant it looks at, and walks wall-clock time forward
through every cycle boundary.

Rules encoded (the project's decisions):
- A pool has quota_bytes, warn_percents (default [80, 90]; a 100 in the list is the
  exhaustion itself), on_exhausted ("suspend_all" | "alert_only"), cycle_day (1-28) and a
  timezone. A pool cycle is named by the local date it starts on (cycle_day of the month,
  00:00 local time in the pool's timezone).
- A record (de-duplicated by record_id) of a card counts in the pool the card belongs to at
  the time the record is counted, in the pool cycle containing its event_time. A card in no
  pool counts for no pool. A card moving between pools mid-cycle moves only its future usage.
- A warn percent p is reached when used * 100 >= quota * p; exhaustion when used >= quota.
  `pool_threshold` (p < 100) / `pool_exhausted` (100) at most once per (pool, cycle, percent),
  except that a level no longer reached (the quota was raised) is re-armed and may be
  announced again. Several levels reached at once are announced in ascending order.
- suspend_all: while the pool is exhausted in its current cycle, every member (at that
  moment, including cards that join) holds `pool_over_quota`. It ends at the pool's next
  cycle, when the quota is raised above the usage, or when the card leaves the pool.
  alert_only: alerts only.
- member_cap: a member with member_cap_bytes holds `member_cap` while its own usage in its
  current cycle (its calendar is its pool's) is >= member_cap_bytes.
- over_quota: a card with its own plan quota (auto_suspend) holds `over_quota` while its own
  usage in its current cycle is >= that quota.
- manual: the customer's stop adds it, the customer's start removes only it.
- A card is suspended while it holds any reason: `suspend` when its set goes from empty to
  non-empty, `resume` when it empties. The trigger is a reason added (suspend) / removed
  (resume) by that step; when several are added/removed at once the model records all of
  them as acceptable (`command_options`) and picks one by a fixed order for `commands`.

Interpretations (where the rules left a choice):
- State-based: all derived reasons (pool_over_quota, member_cap, over_quota) are functions of
  the current state, re-decided after every input and at every cycle boundary. So a pool
  with quota 0 is exhausted (and announces every level) as soon as a cycle starts; switching
  a pool from suspend_all to alert_only while exhausted ends the stop; a member cap or own
  quota raised above the usage lifts its reason at once.
- A member's own usage (member cap, own quota) is all its usage in its current cycle,
  whichever pool it was counted in.
- Records are labelled at count time: the pool cycle (in the pool's calendar) and the card's
  own cycle (in the card's calendar then). A later calendar change does not re-label counted
  records. A card's calendar is its pool's while a member, else its own plan's.
- A record is counted once its card is known or not: a card with no profile yet holds no
  reason and is in no pool.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

SUSPEND_ALL = "suspend_all"
ALERT_ONLY = "alert_only"

POOL_OVER_QUOTA = "pool_over_quota"
MEMBER_CAP = "member_cap"
MANUAL = "manual"
OVER_QUOTA = "over_quota"

# Only used to pick one representative trigger when several reasons change at once.
_ORDER = (POOL_OVER_QUOTA, MEMBER_CAP, OVER_QUOTA, MANUAL)


# --------------------------------------------------------------------------- calendar


@dataclass(frozen=True)
class Calendar:
    cycle_day: int = 1
    timezone: str = "Asia/Shanghai"

    def __post_init__(self) -> None:
        if not 1 <= self.cycle_day <= 28:
            raise ValueError(f"cycle_day {self.cycle_day} not in 1..28")

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def cycle_of(self, t: datetime) -> date:
        """The local date the cycle containing instant `t` starts on."""
        local = t.astimezone(self.tz)
        y, m = local.year, local.month
        if local.day < self.cycle_day:
            y, m = (y, m - 1) if m > 1 else (y - 1, 12)
        return date(y, m, self.cycle_day)

    def start(self, cycle: date) -> datetime:
        """The instant (UTC) the cycle named `cycle` begins: 00:00 local time."""
        return datetime(cycle.year, cycle.month, cycle.day, tzinfo=self.tz).astimezone(
            ZoneInfo("UTC")
        )

    def next_start(self, t: datetime) -> datetime:
        """The instant the cycle after the one containing `t` begins."""
        c = self.cycle_of(t)
        y, m = (c.year, c.month + 1) if c.month < 12 else (c.year + 1, 1)
        return self.start(date(y, m, self.cycle_day))


# --------------------------------------------------------------------------- world


@dataclass
class _Pool:
    pool_id: str
    quota: int
    warn_percents: tuple[int, ...]
    on_exhausted: str
    calendar: Calendar

    def levels(self) -> list[int]:
        return sorted(set(self.warn_percents) | {100})


@dataclass
class _Card:
    iccid: str
    pool_id: str | None
    member_cap: int | None
    own_quota: int | None
    own_calendar: Calendar
    manual: bool = False


@dataclass(frozen=True)
class _Record:
    record_id: str
    iccid: str
    event_time: datetime
    nbytes: int
    pool_id: str | None  # the pool the card belonged to when the record was counted
    pool_cycle: date | None  # the pool cycle of event_time, in that pool's calendar then
    card_cycle: date  # the card's own cycle of event_time, in its calendar then


@dataclass
class PoolWorld:
    now: datetime | None = None
    pools: dict[str, _Pool] = field(default_factory=dict)
    cards: dict[str, _Card] = field(default_factory=dict)
    records: dict[str, _Record] = field(default_factory=dict)
    # announced levels per (pool, cycle); re-armed levels are removed again
    announced: dict[tuple[str, date], set[int]] = field(default_factory=dict)
    alerts: list[tuple[str, date, str, int]] = field(default_factory=list)
    # (iccid, type, trigger) in order, and the same with every acceptable trigger
    commands: list[tuple[str, str, str]] = field(default_factory=list)
    command_options: list[tuple[str, str, frozenset[str]]] = field(default_factory=list)
    # the reason sets as of the last settle
    _held: dict[str, frozenset[str]] = field(default_factory=dict)

    # ------------------------------------------------------------------ inputs

    def define_pool(
        self,
        at: datetime,
        pool_id: str,
        quota_bytes: int,
        warn_percents: Iterable[int] = (80, 90),
        on_exhausted: str = SUSPEND_ALL,
        cycle_day: int = 1,
        timezone: str = "Asia/Shanghai",
    ) -> None:
        """Create or replace a pool (pool.upserted)."""
        if quota_bytes < 0:
            raise ValueError("negative quota")
        if on_exhausted not in (SUSPEND_ALL, ALERT_ONLY):
            raise ValueError(on_exhausted)
        self.advance(at)
        self.pools[pool_id] = _Pool(
            pool_id, quota_bytes, tuple(warn_percents), on_exhausted, Calendar(cycle_day, timezone)
        )
        self._settle()

    def set_membership(
        self,
        at: datetime,
        iccid: str,
        pool_id: str | None,
        member_cap: int | None = None,
        own_quota: int | None = None,
        cycle_day: int = 1,
        timezone: str = "Asia/Shanghai",
    ) -> None:
        """Create or replace a card's profile (card.upserted): its pool (or none), its cap
        inside the pool, its own plan quota with auto_suspend (or none), and its own calendar
        (used only while it is in no pool)."""
        if pool_id is not None and pool_id not in self.pools:
            raise ValueError(f"unknown pool {pool_id}: the model only joins defined pools")
        self.advance(at)
        old = self.cards.get(iccid)
        self.cards[iccid] = _Card(
            iccid,
            pool_id,
            member_cap if pool_id is not None else None,
            own_quota,
            Calendar(cycle_day, timezone),
            manual=old.manual if old else False,
        )
        self._settle()

    def count(
        self, at: datetime, record_id: str, iccid: str, event_time: datetime, nbytes: int
    ) -> bool:
        """Count one usage record; False when its record_id was already counted."""
        self.advance(at)
        if record_id in self.records:
            return False
        card = self.cards.get(iccid)
        pool = self.pools.get(card.pool_id) if card and card.pool_id else None
        self.records[record_id] = _Record(
            record_id,
            iccid,
            event_time,
            nbytes,
            pool.pool_id if pool else None,
            pool.calendar.cycle_of(event_time) if pool else None,
            self._calendar(iccid).cycle_of(event_time),
        )
        self._settle()
        return True

    def manual(self, at: datetime, iccid: str, stop: bool) -> None:
        """The customer's manual stop (stop=True) or start (stop=False)."""
        self.advance(at)
        card = self.cards.get(iccid)
        if card is None:
            raise ValueError(f"unknown card {iccid}")
        card.manual = stop
        self._settle()

    def advance(self, at: datetime) -> None:
        """Walk the clock to `at`, settling at every cycle boundary on the way."""
        if self.now is not None and at < self.now:
            raise ValueError(f"time goes backwards: {at} < {self.now}")
        if self.now is None:
            self.now = at
            return
        while True:
            nxt = self._next_boundary()
            if nxt is None or nxt > at:
                break
            self.now = nxt
            self._settle()
        self.now = at
        self._settle()

    # ------------------------------------------------------------------ queries

    def pool_used(self, pool_id: str, cycle: date) -> int:
        return sum(
            r.nbytes
            for r in self.records.values()
            if r.pool_id == pool_id and r.pool_cycle == cycle
        )

    def pool_cycle(self, pool_id: str, at: datetime | None = None) -> date:
        return self.pools[pool_id].calendar.cycle_of(at or self._now())

    def card_used(self, iccid: str, cycle: date) -> int:
        return sum(
            r.nbytes for r in self.records.values() if r.iccid == iccid and r.card_cycle == cycle
        )

    def card_cycle(self, iccid: str, at: datetime | None = None) -> date:
        return self._calendar(iccid).cycle_of(at or self._now())

    def reasons(self, iccid: str) -> frozenset[str]:
        return self._reasons(iccid)

    def pool_stopped(self, pool_id: str) -> bool:
        return self._stopped(self.pools[pool_id])

    def members(self, pool_id: str) -> list[str]:
        return sorted(i for i, c in self.cards.items() if c.pool_id == pool_id)

    def commands_of(self, iccid: str) -> list[tuple[str, str]]:
        return [(t, trig) for (i, t, trig) in self.commands if i == iccid]

    # ------------------------------------------------------------------ internals

    def _now(self) -> datetime:
        assert self.now is not None, "nothing happened yet"
        return self.now

    def _calendar(self, iccid: str) -> Calendar:
        card = self.cards.get(iccid)
        if card is None:
            return Calendar()
        if card.pool_id is not None:
            return self.pools[card.pool_id].calendar
        return card.own_calendar

    def _next_boundary(self) -> datetime | None:
        now = self._now()
        calendars = {p.calendar for p in self.pools.values()}
        calendars |= {self._calendar(i) for i in self.cards}
        if not calendars:
            return None
        return min(c.next_start(now) for c in calendars)

    def _exhausted(self, pool: _Pool) -> bool:
        return self.pool_used(pool.pool_id, pool.calendar.cycle_of(self._now())) >= pool.quota

    def _stopped(self, pool: _Pool) -> bool:
        return pool.on_exhausted == SUSPEND_ALL and self._exhausted(pool)

    def _reasons(self, iccid: str) -> frozenset[str]:
        card = self.cards.get(iccid)
        if card is None:
            return frozenset()
        held: set[str] = set()
        if card.manual:
            held.add(MANUAL)
        own = self.card_used(iccid, self.card_cycle(iccid))
        if card.own_quota is not None and own >= card.own_quota:
            held.add(OVER_QUOTA)
        if card.pool_id is not None:
            pool = self.pools[card.pool_id]
            if self._stopped(pool):
                held.add(POOL_OVER_QUOTA)
            if card.member_cap is not None and own >= card.member_cap:
                held.add(MEMBER_CAP)
        return frozenset(held)

    def _settle(self) -> None:
        now = self._now()
        for pool in self.pools.values():
            cycle = pool.calendar.cycle_of(now)
            used = self.pool_used(pool.pool_id, cycle)
            done = self.announced.setdefault((pool.pool_id, cycle), set())
            # re-arm the levels no longer reached (the quota was raised)
            for p in list(done):
                if used * 100 < pool.quota * p:
                    done.discard(p)
            for p in pool.levels():
                if p not in done and used * 100 >= pool.quota * p:
                    done.add(p)
                    kind = "pool_exhausted" if p == 100 else "pool_threshold"
                    self.alerts.append((pool.pool_id, cycle, kind, p))
        for iccid in sorted(self.cards):
            before = self._held.get(iccid, frozenset())
            after = self._reasons(iccid)
            self._held[iccid] = after
            if not before and after:
                self._command(iccid, "suspend", after - before)
            elif before and not after:
                self._command(iccid, "resume", before - after)

    def _command(self, iccid: str, kind: str, options: frozenset[str]) -> None:
        trigger = next(r for r in _ORDER if r in options)
        self.commands.append((iccid, kind, trigger))
        self.command_options.append((iccid, kind, frozenset(options)))


def local(tz: str, year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A local wall-clock instant in `tz`, for tests."""
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(tz))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A UTC instant, for tests: utc(2026, 11, 25, 10)."""
    return local("UTC", year, month, day, hour, minute)


__all__ = [
    "ALERT_ONLY",
    "MANUAL",
    "MEMBER_CAP",
    "OVER_QUOTA",
    "POOL_OVER_QUOTA",
    "SUSPEND_ALL",
    "Calendar",
    "PoolWorld",
    "local",
    "utc",
]
