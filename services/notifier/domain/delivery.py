"""Which deliveries an alert makes: one per channel target the customer configured."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from simwatch_contracts import CardAlert, CustomerSettings
from simwatch_contracts.ids import stable_id


class Channel(StrEnum):
    WEBHOOK = "webhook"
    SMS = "sms"


@dataclass(frozen=True, slots=True)
class Planned:
    delivery_id: str
    channel: Channel
    target: str
    """`webhook` for the customer's (current) webhook; the phone number for SMS."""


def plan(alert: CardAlert, settings: CustomerSettings | None, sms_enabled: bool) -> list[Planned]:
    """Deliveries of `alert`; the id is deterministic, so a redelivered alert plans the same."""
    if settings is None:
        return []
    out = []
    if settings.webhook is not None:
        out.append(_planned(alert, Channel.WEBHOOK, "webhook"))
    if settings.sms is not None and sms_enabled:
        out += [_planned(alert, Channel.SMS, number) for number in settings.sms.numbers]
    return out


def _planned(alert: CardAlert, channel: Channel, target: str) -> Planned:
    return Planned(stable_id("dlv", alert.alert_id, channel.value, target), channel, target)
