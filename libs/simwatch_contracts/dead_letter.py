"""`usage.records.dlq`: a message that could not be processed, kept with the reason."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

from .common import MESSAGE_CONFIG

ORIGINAL_MAX_BYTES = 256 * 1024
"""A dead letter keeps at most this much of the original value, so that it always fits in a
Kafka message (brokers refuse more than 1 MiB by default) even when the input was huge; the
whole original stays on its source topic, at `partition` and `offset`, while retained."""


class DeadLetter(BaseModel):
    model_config = MESSAGE_CONFIG

    original: str = Field(description="the original value as text, or base64 when not UTF-8")
    encoding: Literal["utf-8", "base64"]
    key: str | None = None
    source_topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    error: str = Field(description="why it was rejected, in words")
    failed_at: AwareDatetime
    service: str | None = None
    truncated: bool = Field(False, description="`original` holds only the first bytes")
    original_bytes: int | None = Field(None, ge=0, description="size of the whole original")

    @classmethod
    def of(
        cls,
        *,
        value: bytes | None,
        key: bytes | None,
        topic: str,
        partition: int,
        offset: int,
        error: str,
        failed_at: datetime,
        service: str,
    ) -> DeadLetter:
        """Build a dead letter from the raw Kafka message, keeping its bytes losslessly (up to
        `ORIGINAL_MAX_BYTES`)."""
        raw = value or b""
        original, encoding = _as_text(raw[:ORIGINAL_MAX_BYTES])
        return cls(
            original=original,
            encoding=encoding,
            truncated=len(raw) > ORIGINAL_MAX_BYTES,
            original_bytes=len(raw),
            key=_as_text(key)[0] if key is not None else None,
            source_topic=topic,
            partition=partition,
            offset=offset,
            error=error,
            failed_at=failed_at,
            service=service,
        )


def _as_text(raw: bytes) -> tuple[str, Literal["utf-8", "base64"]]:
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:  # not text: keep the exact bytes in base64
        return base64.b64encode(raw).decode("ascii"), "base64"
