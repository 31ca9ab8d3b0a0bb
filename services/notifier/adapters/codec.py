"""The storage format of a delivery (a flat hash of text fields) and of customer settings,
shared by both ledgers so that they read and write the same thing."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from pydantic import ValidationError

from simwatch_contracts import CustomerSettings

from ..domain.delivery import Channel, Delivery, DeliveryState, Progress

log = logging.getLogger(__name__)

Field = str | int | float


def fields_of(delivery: Delivery) -> dict[str, Field]:
    """The hash of a newly scheduled delivery (the format every version has written)."""
    return {
        "alert": delivery.alert_json,
        "customer": delivery.customer_id,
        "channel": delivery.channel.value,
        "target": delivery.target,
        "state": delivery.state.value,
        "attempts": delivery.attempts,
        "partition": delivery.partition,
        "offset": delivery.offset,
        "created": delivery.created,
    }


def progress_fields(progress: Progress) -> dict[str, Field]:
    """The fields an attempt changes; the others are kept."""
    out: dict[str, Field] = {"state": progress.state.value}
    if progress.attempts is not None:
        out["attempts"] = progress.attempts
    if progress.last is not None:
        out["last"] = progress.last
    if progress.note is not None:
        out["note"] = progress.note
    return out


def delivery_of(delivery_id: str, fields: Mapping[str, str]) -> Delivery | None:
    """The delivery a stored hash holds; None for an empty (expired) one."""
    if not fields:
        return None
    return Delivery(
        delivery_id=delivery_id,
        alert_json=fields["alert"],
        customer_id=fields["customer"],
        channel=Channel(fields["channel"]),
        target=fields["target"],
        state=DeliveryState(fields.get("state", DeliveryState.PENDING.value)),
        attempts=int(fields.get("attempts", "0")),
        partition=int(fields.get("partition", "0")),
        offset=int(fields.get("offset", "0")),
        created=float(fields.get("created", "0")),
    )


def customer_of(customer_id: str, raw: bytes | str | None) -> CustomerSettings | None:
    """Stored settings; None when absent, or stored by an earlier version and invalid now
    (e.g. a short secret): not used until the customer sends new ones."""
    if not raw:
        return None
    try:
        return CustomerSettings.model_validate_json(raw)
    except ValidationError as exc:  # validated on arrival since; the stored value predates
        log.warning(
            "stored settings of customer %s are invalid now (%d errors): not used",
            customer_id,
            exc.error_count(),
        )
        return None
