"""Dead letters: malformed input is kept on the dead-letter topic with the reason, and the
stream goes on. Collected per batch and published before the batch's offsets are committed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from simwatch_contracts import DeadLetter

from .adapters.kafka_publisher import KafkaPublisher
from .metrics import Metrics


class RawMessage(Protocol):
    """The parts of a Kafka message the pipeline reads: aiokafka's ConsumerRecord and faust's
    Message both fit, so neither is copied."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class Message:
    """A RawMessage built by hand (tests, tools)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def oversized(size: int, limit: int) -> str:
    """The error of a message too large to be a usage record or card event: not parsed at all
    (a megabyte of JSON costs milliseconds of the hot path, and is no record we know)."""
    return f"message is {size} bytes; the limit is {limit} (USAGE_MONITOR_MAX_MESSAGE_BYTES)"


class DeadLetters:
    def __init__(
        self,
        publisher: KafkaPublisher,
        topic: str,
        metrics: Metrics,
        clock: Callable[[], datetime],
        service: str = "usage_monitor",
    ) -> None:
        self.publisher = publisher
        self.topic = topic
        self.metrics = metrics
        self.clock = clock
        self.service = service
        self._pending: list[tuple[bytes | None, bytes, str, str]] = []

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, msg: RawMessage, error: str, reason: str) -> None:
        """Queue `msg` with a one-line `error`; `reason` is a small fixed label for metrics."""
        letter = DeadLetter.of(
            value=msg.value,
            key=msg.key,
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            error=error,
            failed_at=self.clock(),
            service=self.service,
        )
        self._pending.append((msg.key, letter.model_dump_json().encode(), msg.topic, reason))

    def reset(self) -> None:
        """Forget what is queued: the batch is about to be parsed again after a failure."""
        self._pending = []

    async def flush(self) -> int:
        """Publish what is queued (acks=all). Kept queued if publishing fails, to retry."""
        batch = self._pending
        if not batch:
            return 0
        await self.publisher.publish([(self.topic, key, value) for key, value, _, _ in batch])
        self._pending = []
        for _, _, source, reason in batch:
            self.metrics.dead_letters.labels(source, reason).inc()
        return len(batch)
