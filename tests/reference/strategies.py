"""Hypothesis strategies for random one-card scenarios that lean on the boundaries: cycle
starts, expiry on a cycle start, DST zones and UTC+14/-11, `expires_at` written in any
offset, quotas of 0 and null, warn lists with 100, prepaid and postpaid with credit limits,
and random interleavings of usage, recharges, renewals, stops, starts, violations and plan
changes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from simwatch_contracts import CardEvent, parse_card_event

from .scenario import Input, Scenario, Usage

ICCID = "89860412345678901234"
ZONES = (
    "Asia/Shanghai",
    "UTC",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "Pacific/Kiritimati",
    "Pacific/Niue",
    "Asia/Kathmandu",
    "America/Santiago",
    "America/Havana",
)
START = datetime(2026, 1, 1, tzinfo=UTC)


def _offset(minutes: int) -> timezone:
    return timezone(timedelta(minutes=minutes))


offsets = st.integers(-12 * 4, 14 * 4).map(lambda q: _offset(q * 15))


def stamp(at: datetime, tz: timezone) -> str:
    return at.astimezone(tz).isoformat()


class _Builder:
    """Turns drawn choices into events with unique ids, written in random offsets."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data
        self.seq = 0

    def event(self, kind: str, at: datetime, **fields: Any) -> CardEvent:
        self.seq += 1
        doc = {
            "type": kind,
            "event_id": f"e{self.seq}",
            "occurred_at": stamp(at, self.data.draw(offsets)),
            "iccid": ICCID,
            **fields,
        }
        return parse_card_event(json.dumps(doc))

    def plan(self) -> dict[str, Any]:
        draw = self.data.draw
        plan: dict[str, Any] = {
            "plan_id": "p",
            "quota_bytes": draw(st.sampled_from([None, 0, 1000, 1000, 5000])),
            "monthly_fee": draw(st.sampled_from([0, 100, 100, 300])),
            "auto_suspend": draw(st.booleans()),
            "warn_percents": sorted(draw(st.sets(st.sampled_from([50, 80, 90, 100]), max_size=3))),
            "auto_restore_on_recharge": draw(st.booleans()),
        }
        if draw(st.booleans()):
            plan["credit_limit"] = draw(st.sampled_from([0, 100, 250]))
        return plan

    def upsert(self, at: datetime, profile: dict[str, Any], expires: datetime) -> CardEvent:
        fields = {**profile, "expires_at": stamp(expires, self.data.draw(offsets))}
        return self.event("card.upserted", at, **fields)


def _boundary(at: datetime, zone: str, cycle_day: int) -> datetime:
    """The next local midnight of `cycle_day` after `at` (a cycle start)."""
    local = at.astimezone(ZoneInfo(zone))
    year, month = local.year, local.month
    for _ in range(3):
        start = datetime.combine(
            local.date().replace(year=year, month=month, day=cycle_day), time(0), ZoneInfo(zone)
        )
        if start > at:
            return start.astimezone(UTC)
        year, month = (year, month + 1) if month < 12 else (year + 1, 1)
    raise AssertionError("unreachable")


@st.composite
def scenarios(draw: st.DrawFn, max_inputs: int = 24) -> Scenario:
    data = draw(st.data())
    b = _Builder(data)
    zone = draw(st.sampled_from(ZONES))
    cycle_day = draw(st.sampled_from([1, 1, 15, 28, draw(st.integers(1, 28))]))
    billing = draw(st.sampled_from(["prepaid", "postpaid"]))
    start = START + timedelta(minutes=draw(st.integers(0, 365 * 24 * 60)))
    if draw(st.booleans()):  # month-end: the plan ends exactly when a cycle starts
        expires = _boundary(start, zone, cycle_day) + timedelta(days=31 * draw(st.integers(0, 3)))
        expires = _boundary(expires - timedelta(days=1), zone, cycle_day)
    else:
        expires = start + timedelta(minutes=draw(st.integers(-120 * 1440, 200 * 1440)))
    profile = {
        "customer_id": "acme",
        "billing": billing,
        "balance": draw(st.sampled_from([0, 50, 100, 300, 1500])) if billing == "prepaid" else 0,
        "plan": b.plan(),
        "cycle_day": cycle_day,
        "timezone": zone,
    }
    inputs: list[Input] = []
    at = start
    if draw(st.integers(0, 5)) == 0:  # events before the profile arrives
        kind = draw(st.sampled_from(["card.violation_reported", "card.suspend_requested"]))
        inputs.append(Input(at, b.event(kind, at)))
        at += timedelta(minutes=draw(st.integers(1, 3000)))
    inputs.append(Input(at, b.upsert(at, profile, expires)))
    for n in range(draw(st.integers(0, max_inputs))):
        if draw(st.integers(0, 6)) == 0:
            at = _boundary(at, zone, cycle_day)  # exactly at a cycle start
        else:
            at += timedelta(minutes=draw(st.integers(1, 20 * 1440)))
        inputs.append(Input(at, _input(draw, b, at, n, profile, expires)))
    until = at + timedelta(days=draw(st.integers(0, 150)))
    debt = draw(st.sampled_from([0, 0, 0, 300]))
    return Scenario(ICCID, tuple(inputs), until, customer_debt=debt)


def _input(
    draw: st.DrawFn,
    b: _Builder,
    at: datetime,
    n: int,
    profile: dict[str, Any],
    expires: datetime,
) -> CardEvent | Usage:
    kind = draw(
        st.sampled_from(
            ["usage"] * 6
            + ["card.recharged"] * 2
            + [
                "card.renewed",
                "card.suspend_requested",
                "card.resume_requested",
                "card.violation_reported",
                "card.violation_cleared",
                "card.upserted",
            ]
        )
    )
    if kind == "usage":
        late = timedelta(minutes=draw(st.sampled_from([0, 0, 0, 5, 90])))
        return Usage(f"r{n}", at - late, draw(st.integers(0, 1500)))
    if kind == "card.recharged":
        return b.event(kind, at, amount=draw(st.sampled_from([50, 100, 300, 1000])))
    if kind == "card.renewed":
        when = at + timedelta(days=draw(st.integers(-10, 400)))
        return b.event(kind, at, expires_at=stamp(when, draw(offsets)))
    if kind == "card.upserted":
        changed = {**profile, "plan": b.plan()}
        if draw(st.integers(0, 3)) == 0:
            changed["cycle_day"] = draw(st.integers(1, 28))
        return b.upsert(at, changed, expires)
    return b.event(kind, at)
