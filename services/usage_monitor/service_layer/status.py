"""What `GET /cards/{iccid}` shows: a pure view of a card snapshot at a moment."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from ..domain.card import CardState, ordered
from ..domain.lifecycle import current_cycle
from ..domain.policy import Policy
from ..domain.pools import TOP_MEMBERS
from ..domain.steps import schedule
from ..ports import CardStore, Snapshot


def card_status(snap: Snapshot, now: datetime, policy: Policy) -> dict[str, Any] | None:
    """The card's state per the contract, or None for a card we hold no profile of."""
    state = snap.state
    profile = state.profile
    if profile is None:
        return None
    cycle = current_cycle(profile, now)
    if state.cycle is not None and state.cycle > cycle:
        cycle = state.cycle
    used = snap.usage.get(cycle, 0)
    quota = profile.plan.quota_bytes
    percent = round(used * 100 / quota, 2) if quota else None
    steps = schedule(state, policy)
    upcoming = {"kind": steps[0].kind.value, "at": steps[0].at.isoformat()} if steps else None
    return {
        "iccid": state.iccid,
        "state": state.status.value,
        "reasons": list(ordered(state.reasons)),
        "customer_id": profile.customer_id,
        "plan_id": profile.plan.plan_id,
        "cycle": cycle.isoformat(),
        "used_bytes": used,
        "quota_bytes": quota,
        "percent": percent,
        "auto_suspend": profile.plan.auto_suspend,
        "expires_at": profile.expires_at.isoformat(),
        "balance": state.balance,
        "owed": state.owed,
        "blacklisted": state.blacklisted,
        "held_debt": state.held_debt,
        "next_scheduled": upcoming,
        "billing": profile.billing.value,
        "timezone": profile.timezone,
        "cycle_day": profile.cycle_day,
        "command": command_view(state),
        "overshoot_bytes": overshoot(state, snap.usage),
    }


def command_view(state: CardState) -> dict[str, Any] | None:
    """The card's latest command while the network has not confirmed it: pending (with
    its next attempt), unconfirmed (every attempt unanswered) or rejected."""
    p = state.pending
    if p is None:
        return None
    c = p.command
    return {
        "command_id": c.command_id,
        "type": c.type.value,
        "trigger": c.trigger.value,
        "status": p.status.value,
        "attempt": p.attempt,
        "issued_at": c.issued_at.isoformat(),
        "last_sent_at": datetime.fromtimestamp(p.sent, c.issued_at.tzinfo).isoformat(),
        "next_attempt_at": (
            datetime.fromtimestamp(p.retry_at, c.issued_at.tzinfo).isoformat()
            if p.retry_at is not None
            else None
        ),
        "detail": p.detail or None,
    }


def overshoot(state: CardState, usage: Mapping[date, int]) -> int | None:
    """Bytes counted in the cycle after its over-quota suspension was decided (None: the
    card is not suspended over quota)."""
    if state.overshoot_from is None or state.cycle is None:
        return None
    return max(0, usage.get(state.cycle, 0) - state.overshoot_from)


def customer_status(customer_id: str, fields: dict[bytes, bytes]) -> dict[str, Any]:
    """`GET /customers/{id}`: the customer's blacklist (``lua/customer.lua`` keeps it):
    what each card cancelled for debt owes, the payments made through held cards, the
    cards held, and the debt still owed (blacklisted while it is above zero)."""
    owed: dict[str, int] = {}
    paid, held = 0, []
    for raw_field, raw_value in fields.items():
        field, value = raw_field.decode(), raw_value.decode()
        if field.startswith("c:"):
            owed[field[2:]] = int(value.split(":")[1])
        elif field.startswith("p:"):
            paid += int(value)
        elif field.startswith("h:"):
            held.append(field[2:])
    debt = max(0, sum(owed.values()) - paid)
    return {
        "customer_id": customer_id,
        "blacklisted": debt > 0,
        "debt": debt,
        "cancelled_cards": {k: v for k, v in sorted(owed.items()) if v},
        "paid_through_held_cards": paid,
        "held_cards": sorted(held),
    }


async def pool_status(store: CardStore, pool_id: str, now: datetime) -> dict[str, Any] | None:
    """`GET /pools/{pool_id}`: the pool's usage in its current cycle, its members and its
    biggest ones, and whether it is exhausted (None: no definition received)."""
    record = (await store.pool_load([pool_id]))[pool_id]
    pool = record.definition
    if pool is None:
        return None
    cycle = pool.cycle(now)
    used = (await store.pool_used([(pool_id, cycle)]))[(pool_id, cycle)]
    top = await store.pool_top(pool_id, cycle, TOP_MEMBERS)
    exhausted = record.state.cycle == cycle and record.state.exhausted
    return {
        "pool_id": pool_id,
        "customer_id": pool.customer_id,
        "cycle": cycle.isoformat(),
        "used_bytes": used,
        "quota_bytes": pool.quota_bytes,
        "percent": round(used * 100 / pool.quota_bytes, 2) if pool.quota_bytes else None,
        "members": await store.pool_member_count(pool_id),
        "state": "exhausted" if exhausted else "active",
        "on_exhausted": "suspend_all" if pool.suspend_all else "alert_only",
        "top_members": [{"iccid": i, "used_bytes": b} for i, b in top],
    }
