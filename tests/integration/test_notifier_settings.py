"""`customer.settings` on real Kafka and Redis: the key names the customer, and a message
whose key disagrees with its body, or whose key is not text, is dead-lettered, never stored."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ..conftest import KafkaIO
from ..receiver import Receiver, customer
from .helpers import iccid
from .test_notifier import alert, eventually

pytestmark = pytest.mark.integration


async def test_a_key_that_disagrees_with_the_body_is_dead_lettered_not_stored(
    start_notifier: Any, receiver: Receiver, kafka: KafkaIO, topics: dict[str, str]
) -> None:
    settings = topics["NOTIFIER_TOPIC_SETTINGS"]
    await kafka.send(settings, customer("acme", webhook=receiver.url("/acme")), key="acme")
    # evilcorp tries to take over acme's webhook by naming acme in its body.
    await kafka.send(settings, customer("acme", webhook=receiver.url("/evil")), key="evilcorp")
    start_notifier()
    card = iccid(7501)
    await kafka.send(topics["NOTIFIER_TOPIC_ALERTS"], alert(card), key=card)
    await eventually(lambda: len(receiver.hits["/acme"]) == 1)
    dlq = await kafka.read(topics["NOTIFIER_TOPIC_DLQ"], lambda ms: len(ms) >= 1)
    assert len(dlq) == 1
    assert dlq[0]["key"] == "evilcorp" and dlq[0]["source_topic"] == settings
    assert "key" in dlq[0]["error"] and "customer_id" in dlq[0]["error"]
    await asyncio.sleep(1)
    assert not receiver.hits["/evil"]


async def test_a_tombstone_deletes_only_its_keys_settings(
    start_notifier: Any, receiver: Receiver, kafka: KafkaIO, topics: dict[str, str]
) -> None:
    settings = topics["NOTIFIER_TOPIC_SETTINGS"]
    await kafka.send(settings, customer("gone", webhook=receiver.url("/gone")), key="gone")
    await kafka.send(settings, customer("kept", webhook=receiver.url("/kept")), key="kept")
    await kafka.producer.send_and_wait(settings, None, key=b"gone")
    start_notifier()
    alerts = topics["NOTIFIER_TOPIC_ALERTS"]
    for n, cid in enumerate(("gone", "kept")):
        card = iccid(7510 + n)
        await kafka.send(alerts, alert(card, customer=cid), key=card)
    await eventually(lambda: len(receiver.hits["/kept"]) == 1)
    await asyncio.sleep(1)
    assert not receiver.hits["/gone"]


async def test_a_key_that_is_not_utf8_is_dead_lettered_and_the_notifier_goes_on(
    start_notifier: Any, receiver: Receiver, kafka: KafkaIO, topics: dict[str, str]
) -> None:
    settings = topics["NOTIFIER_TOPIC_SETTINGS"]
    bad_key = b"\xff\xfeacme"
    await kafka.producer.send_and_wait(settings, None, key=bad_key)  # a tombstone
    body = customer("acme", webhook=receiver.url("/evil"))
    await kafka.send(settings, body, key=None)  # no key at all
    await kafka.producer.send_and_wait(
        settings, b'{"customer_id": "acme", "language": "en"}', key=bad_key
    )
    await kafka.send(settings, customer("acme", webhook=receiver.url("/acme")), key="acme")
    # Read up to the end of the settings before the first alert (or crash on the bad keys).
    notifier = start_notifier()
    card = iccid(7521)
    await kafka.send(topics["NOTIFIER_TOPIC_ALERTS"], alert(card), key=card)
    await eventually(lambda: len(receiver.hits["/acme"]) == 1)
    assert notifier.proc is not None and notifier.proc.poll() is None
    dlq = await kafka.read(topics["NOTIFIER_TOPIC_DLQ"], lambda ms: len(ms) >= 3)
    assert len(dlq) == 3
    assert all(d["source_topic"] == settings for d in dlq)
    errors = sorted(d["error"] for d in dlq)
    assert sum("UTF-8" in e for e in errors) == 2, errors
    assert sum("no key" in e for e in errors) == 1, errors
    assert not receiver.hits["/evil"]
