"""Compact encoding of CardState for Redis: what is per card, and what many cards share.

A fleet has millions of cards but few distinct *templates* (customer, plan, billing, billing
calendar): a customer's thousands of cards share one. A template is stored once, immutable,
under its fingerprint; a card's own state keeps the fingerprint and what is truly its own
(balance, expiry, reasons, ...), small enough for Redis's compact listpack encoding
(`hash-max-listpack-value` 64 bytes by default).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any

import orjson

from simwatch_contracts import Billing, CardCommand, CommandType, Plan, Reason

from ..domain.card import CardState, Profile
from ..domain.cycles import next_cycle, zone
from ..domain.enforcement import AckStatus, Pending
from ..domain.pools import Pool, PoolState


@dataclass(frozen=True, slots=True)
class Template:
    """The shared part of a profile."""

    customer_id: str
    plan: Plan
    billing: Billing
    cycle_day: int
    timezone: str

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "cu": self.customer_id,
                "pl": self.plan.model_dump(mode="json", exclude_defaults=True),
                "bi": self.billing.value,
                "cd": self.cycle_day,
                "tz": self.timezone,
            },
            option=orjson.OPT_SORT_KEYS,
        )

    @property
    def fingerprint(self) -> str:
        return _fingerprint(self)

    @classmethod
    def decode(cls, raw: bytes) -> Template:
        doc = orjson.loads(raw)
        return cls(
            customer_id=doc["cu"],
            plan=Plan.model_validate(doc["pl"], strict=False),
            billing=Billing(doc["bi"]),
            cycle_day=doc["cd"],
            timezone=doc["tz"],
        )

    @classmethod
    def of(cls, p: Profile) -> Template:
        return cls(p.customer_id, p.plan, p.billing, p.cycle_day, p.timezone)


@lru_cache(maxsize=4096)
def _fingerprint(template: Template) -> str:
    # Asked at every commit; a fleet has few templates (a template is hashable: all frozen).
    # 72 bits in base64url, 12 characters: every card's state carries it, and the hex form
    # (18) cost 6 bytes a card. A state written with a hex fingerprint still reads (its
    # template stays stored under it) and takes the new one at its next commit.
    digest = hashlib.blake2b(template.encode(), digest_size=9).digest()
    return base64.urlsafe_b64encode(digest).decode()


@lru_cache(maxsize=1 << 16)
def _profile(template: Template, expires_at: int) -> Profile:
    # Immutable, so shared by every card of a template and term (a fleet has few of both).
    return Profile(
        customer_id=template.customer_id,
        plan=template.plan,
        billing=template.billing,
        expires_at=datetime.fromtimestamp(expires_at, zone(template.timezone)),
        cycle_day=template.cycle_day,
        timezone=template.timezone,
    )


def encode_state(state: CardState) -> tuple[bytes, Template | None]:
    """The card's own document, and the template it refers to (to be stored once). Fields
    at their default are left out: most cards carry only a few."""
    template = None
    doc: dict[str, Any] = {}
    if state.profile is not None:
        template = Template.of(state.profile)
        doc["t"] = template.fingerprint
        doc["e"] = int(state.profile.expires_at.timestamp())
    fields: dict[str, Any] = {
        "b": state.balance,
        "n": state.transitions,
        "r": sorted(state.reasons),
        "x": int(state.cancelled),
        "c": state.cycle.strftime("%Y%m%d") if state.cycle is not None else None,
        "f": sorted(state.fired),
        "m": _encode_milestones(state.milestones, state.cycle),
        "o": state.owed,
        "a": int(state.arrears_since.timestamp()) if state.arrears_since is not None else None,
        "bl": int(state.blacklisted),
        "bs": [list(b) for b in state.bills],
        "ra": state.rearm,
        "an": state.announce.value if state.announce is not None else None,
        "hd": state.held_debt,
        "rs": [[r.value, t] for r, t in state.since],
        "os": state.overshoot_from,
        "ps": (
            [state.pool_stop[0], state.pool_stop[1].strftime("%Y%m%d")]
            if state.pool_stop is not None
            else None
        ),
    }
    doc.update((k, v) for k, v in fields.items() if v or (k in ("a", "os") and v is not None))
    if state.fee_month != _month(state.cycle):  # the usual case, the cycle's own month: left out
        doc["fm"] = state.fee_month
    return orjson.dumps(doc), template


def template_of(raw: bytes | str | None) -> str | None:
    """The template fingerprint a stored state refers to, if any."""
    if not raw:
        return None
    fp = orjson.loads(raw).get("t")
    return str(fp) if fp is not None else None


def encode_pending(state: CardState) -> bytes | None:
    """The card's tracked command, stored apart from its state (see `Keys.pending`)."""
    return orjson.dumps(_encode_pending(state.pending)) if state.pending is not None else None


def decode_state(
    iccid: str,
    raw: bytes | str | None,
    templates: dict[str, Template],
    pending: bytes | str | None = None,
) -> CardState:
    if not raw:
        return CardState(iccid)
    doc = orjson.loads(raw)
    profile = None
    if "p" in doc:  # the first format embedded the whole profile in each card
        profile = _legacy_profile(doc)
    elif "t" in doc:
        profile = _profile(templates[doc["t"]], doc["e"])
    arrears = doc.get("a")
    cycle = _cycle(doc["c"]) if "c" in doc else None
    return CardState(
        iccid=iccid,
        profile=profile,
        balance=doc.get("b", 0),
        reasons=frozenset(Reason(r) for r in doc.get("r", ())),
        cancelled=bool(doc.get("x")),
        cycle=cycle,
        fired=frozenset(doc.get("f", ())),
        milestones=_decode_milestones(doc.get("m", ()), cycle),
        transitions=doc.get("n", 0),
        owed=doc.get("o", 0),
        arrears_since=(
            datetime.fromtimestamp(arrears, zone(profile.timezone if profile else "UTC"))
            if arrears is not None
            else None
        ),
        blacklisted=bool(doc.get("bl")),
        bills=tuple((int(due), int(amount)) for due, amount in doc.get("bs", ())),
        fee_month=doc.get("fm", _month(cycle)),
        rearm=doc.get("ra", 0),
        announce=Reason(doc["an"]) if "an" in doc else None,
        held_debt=doc.get("hd", 0),
        since=tuple((Reason(r), int(t)) for r, t in doc.get("rs", ())),
        pending=_decode_pending(iccid, orjson.loads(pending)) if pending else None,
        overshoot_from=doc.get("os"),
        pool_stop=(doc["ps"][0], _cycle(doc["ps"][1])) if "ps" in doc else None,
    )


def _encode_pending(p: Pending) -> list[Any]:
    """Only cards whose latest command is unconfirmed carry this (a few percent at most)."""
    c = p.command
    return [
        c.command_id,
        c.type.value,
        c.trigger.value,
        [r.value for r in c.reasons],
        c.cycle.strftime("%Y%m%d"),
        c.issued_at.isoformat(),
        p.attempt,
        p.sent,
        p.retry_at,
        p.origin_ms,
        p.status.value,
        p.detail,
    ]


def _decode_pending(iccid: str, raw: list[Any]) -> Pending:
    cid, kind, trigger, reasons, cycle, issued, attempt, sent, retry, origin, status, why = raw
    command = CardCommand(
        command_id=cid,
        type=CommandType(kind),
        iccid=iccid,
        trigger=Reason(trigger),
        reasons=tuple(Reason(r) for r in reasons),
        cycle=_cycle(cycle),
        issued_at=datetime.fromisoformat(issued),
    )
    return Pending(command, attempt, sent, retry, origin, AckStatus(status), why)


def _month(cycle: date | None) -> int:
    return cycle.year * 100 + cycle.month if cycle is not None else 0


def _cycle(raw: str) -> date:
    if "-" in raw:  # the first format: ISO date
        return date.fromisoformat(raw)
    return date(int(raw[:4]), int(raw[4:6]), int(raw[6:]))


# The balance warning of the upcoming rollover, the one milestone most cards carry in the
# days before the 1st: "b@2026-12-01" in full, 11 bytes more per card than "b", enough to
# move the card's hash to the next allocation size (32 bytes). A worker of an earlier
# version reads "b" as a milestone of its own name, so during a rolling upgrade or a
# rollback in those days a card's balance warning may be sent once more (docs/operations.md).
# Any other milestone, or this one when the state has no cycle, is stored as the domain
# names it; one that would read as the short form ("b", or anything starting "=": no domain
# key does) is stored behind "=".
_NEXT_BALANCE_WARNING = "b"
_LITERAL = "="


def _encode_milestones(milestones: frozenset[str], cycle: date | None) -> list[str]:
    if not milestones:
        return []
    upcoming = f"b@{next_cycle(cycle).isoformat()}" if cycle is not None else None
    return sorted(
        _NEXT_BALANCE_WARNING
        if m == upcoming
        else _LITERAL + m
        if m == _NEXT_BALANCE_WARNING or m.startswith(_LITERAL)
        else m
        for m in milestones
    )


def _decode_milestones(stored: list[str], cycle: date | None) -> frozenset[str]:
    upcoming = f"b@{next_cycle(cycle).isoformat()}" if cycle is not None else None
    out = set()
    for m in stored:
        if m == _NEXT_BALANCE_WARNING and upcoming is not None:
            out.add(upcoming)
        elif m.startswith(_LITERAL):
            out.add(m[1:])
        else:
            out.add(m)
    return frozenset(out)


def _legacy_profile(doc: dict[str, Any]) -> Profile:
    """Cards written before profile templates (still read; rewritten in the new format by
    their next commit)."""
    p = doc["p"]
    return Profile(
        customer_id=p["cu"],
        plan=Plan.model_validate(p["pl"], strict=False),
        billing=Billing(p["bi"]),
        expires_at=datetime.fromisoformat(p["ex"]),
        cycle_day=p["cd"],
        timezone=p["tz"],
    )


def pool_of(state: CardState) -> str | None:
    """The pool a card counts into: its plan's, unless the card is cancelled."""
    if state.profile is None or state.cancelled:
        return None
    return state.profile.plan.pool_id


def encode_pool(pool: Pool) -> bytes:
    return orjson.dumps(
        {
            "cu": pool.customer_id,
            "q": pool.quota_bytes,
            "w": list(pool.warn_percents),
            "sa": pool.suspend_all,
            "cd": pool.cycle_day,
            "tz": pool.timezone,
            "id": pool.pool_id,
        }
    )


def decode_pool(raw: bytes | str) -> Pool:
    d = orjson.loads(raw)
    return Pool(d["id"], d["cu"], d["q"], tuple(d["w"]), d["sa"], d["cd"], d["tz"])


def encode_pool_state(state: PoolState) -> bytes:
    return orjson.dumps(
        {
            "c": state.cycle.strftime("%Y%m%d") if state.cycle else None,
            "f": sorted(state.fired),
            "x": state.exhausted,
            "ra": state.rearm,
        }
    )


def decode_pool_state(raw: bytes | str | None) -> PoolState:
    if not raw:
        return PoolState()
    d = orjson.loads(raw)
    return PoolState(
        _cycle(d["c"]) if d.get("c") else None, frozenset(d["f"]), bool(d["x"]), d.get("ra", 0)
    )
