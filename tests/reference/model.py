"""Independent reference model of one SIM card's lifecycle, for tests only.

Written from ../shared/domain.md ("domain") and docs/lifecycle-rules.md ("rules") alone.
It walks wall-clock time forward: from the current instant it computes, from scratch, the
next instant at which any timed rule could fire, steps there, applies every rule in the
rules' order ("Several things due at the same instant ..."), and handles each input after
everything due at or before its instant. Slow and plain on purpose.

Interpretations (where domain.md and lifecycle-rules.md left a choice):
- Each timed rule at an instant (rollover incl. its fee; bill due check; balance warning;
  expiry warnings; expiry; retention fee; cancellation) is its own step, and each input is
  one step: suspend/resume is decided on the reasons before/after one step, so an
  over-quota card that falls into arrears at the same rollover gets no command, while a
  rollover lifting over_quota followed by expiry at that instant gives resume then suspend.
- The card exists from its first input (a usage record or event may precede the profile);
  before the profile it lives in the default calendar and no fee is ever assessed.
- A usage record is bucketed by the cycle label of its event_time in the card's calendar
  at arrival; a later calendar change does not re-bucket counted records.
- A calendar change (cycle_day/timezone in an upsert) re-labels the current cycle at once
  as the cycle containing now in the new calendar; that is not a rollover (no fee). If the
  label changes, every level is re-armed (a new cycle) and warnings/over-quota are decided
  on the new label's usage.
- Warnings and over-quota are re-decided at every upsert (profile arrival, quota/warn list
  change): levels already reached by the current usage are announced at the upsert.
- A rollover's fee month is the local calendar month of the new cycle's label.
  ADJUDICATED (production's reading kept): a month is used up only by a fee actually
  assessed (a plan with no fee charges nothing, so a fee-bearing plan taken later in the
  month may still charge that month once). ADJUDICATED: the month of the creation cycle
  is used up (billing's balance paid for it), so a cycle_day moved right after creation
  does not charge that month again.
- Prepaid plan fee: if unpaid, the whole fee is owed and the balance is left untouched.
  Prepaid retention fee: the balance pays what it can (even when something is already
  owed), the rest is owed and arrears holds.
- An upsert replaces the profile and (prepaid) the balance; a negative upsert balance is
  clamped to 0 (the balance never goes below zero); what is owed is kept across upserts.
  ADJUDICATED (production's reading kept): a postpaid upsert's balance is billing's word
  on the debt too (debt = -balance), as for prepaid; arrears is not re-decided by an
  upsert (not on a billing or credit_limit change either).
- An upsert's expires_at counts only as a renewal when later than the current one (and
  then only if in the future); an earlier one is ignored. card.renewed to any future date
  (even earlier than the current term) is accepted. A term is identified by its
  expires_at instant: renewing to the same instant re-arms nothing.
- A card that arrives already expired holds `expired` at once; retention fees whose
  instant is at or before its arrival are not charged (billing's word, like the upsert
  balance); if its grace period has already ended it is cancelled at once.
- Expiry warning catch-up (arrival/renewal): days_left = ceil of the LOCAL wall-clock
  time left in days (a DST day counts as a whole day), capped at the lead. Warnings at a
  lead instant use the lead. A re-upsert with the same term re-announces nothing.
- Balance warning: checked at the instant 3 days (local wall clock) before the next
  rollover, or at the profile's arrival inside that window. ADJUDICATED (production's
  reading kept): a later profile or term change inside the window (re-upsert, renewal,
  cycle_day change) checks too, and a check is used up only once a fee is due then.
  "A rollover that will assess a fee" means: prepaid, fee > 0, cycle starts before
  expires_at, month not used.
- Postpaid: a payment lowers the debt and may leave a credit (negative debt) that offsets
  later bills; past-due debt = debt - bills not yet due (a bill due exactly now is past
  due). Arrears is decided only at bill due instants and lifted only by a payment.
- Postpaid cancellation clock: 3 months (local wall clock) after the instant arrears
  began holding (the due check that added it), whatever other reasons held then.
- Cancellation keeps the reasons held: cancel detail = (trigger, *reasons held, sorted);
  if the expiry and postpaid cancellations fall due together the trigger is `expired`.
  The blacklist debt recorded at a postpaid cancellation is the card's whole debt.
- A recharge without a profile is ignored (the upsert's balance is billing's word). A
  recharge of a card whose customer owes an old debt pays that first; the rest is applied
  as an ordinary top-up (prepaid) or payment (postpaid), in the same step.
- Blacklisting applies at the card's first upsert in the scenario only.
- Manual start settles prepaid arrears only when the balance covers what is owed
  (balance >= owed); auto_restore_on_recharge does the same at a recharge.
- A pending (unannounced) suspension is announced at the profile's arrival with the
  trigger of the last suspend command issued without a profile and the reasons held after
  the upsert; `resumed` alerts of a card without a profile are never sent.
- Wall-clock times that fall in a DST gap are resolved with fold=0 (zoneinfo: the offset
  before the transition, i.e. the first real instant after the gap); "k months after" for
  k = 0 is the instant itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from simwatch_contracts import (
    CardRecharged,
    CardRenewed,
    CardUpserted,
    ResumeRequested,
    SuspendRequested,
    ViolationCleared,
    ViolationReported,
)

from .scenario import Effect, Input, Policy, Scenario, Usage

# rules, "Reasons and commands": trigger precedence when several reasons change at once.
ORDER = ("violation", "expired", "arrears", "blacklisted", "over_quota", "manual")


# ---------------------------------------------------------------------------- calendar


def utc(instant: datetime) -> datetime:
    return instant.astimezone(UTC)


def wall(instant: datetime, tz: ZoneInfo) -> datetime:
    """The naive local wall-clock time of an instant in `tz`."""
    return instant.astimezone(tz).replace(tzinfo=None)


def at_wall(local: datetime, tz: ZoneInfo) -> datetime:
    """The instant (UTC) of a naive local wall-clock time in `tz` (fold=0)."""
    return local.replace(tzinfo=tz, fold=0).astimezone(UTC)


def add_months_date(day: date, months: int) -> date:
    """Same day of month, clamped to the month's last day (rules, "Calendar")."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    last = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
    return date(year, month, min(day.day, last))


def plus_months(instant: datetime, months: int, tz: ZoneInfo) -> datetime:
    """`instant` + k months on the local wall clock, keeping local day (clamped) and time."""
    if months == 0:
        return utc(instant)
    local = wall(instant, tz)
    moved = add_months_date(local.date(), months)
    return at_wall(datetime.combine(moved, local.time()), tz)


def minus_days(instant: datetime, days: int, tz: ZoneInfo) -> datetime:
    """`instant` - n days on the local wall clock (same local time)."""
    return at_wall(wall(instant, tz) - timedelta(days=days), tz)


def plus_days(instant: datetime, days: int, tz: ZoneInfo) -> datetime:
    return minus_days(instant, -days, tz)


def cycle_start(label: date, tz: ZoneInfo) -> datetime:
    """rules: a cycle starts at local midnight of its label date."""
    return at_wall(datetime.combine(label, time()), tz)


def label_at(instant: datetime, tz: ZoneInfo, cycle_day: int) -> date:
    """The label of the cycle containing `instant`: the latest cycle start <= instant."""
    instant = utc(instant)
    local = wall(instant, tz)
    label = date(local.year, local.month, cycle_day)
    if local.day < cycle_day:
        label = add_months_date(label, -1)
    # Midnights moved by DST: compare instants, not wall times.
    while cycle_start(label, tz) > instant:
        label = add_months_date(label, -1)
    while cycle_start(add_months_date(label, 1), tz) <= instant:
        label = add_months_date(label, 1)
    return label


def ceil_days(delta: timedelta) -> int:
    return -((-delta) // timedelta(days=1))


# ------------------------------------------------------------------------------- state


@dataclass
class Bill:
    amount: int
    due: datetime
    checked: bool = False


@dataclass
class Card:
    policy: Policy
    now: datetime
    customer_debt: int  # the blacklist: what the card's customer owes from a cancelled card
    profile: CardUpserted | None = None
    label: date | None = None
    usage: dict[date, int] = field(default_factory=dict)
    announced: set[int] = field(default_factory=set)  # levels announced this cycle
    reasons: set[str] = field(default_factory=set)
    cancelled: bool = False
    balance: int = 0  # prepaid
    owed: int = 0  # prepaid debt
    debt: int = 0  # postpaid debt (negative: a credit)
    bills: list[Bill] = field(default_factory=list)
    arrears_since: datetime | None = None  # postpaid stop instant
    expires_at: datetime | None = None
    arrived_at: datetime | None = None  # first upsert
    warned_leads: set[tuple[datetime, int]] = field(default_factory=set)
    retention_done: set[tuple[datetime, int]] = field(default_factory=set)
    fee_months: set[tuple[int, int]] = field(default_factory=set)
    balance_checked: set[date] = field(default_factory=set)
    pending_trigger: str | None = None  # suspension not yet announced (no profile)
    effects: list[Effect] = field(default_factory=list)

    @property
    def tz(self) -> ZoneInfo:
        name = self.profile.timezone if self.profile else self.policy.default_timezone
        return ZoneInfo(name)

    @property
    def cycle_day(self) -> int:
        return self.profile.cycle_day if self.profile else 1

    @property
    def prepaid(self) -> bool:
        return self.profile is not None and self.profile.billing == "prepaid"

    @property
    def postpaid(self) -> bool:
        return self.profile is not None and self.profile.billing == "postpaid"

    def emit(self, kind: str, what: str, *detail: object) -> None:
        self.effects.append(Effect(utc(self.now), kind, what, tuple(detail)))

    def add(self, reason: str) -> None:
        self.reasons.add(reason)

    def lift(self, reason: str) -> None:
        self.reasons.discard(reason)


def first_in_order(reasons: set[str]) -> str:
    return min(reasons, key=ORDER.index)


def announce_transition(card: Card, before: set[str]) -> None:
    """rules, "Reasons and commands": suspend on empty -> non-empty, resume on the reverse;
    each command with its alert (the alert waits for the profile)."""
    after = card.reasons
    if not before and after:
        trigger = first_in_order(after - before)
        detail = (trigger, *sorted(after))
        card.emit("command", "suspend", *detail)
        if card.profile:
            card.emit("alert", "suspended", *detail)
        else:
            card.pending_trigger = trigger
    elif before and not after:
        trigger = first_in_order(before - after)
        card.emit("command", "resume", trigger)
        card.pending_trigger = None
        if card.profile:
            card.emit("alert", "resumed", trigger)


def step(card: Card, rule: Callable[..., None], *args: object) -> None:
    """Apply one rule (or input) as one change of the reason set."""
    before = set(card.reasons)
    rule(card, *args)
    if not card.cancelled:
        announce_transition(card, before)


# ------------------------------------------------------------------- usage (rule 1)


def decide_usage(card: Card) -> None:
    """rules, "Usage, warnings, over-quota": levels and over_quota on the current cycle."""
    plan = card.profile.plan if card.profile else None
    if plan is None or plan.quota_bytes is None:
        card.lift("over_quota")
        return
    quota = plan.quota_bytes
    used = card.usage.get(card.label, 0)  # type: ignore[arg-type]
    levels = {p for p in plan.warn_percents if p < 100} | {100}
    for percent in sorted(levels):
        reached = used > 0 and used >= -(-quota * percent // 100)  # ceil
        if not reached:
            card.announced.discard(percent)  # re-armed
        elif percent not in card.announced:
            card.announced.add(percent)
            what = "quota_exhausted" if percent == 100 else "usage_threshold"
            card.emit("alert", what, percent)
    if plan.auto_suspend and used >= quota:
        card.add("over_quota")
    else:
        card.lift("over_quota")


def relabel(card: Card) -> None:
    """The current cycle in the (possibly new) calendar; a new label re-arms every level."""
    label = label_at(card.now, card.tz, card.cycle_day)
    if label != card.label:
        card.label = label
        card.announced = set()


# ------------------------------------------------------------------------- fees (rule 3)


def bill_postpaid(card: Card, amount: int) -> None:
    """rules, "Postpaid: each fee is billed as debt and falls due 15 days later"."""
    card.debt += amount
    due = plus_days(card.now, card.policy.postpaid_due_days, card.tz)
    card.bills.append(Bill(amount, due))


def past_due(card: Card) -> int:
    return card.debt - sum(b.amount for b in card.bills if b.due > card.now)


def fee_assessed_at(card: Card, label: date) -> bool:
    """rules, "Fees": no fee for a cycle starting at or after expires_at; one per month."""
    assert card.profile is not None and card.expires_at is not None
    if cycle_start(label, card.tz) >= card.expires_at:
        return False
    return (label.year, label.month) not in card.fee_months


def assess_plan_fee(card: Card) -> None:
    """rules, "A plan fee is assessed at each rollover"; prepaid/postpaid payment."""
    if card.profile is None or not fee_assessed_at(card, card.label):  # type: ignore[arg-type]
        return
    label: date = card.label  # type: ignore[assignment]
    fee = card.profile.plan.monthly_fee
    if fee == 0:  # adjudicated: a month is used up only by a fee actually assessed
        return
    card.fee_months.add((label.year, label.month))
    card.emit("charge", "plan_fee", fee, label.isoformat())
    if card.postpaid:
        bill_postpaid(card, fee)
    elif card.owed == 0 and card.balance >= fee:
        card.balance -= fee
    else:
        card.owed += fee
        card.add("arrears")


def settle_prepaid(card: Card) -> None:
    """rules: a balance that covers what is owed settles it and lifts arrears."""
    if "arrears" in card.reasons and card.balance >= card.owed:
        card.balance -= card.owed
        card.owed = 0
        card.lift("arrears")


# ---------------------------------------------------------------------------- timed rules


def rollover(card: Card) -> None:
    """rules, "At a rollover all levels are re-armed and over-quota is re-decided", then the
    plan fee of the new cycle."""
    label = label_at(card.now, card.tz, card.cycle_day)
    if label == card.label:
        return
    card.label = label
    card.announced = set()
    decide_usage(card)
    assess_plan_fee(card)


def bill_due_check(card: Card) -> None:
    """rules, "At a bill's due instant, if the past-due debt exceeds credit_limit"."""
    due = [b for b in card.bills if not b.checked and b.due <= card.now]
    if not due:
        return
    for bill in due:
        bill.checked = True
    if not card.postpaid or "arrears" in card.reasons:
        return
    limit = card.profile.plan.credit_limit or 0  # type: ignore[union-attr]
    if past_due(card) > limit:
        card.add("arrears")
        card.arrears_since = card.now


def balance_warning_instant(card: Card) -> tuple[date, datetime]:
    nxt = add_months_date(card.label, 1)  # type: ignore[arg-type]
    at = minus_days(cycle_start(nxt, card.tz), card.policy.balance_warning_days, card.tz)
    return nxt, at


def balance_warning(card: Card, arriving: bool = False) -> None:
    """rules, "Prepaid balance warning: 3 days before a rollover that will assess a fee";
    "A card that arrives inside the window is warned at once"."""
    if not card.prepaid:
        return
    nxt, at = balance_warning_instant(card)
    if nxt in card.balance_checked or card.now < at or (card.now != at and not arriving):
        return
    fee = card.profile.plan.monthly_fee  # type: ignore[union-attr]
    if fee > 0 and fee_assessed_at(card, nxt):  # adjudicated: checked once a fee is due
        card.balance_checked.add(nxt)
        if card.balance < card.owed + fee:
            card.emit("alert", "balance_insufficient", card.owed + fee)


def expiry_warnings(card: Card) -> None:
    """rules, "Warnings at expires_at minus each lead"; late arrival/renewal: only the most
    recent passed one, days left rounded up; none once expired."""
    exp = card.expires_at
    if card.profile is None or exp is None:
        return
    passed = [
        lead
        for lead in card.policy.expiry_leads_days
        if (exp, lead) not in card.warned_leads and minus_days(exp, lead, card.tz) <= card.now
    ]
    if not passed:
        return
    card.warned_leads.update((exp, lead) for lead in passed)
    if card.now >= exp:
        return
    left = ceil_days(wall(exp, card.tz) - wall(card.now, card.tz))
    card.emit("alert", "expiry_upcoming", min(min(passed), left))


def expiry(card: Card) -> None:
    """rules, "At expires_at: expired holds"."""
    if card.profile and card.expires_at and card.now >= card.expires_at:
        card.add("expired")


def charge_retention(card: Card, k: int) -> None:
    fee = card.policy.retention_fee
    if fee == 0:
        return
    card.emit("charge", "retention_fee", fee, k)
    if card.postpaid:
        bill_postpaid(card, fee)
        return
    paid = min(card.balance, fee)
    card.balance -= paid
    if fee - paid:
        card.owed += fee - paid
        card.add("arrears")


def retention_fee(card: Card) -> None:
    """rules, "Retention fee at expires_at + k months, k = 0, 1, 2, while still expired"."""
    exp = card.expires_at
    if "expired" not in card.reasons or exp is None:
        return
    for k in range(card.policy.grace_months):
        if (exp, k) in card.retention_done or plus_months(exp, k, card.tz) > card.now:
            continue
        card.retention_done.add((exp, k))
        charge_retention(card, k)


def cancellation(card: Card) -> None:
    """rules: expires_at + 3 months still expired -> cancel (expired); postpaid still in
    arrears 3 months after the stop -> cancel (arrears) and blacklist the debt."""
    triggers = set()
    exp = card.expires_at
    grace = card.policy.grace_months
    if "expired" in card.reasons and exp and card.now >= plus_months(exp, grace, card.tz):
        triggers.add("expired")
    since = card.arrears_since
    months = card.policy.postpaid_cancel_months
    in_arrears = card.postpaid and "arrears" in card.reasons and since is not None
    if in_arrears and card.now >= plus_months(since, months, card.tz):  # type: ignore[arg-type]
        triggers.add("arrears")
        card.customer_debt += max(card.debt, 0)
    if triggers:
        detail = (first_in_order(triggers), *sorted(card.reasons))
        card.cancelled = True
        card.emit("command", "cancel", *detail)
        card.emit("alert", "cancelled", *detail)


TIMED_RULES = (
    rollover,
    bill_due_check,
    balance_warning,
    expiry_warnings,
    expiry,
    retention_fee,
    cancellation,
)


def run_timed_rules(card: Card) -> None:
    """rules: "Several things due at the same instant happen in this order"."""
    for rule in TIMED_RULES:
        if card.cancelled:
            return
        step(card, rule)


def next_instant(card: Card) -> datetime | None:
    """The earliest instant after now at which any timed rule could fire."""
    tz = card.tz
    nxt, warn_at = balance_warning_instant(card)
    candidates = [cycle_start(nxt, tz), warn_at]
    candidates += [b.due for b in card.bills if not b.checked]
    exp = card.expires_at
    if card.profile and exp:
        candidates += [minus_days(exp, lead, tz) for lead in card.policy.expiry_leads_days]
        candidates += [plus_months(exp, k, tz) for k in range(card.policy.grace_months + 1)]
    if card.arrears_since:
        candidates.append(plus_months(card.arrears_since, card.policy.postpaid_cancel_months, tz))
    later = [c for c in candidates if c > card.now]
    return min(later) if later else None


def advance(card: Card, target: datetime) -> None:
    """Apply everything due after now and at or before `target`."""
    while not card.cancelled:
        nxt = next_instant(card)
        if nxt is None or nxt > target:
            break
        card.now = nxt
        run_timed_rules(card)
    card.now = target


# --------------------------------------------------------------------------------- inputs


def renew(card: Card, expires_at: datetime) -> None:
    """rules, "Renewal ... to a future date lifts expired"; to a date at or before now is
    refused."""
    if expires_at <= card.now:
        return
    card.expires_at = utc(expires_at)
    card.lift("expired")


def on_upserted(card: Card, event: CardUpserted) -> None:
    first = card.profile is None
    card.profile = event
    card.balance = max(event.balance, 0)
    if event.billing == "postpaid":  # adjudicated: billing's balance replaces the debt
        card.debt = -event.balance
    relabel(card)
    if first:
        card.arrived_at = card.now
        card.expires_at = utc(event.expires_at)
        label: date = card.label  # type: ignore[assignment]
        card.fee_months.add((label.year, label.month))  # adjudicated: paid by billing
        for k in range(card.policy.grace_months):  # due before arrival: billing's word
            if plus_months(card.expires_at, k, card.tz) <= card.now:
                card.retention_done.add((card.expires_at, k))
        if card.customer_debt > 0:
            card.add("blacklisted")  # rules, "Blacklist: a new card ... is held"
    elif event.expires_at > card.expires_at:  # type: ignore[operator]
        renew(card, event.expires_at)
    expiry(card)
    decide_usage(card)


def on_recharged(card: Card, event: CardRecharged) -> None:
    if card.profile is None:
        return
    amount = event.amount
    if card.customer_debt > 0:  # rules, "a recharge of that card pays the old debt first"
        paid = min(amount, card.customer_debt)
        card.customer_debt -= paid
        amount -= paid
        if card.customer_debt == 0:
            card.lift("blacklisted")
    # adjudicated: a payment re-checks arrears even when all of it went to the old debt
    if card.prepaid:
        card.balance += amount
        if card.profile.plan.auto_restore_on_recharge:
            settle_prepaid(card)
    else:  # rules, "A payment is applied at once"
        card.debt -= amount
        if "arrears" in card.reasons and past_due(card) <= (card.profile.plan.credit_limit or 0):
            card.lift("arrears")
            card.arrears_since = None


def on_resume(card: Card, _event: ResumeRequested) -> None:
    """rules, "Manual start": lifts manual; settles prepaid arrears the balance covers."""
    card.lift("manual")
    if card.prepaid:
        settle_prepaid(card)
    elif (
        card.postpaid
        and "arrears" in card.reasons
        and past_due(card) <= (card.profile.plan.credit_limit or 0)  # type: ignore[union-attr]
    ):
        # adjudicated: a restore request re-checks postpaid arrears (billing may have
        # cleared the debt by an upsert, which does not itself re-decide arrears)
        card.lift("arrears")
        card.arrears_since = None


def on_usage(card: Card, record: Usage) -> None:
    """rules: a record counts in the cycle containing its event_time; a late record for a
    past cycle decides nothing."""
    label = label_at(record.event_time, card.tz, card.cycle_day)
    card.usage[label] = card.usage.get(label, 0) + record.nbytes
    if label == card.label:
        decide_usage(card)


def on_input(card: Card, item: object) -> None:
    if isinstance(item, Usage):
        on_usage(card, item)
    elif isinstance(item, CardUpserted):
        on_upserted(card, item)
    elif isinstance(item, CardRecharged):
        on_recharged(card, item)
    elif isinstance(item, CardRenewed):
        if card.profile is not None:  # "A renewal without a profile is refused"
            renew(card, item.expires_at)
    elif isinstance(item, SuspendRequested):
        card.add("manual")
    elif isinstance(item, ResumeRequested):
        on_resume(card, item)
    elif isinstance(item, ViolationReported):
        card.add("violation")
    elif isinstance(item, ViolationCleared):
        card.lift("violation")


def apply_input(card: Card, entry: Input) -> None:
    had_profile = card.profile is not None
    step(card, on_input, entry.item)
    if not had_profile and card.profile is not None:
        if card.pending_trigger and card.reasons:  # the suspension waited for the profile
            card.emit("alert", "suspended", card.pending_trigger, *sorted(card.reasons))
        card.pending_trigger = None
    if card.profile is not None and isinstance(entry.item, CardUpserted | CardRenewed):
        balance_warning(card, arriving=True)  # adjudicated: any profile or term change
    run_timed_rules(card)  # consequences due at once (catch-up warnings, cancellation)


# ---------------------------------------------------------------------------------- entry


def simulate(scenario: Scenario) -> Card | None:
    until = utc(scenario.until)
    card: Card | None = None
    for entry in scenario.inputs:
        at = utc(entry.at)
        if at > until:
            break
        if card is None:
            card = Card(policy=scenario.policy, now=at, customer_debt=scenario.customer_debt)
            card.label = label_at(at, card.tz, card.cycle_day)
        advance(card, at)
        if not card.cancelled:
            apply_input(card, entry)
    if card is not None:
        advance(card, until)
    return card


def run(scenario: Scenario) -> list[Effect]:
    """Every effect decided for the scenario's card up to and including `until`, sorted."""
    card = simulate(scenario)
    return sorted(card.effects) if card else []


def final_state(scenario: Scenario) -> dict[str, object]:
    card = simulate(scenario)
    if card is None:
        return {"status": "unknown", "reasons": []}
    status = "cancelled" if card.cancelled else "suspended" if card.reasons else "active"
    return {
        "status": status,
        "reasons": sorted(card.reasons),
        "cycle": card.label.isoformat() if card.label else None,
        "used_bytes": card.usage.get(card.label, 0) if card.label else 0,
        "balance": card.balance,
        "owed": card.owed,
        "debt": card.debt,
        "expires_at": card.expires_at,
        "customer_debt": card.customer_debt,
    }
