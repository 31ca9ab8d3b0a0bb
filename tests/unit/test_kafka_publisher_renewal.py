"""`KafkaPublisher` replaces a producer that can no longer deliver, without a real broker:
a fake producer whose sender task dies, returns, or whose publishes fail with an
idempotence error. (The real broker case is in tests/integration/test_kafka_publisher.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaError, OutOfOrderSequenceNumber

from simwatch_runtime import kafka_publisher
from simwatch_runtime.kafka_publisher import KafkaPublisher


class Accumulator:
    def __init__(self) -> None:
        self._exception: BaseException | None = None
        self.failed_with: BaseException | None = None

    def fail_all(self, exc: BaseException) -> None:
        self._exception = self.failed_with = exc


class FakeProducer:
    """The part of `AIOKafkaProducer` the publisher uses, on the per-message path."""

    made: list[FakeProducer] = []

    def __init__(self, **_: Any) -> None:
        self._sender = type("Sender", (), {})()
        self._sender.sender_task = None
        self._message_accumulator = Accumulator()
        self.stopped = False
        self.hold: asyncio.Event | None = None  # a send waits for it (e.g. for metadata)
        self.fail: BaseException | None = None
        self.sent: list[bytes] = []
        FakeProducer.made.append(self)

    async def start(self) -> None:
        self._sender.sender_task = asyncio.create_task(asyncio.sleep(3600))

    async def stop(self) -> None:
        assert not self.stopped
        self.stopped = True
        self._sender.sender_task.cancel()

    async def send(self, topic: str, value: bytes, key: bytes | None) -> asyncio.Future[None]:
        if self.hold is not None:
            await self.hold.wait()  # a stopped client would never release it
        if self._message_accumulator._exception is not None:
            raise self._message_accumulator._exception
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail is not None:
            done.set_exception(self.fail)
        else:
            self.sent.append(value)
            done.set_result(None)
        return done

    def kill_sender(self, exc: BaseException | None) -> None:
        """The sender ends: with `exc`, or by returning (it swallows its cancellation)."""
        self._sender.sender_task.cancel()

        async def ended() -> None:
            if exc is not None:
                raise exc

        self._sender.sender_task = asyncio.create_task(ended())


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> list[FakeProducer]:
    FakeProducer.made = []
    monkeypatch.setattr(kafka_publisher, "AIOKafkaProducer", FakeProducer)
    return FakeProducer.made


def message(value: bytes) -> list[tuple[str, bytes | None, bytes]]:
    return [("t", None, value)]


async def test_a_replaced_producer_stops_only_after_its_last_publish(
    fakes: list[FakeProducer],
) -> None:
    renewed: list[int] = []
    publisher = KafkaPublisher("k", "c", on_renew=lambda: renewed.append(1))
    await publisher.publish(message(b"a"))
    old = fakes[0]
    old.hold = asyncio.Event()
    waiting = asyncio.create_task(publisher.publish(message(b"b")))  # waits on old's metadata
    await asyncio.sleep(0.01)
    old.kill_sender(KafkaError("Unexpected error during batch delivery"))
    await asyncio.sleep(0)

    await publisher.publish(message(b"c"))  # a new producer; the old one still has a user
    assert len(fakes) == 2 and fakes[1].sent == [b"c"] and renewed == [1]
    assert not old.stopped, "stopping it would leave the waiting publish hanging for ever"
    assert isinstance(old._message_accumulator.failed_with, KafkaError)

    old.hold.set()
    with pytest.raises(KafkaError):  # not acknowledged: its outbox publishes it again
        await waiting
    await asyncio.sleep(0.01)
    assert old.stopped
    await publisher.close()
    assert fakes[1].stopped


async def test_a_sender_that_returned_fails_what_it_held_and_is_replaced(
    fakes: list[FakeProducer],
) -> None:
    publisher = KafkaPublisher("k", "c")
    await publisher.publish(message(b"a"))
    fakes[0].kill_sender(None)
    await asyncio.sleep(0)
    await publisher.publish(message(b"b"))
    assert len(fakes) == 2 and fakes[1].sent == [b"b"] and publisher.renewals == 1
    # Batches queued in the old one would otherwise wait for ever: nothing fails them.
    assert isinstance(fakes[0]._message_accumulator.failed_with, RuntimeError)
    await asyncio.sleep(0.01)
    assert fakes[0].stopped
    await publisher.close()


async def test_an_idempotence_error_replaces_the_producer(fakes: list[FakeProducer]) -> None:
    publisher = KafkaPublisher("k", "c")
    await publisher.publish(message(b"a"))
    fakes[0].fail = OutOfOrderSequenceNumber()
    with pytest.raises(OutOfOrderSequenceNumber):
        await publisher.publish(message(b"b"))
    await publisher.publish(message(b"b"))  # aiokafka never resets the sequence: a new one
    assert len(fakes) == 2 and fakes[1].sent == [b"b"] and publisher.renewals == 1
    await publisher.close()


async def test_an_ordinary_failure_keeps_the_producer(fakes: list[FakeProducer]) -> None:
    publisher = KafkaPublisher("k", "c")
    fakes_before = len(fakes)
    await publisher.publish(message(b"a"))
    fakes[0].fail = KafkaError("request timed out")
    with pytest.raises(KafkaError):
        await publisher.publish(message(b"b"))
    fakes[0].fail = None
    await publisher.publish(message(b"b"))
    assert len(fakes) == fakes_before + 1 and publisher.renewals == 0
    await publisher.close()
