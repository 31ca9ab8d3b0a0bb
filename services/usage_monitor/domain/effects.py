"""Builders of the messages a decision publishes, with deterministic ids."""

from __future__ import annotations

from datetime import date, datetime

from simwatch_contracts import AlertType, CardAlert, CardCommand, CommandType, Reason
from simwatch_contracts.ids import stable_id

from .card import CardState, ordered
from .cycles import zone


def alert(
    state: CardState, kind: AlertType, at: datetime, step: str, **fields: object
) -> CardAlert:
    """One alert; (card, cycle, type, step) names it, so it is decided at most once."""
    profile, cycle = state.profile, state.cycle
    assert profile is not None, "alerts need a customer"
    assert cycle is not None, "alerts belong to a cycle"
    return CardAlert.model_validate(
        {
            "alert_id": stable_id("alr", state.iccid, cycle, kind.value, step),
            "type": kind,
            "iccid": state.iccid,
            "customer_id": profile.customer_id,
            "cycle": cycle,
            "occurred_at": at.astimezone(zone(profile.timezone)),
            **fields,
        },
        strict=False,
    )


def command(
    state: CardState, kind: CommandType, trigger: Reason, at: datetime, cycle: date, tz: str
) -> CardCommand:
    """A transition; `state.transitions` has already been advanced for it. A command needs
    only the ICCID: a card without a profile is named in the default calendar (`cycle`,
    `tz`)."""
    return CardCommand(
        command_id=stable_id("cmd", state.iccid, state.transitions, kind.value, trigger.value),
        type=kind,
        iccid=state.iccid,
        trigger=trigger,
        reasons=ordered(state.reasons),
        cycle=cycle,
        issued_at=at.astimezone(zone(tz)),
    )
