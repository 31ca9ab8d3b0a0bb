"""Dead letters: malformed input is kept on the dead-letter topic with the reason, and the
stream goes on. One builder of the dead-letter record for both services (`letter_of`), and a
batch collector published before the batch's offsets are committed (`DeadLetters`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from simwatch_contracts import DeadLetter

from .kafka_publisher import KafkaPublisher

Count = Callable[[str, str], None]
Letters = list[tuple[bytes | None, bytes, str, str]]
"""Queued dead letters: (key, record, source topic, reason)."""
"""Counts a dead letter by (source topic, reason): the service's metric."""


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


def letter_of(msg: RawMessage, error: str, failed_at: datetime, service: str) -> bytes:
    """The dead-letter record of `msg` (see `simwatch_contracts.DeadLetter`), as JSON."""
    letter = DeadLetter.of(
        value=msg.value,
        key=msg.key,
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        error=error,
        failed_at=failed_at,
        service=service,
    )
    return letter.model_dump_json().encode()


class DeadLetters:
    def __init__(
        self,
        publisher: KafkaPublisher,
        topic: str,
        count: Count,
        clock: Callable[[], datetime],
        service: str = "usage_monitor",
    ) -> None:
        self.publisher = publisher
        self.topic = topic
        self.count = count
        self.clock = clock
        self.service = service
        self._pending: Letters = []

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, msg: RawMessage, error: str, reason: str) -> None:
        """Queue `msg` with a one-line `error`; `reason` is a small fixed label for metrics."""
        letter = letter_of(msg, error, self.clock(), self.service)
        self._pending.append((msg.key, letter, msg.topic, reason))

    def reset(self) -> None:
        """Forget what is queued: the batch is about to be parsed again after a failure."""
        self._pending = []

    async def flush(self) -> int:
        """Publish what is queued (acks=all). Kept queued if publishing fails, to retry."""
        batch = self._pending
        if not batch:
            return 0
        await self.publish(batch)
        self._pending = []
        return len(batch)

    def take(self) -> Letters:
        """What is queued, handed to its batch (which publishes it with `publish`): the next
        batch can be parsed while this one is still being applied."""
        batch, self._pending = self._pending, []
        return batch

    async def publish(self, batch: Letters) -> None:
        """Publish a batch's letters (acks=all); safe to call again after a failure."""
        if not batch:
            return
        await self.publisher.publish([(self.topic, key, value) for key, value, _, _ in batch])
        for _, _, source, reason in batch:
            self.count(source, reason)
