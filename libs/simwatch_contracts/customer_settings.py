"""`customer.settings` (compacted, keyed by customer id): how each customer wants to hear."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from .common import MESSAGE_CONFIG, Timezone

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def _check_hhmm(value: str) -> str:
    if not _HHMM.match(value):
        raise ValueError("time of day must be HH:MM (24 h)")
    return value


def _check_e164(value: str) -> str:
    if not _E164.match(value):
        raise ValueError("phone number must be E.164, e.g. +8613800000000")
    return value


def webhook_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: `whsec_` (optional) dropped, the rest
    base64 with optional padding. Raises ValueError when it is not base64."""
    text = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error as exc:  # a subclass of ValueError; say what is wrong, not the secret
        raise ValueError("webhook secret is not valid base64") from exc


class Webhook(BaseModel):
    model_config = MESSAGE_CONFIG

    url: str = Field(min_length=8, max_length=2048)
    secret: str = Field(min_length=8, max_length=512, description="whsec_<base64> or raw secret")


class Sms(BaseModel):
    model_config = MESSAGE_CONFIG

    numbers: tuple[Annotated[str, AfterValidator(_check_e164)], ...] = Field(max_length=20)


class QuietHours(BaseModel):
    model_config = MESSAGE_CONFIG

    start: Annotated[str, AfterValidator(_check_hhmm)]
    end: Annotated[str, AfterValidator(_check_hhmm)]
    timezone: Timezone = "Asia/Shanghai"


class CustomerSettings(BaseModel):
    """The latest value per customer holds; absent channels are simply not used."""

    model_config = MESSAGE_CONFIG

    customer_id: str = Field(min_length=1, max_length=128)
    language: Literal["zh-CN", "en"] = "zh-CN"
    webhook: Webhook | None = None
    sms: Sms | None = None
    quiet_hours: QuietHours | None = None
