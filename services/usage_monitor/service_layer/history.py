"""A card's recent decisions as explain shows them (`history`): one compact line per
decision in a capped Redis list, written in the same atomic commit as the decision itself.
The full record of each is on `card.decisions`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from simwatch_contracts import CardDecision

SEP = "|"


def entry(d: CardDecision) -> str:
    """``<epoch s>|<kind>|<type>|<trigger>|<id>|<amount>`` (empty fields stay empty)."""
    trigger = d.trigger.value if d.trigger else ""
    amount = "" if d.amount is None else str(d.amount)
    parts = (str(int(d.at.timestamp())), d.kind.value, d.type, trigger, d.ref or "", amount)
    return SEP.join(parts)


def item(line: str, tz: Any = UTC) -> dict[str, Any]:
    """One history entry of explain's body, from its stored line."""
    at, kind, type_, trigger, ref, amount = line.split(SEP)
    out: dict[str, Any] = {
        "at": datetime.fromtimestamp(int(at), tz).isoformat(),
        "kind": kind,
        "type": type_,
    }
    if trigger:
        out["trigger"] = trigger
    if ref:
        out["id"] = ref
    if amount:
        out["amount"] = int(amount)
    return out
