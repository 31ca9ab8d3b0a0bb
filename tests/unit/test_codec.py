"""The Redis encoding of a card round-trips every state the lifecycle can produce."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from simwatch_contracts import Billing, Plan, Reason
from usage_monitor.adapters.codec import Template, decode_state, encode_state
from usage_monitor.domain.card import CardState, Profile

plans = st.builds(
    Plan,
    plan_id=st.text("abc-123", min_size=1, max_size=12),
    quota_bytes=st.none() | st.integers(0, 2**50),
    monthly_fee=st.integers(0, 10**6),
    auto_suspend=st.booleans(),
    warn_percents=st.lists(st.integers(1, 100), max_size=3).map(lambda v: tuple(sorted(set(v)))),
    credit_limit=st.none() | st.integers(0, 10**6),
    auto_restore_on_recharge=st.booleans(),
)
profiles = st.builds(
    Profile,
    customer_id=st.text("acmexyz", min_size=1, max_size=10),
    plan=plans,
    billing=st.sampled_from(Billing),
    expires_at=st.integers(0, 4 * 10**9).map(lambda s: datetime.fromtimestamp(s, UTC)),
    cycle_day=st.integers(1, 28),
    timezone=st.sampled_from(["Asia/Shanghai", "UTC", "America/New_York"]),
)
states = st.builds(
    CardState,
    iccid=st.just("89860412345678901234"),
    profile=st.none() | profiles,
    balance=st.integers(-(10**9), 10**9),
    reasons=st.frozensets(st.sampled_from(Reason)),
    cancelled=st.booleans(),
    cycle=st.none() | st.dates(date(2000, 1, 1), date(2100, 1, 1)).map(lambda d: d.replace(day=1)),
    fired=st.frozensets(st.sampled_from(["t80", "t90", "x100"])),
    milestones=st.frozensets(
        st.text("abcwx@=0123456789-", min_size=1, max_size=12)
        | st.dates(date(2000, 1, 1), date(2100, 1, 1)).map(lambda d: f"b@{d:%Y-%m-01}"),
        max_size=4,
    ),
    transitions=st.integers(0, 1000),
    owed=st.integers(0, 10**6),
    arrears_since=st.none()
    | st.integers(0, 4 * 10**9).map(lambda s: datetime.fromtimestamp(s, UTC)),
    blacklisted=st.booleans(),
    bills=st.lists(st.tuples(st.integers(0, 4 * 10**9), st.integers(1, 10**6)), max_size=2).map(
        tuple
    ),
    fee_month=st.integers(0, 210012),
    rearm=st.integers(0, 50),
    announce=st.none() | st.sampled_from(Reason),
    held_debt=st.integers(0, 10**6),
    since=st.lists(st.tuples(st.sampled_from(Reason), st.integers(0, 4 * 10**9)), max_size=3).map(
        tuple
    ),
)


@given(states)
def test_every_state_round_trips(state: CardState) -> None:
    raw, template = encode_state(state)
    templates = {template.fingerprint: Template.decode(template.encode())} if template else {}
    back = decode_state(state.iccid, raw, templates)
    assert back == state  # instants compare equal across timezones


def test_a_typical_card_fits_redis_listpack_values() -> None:
    plan = Plan(plan_id="iot-1g", quota_bytes=2**30, monthly_fee=1000, auto_suspend=True)
    profile = Profile("acme", plan, Billing.PREPAID, datetime(2027, 11, 25, tzinfo=UTC))
    state = CardState(
        "89860412345678901234",
        profile,
        balance=5000,
        cycle=date(2026, 11, 1),
        fired=frozenset({"t80"}),
    )
    raw, template = encode_state(state)
    # Under hash-max-listpack-value 256 (deploy/redis.conf): the card's hash stays compact.
    assert len(raw) <= 96, raw
    assert template is not None and len(template.fingerprint) == 12
    shifted = CardState(
        state.iccid, Profile("acme", plan, Billing.PREPAID, datetime(2028, 1, 1, tzinfo=UTC))
    )
    assert encode_state(shifted)[1] == template  # expiry is per card, not per template


def test_cards_written_in_the_first_format_are_still_read() -> None:
    legacy = (
        b'{"b":0,"n":1,"p":{"cu":"acme","pl":{"plan_id":"p","quota_bytes":1000,"monthly_fee":100,'
        b'"auto_suspend":true},"bi":"prepaid","ex":"2027-11-25T10:00:00+08:00","cd":1,'
        b'"tz":"Asia/Shanghai"},"r":["over_quota"],"c":"2026-11-01","f":["t80","t90","x100"]}'
    )
    state = decode_state("89860412345678901234", legacy, {})
    assert state.profile is not None and state.profile.plan.quota_bytes == 1000
    assert state.cycle == date(2026, 11, 1) and state.reasons == {Reason.OVER_QUOTA}
    raw, template = encode_state(state)
    assert template is not None and b'"t":' in raw  # rewritten in the new format


def _prepaid(expires: datetime, **fields: Any) -> CardState:
    """A prepaid card in the November 2026 cycle (what the format tests below store)."""
    plan = Plan(plan_id="p", quota_bytes=100, monthly_fee=10, auto_suspend=True)
    profile = Profile("acme", plan, Billing.PREPAID, expires)
    return CardState("89860412345678901234", profile, cycle=date(2026, 11, 1), **fields)


def test_a_state_written_with_the_older_hex_fingerprint_still_reads() -> None:
    """Fingerprints were 18 hex characters before 2026-11-29 (now 12, base64url): a card
    stored then refers to its template by the old one, still stored under it."""
    state = _prepaid(expires=datetime(2027, 1, 1, tzinfo=UTC), balance=500)
    raw, template = encode_state(state)
    assert template is not None
    old = "d778ac17fb0205c4a6"
    doc = orjson.loads(raw)
    doc["t"] = old
    legacy = orjson.dumps(doc)
    assert decode_state(state.iccid, legacy, {old: template}) == state
    assert encode_state(decode_state(state.iccid, legacy, {old: template}))[0] == raw


def test_the_upcoming_balance_warning_is_stored_short() -> None:
    """The card the bench measures in the days before the 1st: the milestone "b@2026-12-01"
    is stored as "b"; states written with the long form (before 2026-11-29) still read, and
    any other milestone stays as the domain names it."""
    state = _prepaid(
        expires=datetime(2099, 1, 1, tzinfo=UTC),
        balance=10_000,
        milestones=frozenset({"b@2026-12-01", "b@2026-11-01", "x@123"}),
    )
    raw, template = encode_state(state)
    assert template is not None
    doc = orjson.loads(raw)
    assert doc["c"] == "20261101" and doc["m"] == ["b", "b@2026-11-01", "x@123"]
    templates = {template.fingerprint: template}
    assert decode_state(state.iccid, raw, templates) == state
    doc.update(m=["b@2026-11-01", "b@2026-12-01", "x@123"])  # the long form
    assert decode_state(state.iccid, orjson.dumps(doc), templates) == state
