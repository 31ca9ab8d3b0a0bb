"""A card's recent decisions as explain shows them (`history`): one compact line per
decision in a capped Redis list, written in the same atomic commit as the decision itself.
The full record of each is on `card.decisions`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from simwatch_contracts import CardDecision

from ..domain.enforcement import Note

SEP = "|"


def entry(d: CardDecision) -> str:
    """``<epoch s>|<kind>|<type>|<trigger>|<id>|<amount>`` (empty fields stay empty)."""
    trigger = d.trigger.value if d.trigger else ""
    amount = "" if d.amount is None else str(d.amount)
    parts = (str(int(d.at.timestamp())), d.kind.value, d.type, trigger, d.ref or "", amount)
    return SEP.join(parts)


def note_entry(n: Note) -> str:
    """What the loop with the network did: ``<epoch s>|retry|<type>||<id>||attempt=N``,
    ``…|unconfirmed|<type>||<id>||attempt=N``, ``…|result|<status>||<id>||<network state>``."""
    extra = (
        f"network_state={n.network_state.value}"
        if n.kind == "result" and n.network_state is not None
        else f"attempt={n.attempt}"
    )
    if n.kind == "result" and n.outcome is not None:
        extra += f";outcome={n.outcome.value}"
    type_ = n.status.value if n.kind == "result" and n.status else (n.type or "")
    return SEP.join((str(int(n.at.timestamp())), n.kind, type_, "", n.command_id, "", extra))


def item(line: str, tz: Any = UTC) -> dict[str, Any]:
    """One history entry of explain's body, from its stored line."""
    at, kind, type_, trigger, ref, amount, *rest = line.split(SEP)
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
    for pair in rest[0].split(";") if rest and rest[0] else ():
        name, _, value = pair.partition("=")
        out[name] = int(value) if value.isdigit() else value
    return out
