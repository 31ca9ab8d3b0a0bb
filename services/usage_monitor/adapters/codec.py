"""Compact JSON encoding of CardState for Redis (short keys: millions of cards)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import orjson

from simwatch_contracts import Billing, Plan, Reason

from ..domain.card import CardState, Profile


def encode_state(state: CardState) -> bytes:
    doc: dict[str, Any] = {"b": state.balance, "n": state.transitions}
    if state.profile is not None:
        p = state.profile
        doc["p"] = {
            "cu": p.customer_id,
            "pl": p.plan.model_dump(mode="json", exclude_defaults=True),
            "bi": p.billing.value,
            "ex": p.expires_at.isoformat(),
            "cd": p.cycle_day,
            "tz": p.timezone,
        }
    if state.reasons:
        doc["r"] = sorted(state.reasons)
    if state.cancelled:
        doc["x"] = 1
    if state.cycle is not None:
        doc["c"] = state.cycle.isoformat()
    if state.fired:
        doc["f"] = sorted(state.fired)
    if state.milestones:
        doc["m"] = sorted(state.milestones)
    if state.owed:
        doc["o"] = state.owed
    if state.arrears_since is not None:
        doc["a"] = state.arrears_since.isoformat()
    if state.blacklisted:
        doc["bl"] = 1
    return orjson.dumps(doc)


def decode_state(iccid: str, raw: bytes | None) -> CardState:
    if not raw:
        return CardState(iccid)
    doc = orjson.loads(raw)
    profile = None
    if "p" in doc:
        p = doc["p"]
        profile = Profile(
            customer_id=p["cu"],
            plan=Plan.model_validate(p["pl"], strict=False),
            billing=Billing(p["bi"]),
            expires_at=datetime.fromisoformat(p["ex"]),
            cycle_day=p["cd"],
            timezone=p["tz"],
        )
    return CardState(
        iccid=iccid,
        profile=profile,
        balance=doc.get("b", 0),
        reasons=frozenset(Reason(r) for r in doc.get("r", ())),
        cancelled=bool(doc.get("x")),
        cycle=date.fromisoformat(doc["c"]) if "c" in doc else None,
        fired=frozenset(doc.get("f", ())),
        milestones=frozenset(doc.get("m", ())),
        transitions=doc.get("n", 0),
        owed=doc.get("o", 0),
        arrears_since=datetime.fromisoformat(doc["a"]) if "a" in doc else None,
        blacklisted=bool(doc.get("bl")),
    )
