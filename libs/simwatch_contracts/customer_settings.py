"""`customer.settings` (compacted, keyed by customer id): how each customer wants to hear."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, Field, model_validator

from .common import MESSAGE_CONFIG, Timezone

# Always fullmatch (`$` also matches before a trailing newline), and ASCII digits only
# (`\d` also matches Arabic-Indic and full-width digits).
_HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_URL_CHARS = re.compile(r"[\x21-\x7e]+")
MIN_SECRET_BYTES = 24
"""A webhook key shorter than this (after base64 decoding) is refused: guessable."""


def _check_hhmm(value: str) -> str:
    if not _HHMM.fullmatch(value):
        raise ValueError("time of day must be HH:MM (24 h)")
    return value


def _check_e164(value: str) -> str:
    if not _E164.fullmatch(value):
        raise ValueError("phone number must be E.164, e.g. +8613800000000")
    return value


def _check_url(value: str) -> str:
    """An absolute http(s) URL with a host and a valid port; whether the notifier may call
    it (https, public address) is its own check at delivery time."""
    if not _URL_CHARS.fullmatch(value):
        raise ValueError("URL must be printable ASCII without spaces (IDNA-encode the host)")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:  # a port out of range or not a number, a broken [IPv6]
        raise ValueError(f"invalid URL: {exc}") from exc
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("URL must be https://host/... (http only for local tests)")
    if port == 0:
        raise ValueError("invalid URL: port 0")
    return value


def webhook_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: `whsec_` (optional) dropped, the rest
    base64 with optional padding. Raises ValueError when it is not base64."""
    text = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error as exc:  # a subclass of ValueError; say what is wrong, not the secret
        raise ValueError("webhook secret is not valid base64") from exc


def _check_secret(value: str) -> str:
    if len(webhook_key(value)) < MIN_SECRET_BYTES:
        raise ValueError(f"webhook secret must decode to at least {MIN_SECRET_BYTES} bytes")
    return value


WebhookSecret = Annotated[
    str,
    Field(min_length=8, max_length=512, description="whsec_<base64>, `whsec_` optional"),
    AfterValidator(_check_secret),
]


class Webhook(BaseModel):
    """Standard Webhooks: every secret given signs (rotation: add the new secret, let the
    receiver switch, then drop the old one); at least one is required."""

    model_config = MESSAGE_CONFIG

    url: Annotated[str, Field(min_length=8, max_length=2048), AfterValidator(_check_url)]
    secret: WebhookSecret | None = None
    secrets: tuple[WebhookSecret, ...] = Field(
        (), max_length=5, description="more active secrets, e.g. during a rotation"
    )

    @model_validator(mode="after")
    def _some_secret(self) -> Webhook:
        if self.secret is None and not self.secrets:
            raise ValueError("webhook needs a secret (or secrets)")
        return self

    @property
    def signing_secrets(self) -> tuple[str, ...]:
        """Every active secret, `secret` first, each once."""
        given = ((self.secret,) if self.secret is not None else ()) + self.secrets
        return tuple(dict.fromkeys(given))


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
