"""Builders of domain inputs for tests."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from simwatch_contracts import CardEvent, parse_card_event
from usage_monitor.domain.card import CardState

ICCID = "89860412345678901234"
NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai
CYCLE = date(2026, 11, 1)
_seq = iter(range(1, 10**9))


def event(kind: str, iccid: str = ICCID, **fields: Any) -> CardEvent:
    doc = {
        "type": kind,
        "event_id": f"evt-{next(_seq)}",
        "occurred_at": "2026-11-25T10:00:00+08:00",
        "iccid": iccid,
        **fields,
    }
    import json

    return parse_card_event(json.dumps(doc))


def upsert(
    quota: int | None = 1000,
    *,
    auto_suspend: bool = True,
    warn: tuple[int, ...] = (80, 90),
    iccid: str = ICCID,
    **fields: Any,
) -> CardEvent:
    plan = {
        "plan_id": "p1",
        "quota_bytes": quota,
        "monthly_fee": 100,
        "auto_suspend": auto_suspend,
        "warn_percents": list(warn),
    }
    base = {
        "customer_id": "acme",
        "billing": "prepaid",
        "balance": 1000,
        "expires_at": "2027-11-25T00:00:00+08:00",
        "plan": plan,
    }
    return event("card.upserted", iccid, **{**base, **fields})


def blank(iccid: str = ICCID) -> CardState:
    return CardState(iccid)
