"""The customer-level blacklist (postpaid rule): a customer whose card was cancelled for debt
owes it before a new card gets service.

A decision about one card cannot write its customer's record atomically (on Redis Cluster it
lives in another slot), so the change travels through the card's outbox, which *is* written
atomically with the decision, as an entry for the reserved topic `LEDGER`; the outbox drain
applies it to the customer's hash instead of publishing it. Every entry is idempotent
(versioned, or named by its event id), so a drain that runs twice changes nothing.
"""

from __future__ import annotations

from typing import Any

import orjson

from simwatch_contracts import Reason

from ..domain.card import CardState

LEDGER = "@customer"
"""Outbox topic of blacklist entries ('@' is not allowed in Kafka topic names)."""


def ledger_entry(
    before: CardState, after: CardState, version: int, event_id: str | None
) -> tuple[bytes, bytes] | None:
    """The outbox key (customer id) and value of what this decision changes in its
    customer's blacklist, if anything."""
    profile = after.profile
    if profile is None:
        return None
    entries: list[dict[str, Any]] = []
    if after.blacklisted and (before.balance, before.blacklisted) != (after.balance, True):
        entries.append({"i": after.iccid, "v": version, "owed": max(0, -after.balance)})
    held_before = Reason.BLACKLISTED in before.reasons
    held_after = Reason.BLACKLISTED in after.reasons
    if held_after and not held_before:
        entries.append({"hold": after.iccid})
    paid = before.held_debt - after.held_debt
    if paid > 0 and event_id is not None:
        entries.append({"pay": event_id, "amount": paid})
    if held_before and not held_after:
        entries.append({"release": after.iccid})
    if not entries:
        return None
    return profile.customer_id.encode(), orjson.dumps(entries)
