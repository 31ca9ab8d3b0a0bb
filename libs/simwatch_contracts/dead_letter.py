"""`usage.records.dlq`: a message that could not be processed, kept with the reason."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

from .common import MESSAGE_CONFIG


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
        """Build a dead letter from the raw Kafka message, keeping its bytes losslessly."""
        original, encoding = _as_text(value or b"")
        return cls(
            original=original,
            encoding=encoding,
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
