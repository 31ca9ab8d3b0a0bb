"""The shared Kafka publisher on the real broker: keyed messages go where Kafka's default
partitioner puts them (consumers of every topic rely on one card's messages sharing a
partition), in order per key, across full record batches, beside unkeyed and large ones."""

from __future__ import annotations

import os
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from simwatch_runtime.aiokafka_tasks import sender_failure
from simwatch_runtime.kafka_publisher import KafkaPublisher

from ..conftest import KAFKA

pytestmark = pytest.mark.integration


async def _topic(partitions: int) -> str:
    name = f"pub-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
    return name


async def _read(topic: str, expected: int) -> list[tuple[int, bytes | None, bytes]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False)
    await consumer.start()
    try:
        parts: set[int] = set()
        while not parts:
            await consumer._client.force_metadata_update()
            parts = consumer._client.cluster.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[tuple[int, bytes | None, bytes]] = []
        for _ in range(100):
            batch = await consumer.getmany(timeout_ms=200)
            for tp, msgs in batch.items():
                out += [(tp.partition, m.key, m.value) for m in msgs]
            if len(out) >= expected:
                break
        return out
    finally:
        await consumer.stop()


@pytest.mark.parametrize("with_slow_path", [False, True])
async def test_messages_land_on_the_default_partition_in_order(with_slow_path: bool) -> None:
    topic, other = await _topic(7), await _topic(3)
    idempotence = os.environ.get("KAFKA_IMPL") != "tansu"  # Tansu lacks it
    publisher = KafkaPublisher(KAFKA, client_id="test-publisher", idempotence=idempotence)
    keys = [f"89860400000000{i:06d}".encode() for i in range(300)]
    # 4 000 messages over two topics: several full 256 kB batches per partition.
    messages: list[tuple[str, bytes | None, bytes]] = [
        (topic if n % 4 else other, keys[n % len(keys)], f"{n:06d}".encode() + b"." * 200)
        for n in range(4000)
    ]
    if with_slow_path:  # an unkeyed and an outsized message: the per-message path
        messages += [(topic, None, b"unkeyed"), (topic, keys[0], b"x" * 600_000)]
    try:
        await publisher.publish(messages)
    finally:
        await publisher.close()

    partitioner = DefaultPartitioner()
    for name, count in ((topic, 7), (other, 3)):
        sent = [m for m in messages if m[0] == name]
        got = await _read(name, len(sent))
        assert sorted(v for _, _, v in got) == sorted(v for _, _, v in sent)
        for partition, key, _ in got:
            if key is not None:
                assert partition == partitioner(key, list(range(count)), list(range(count)))
        for key in keys[:50]:  # order per key, as published
            assert [v for _, k, v in got if k == key] == [v for _, k, v in sent if k == key]


async def test_a_producer_whose_sender_died_is_replaced() -> None:
    """aiokafka's sender task dies of an error it does not expect (in CI: uvloop's
    closed-transport RuntimeError when the broker link was reset mid-write); that producer
    then fails every later message. The publisher's next publish starts a new producer."""
    topic = await _topic(1)
    idempotence = os.environ.get("KAFKA_IMPL") != "tansu"
    publisher = KafkaPublisher(KAFKA, client_id="test-publisher", idempotence=idempotence)
    try:
        await publisher.publish([(topic, b"k", b"before")])
        producer = publisher._producer
        assert producer is not None and sender_failure(producer) is None

        async def broken_link(*_: object) -> None:
            raise RuntimeError(
                "unable to perform operation on <TCPTransport closed=True>; the handler is closed"
            )

        producer._sender._send_produce_req = broken_link  # type: ignore[method-assign]
        with pytest.raises(KafkaError, match="Unexpected error during batch delivery"):
            await publisher.publish([(topic, b"k", b"lost-in-flight")])
        assert isinstance(sender_failure(producer), KafkaError)

        # The outbox publishes what was not acknowledged again, on a new producer.
        await publisher.publish([(topic, b"k", b"lost-in-flight"), (topic, b"k", b"after")])
        assert publisher.renewals == 1 and publisher._producer is not producer
    finally:
        await publisher.close()
    got = [v for _, _, v in await _read(topic, 3)]
    assert got == [b"before", b"lost-in-flight", b"after"]
