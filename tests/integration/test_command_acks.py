"""Commands acknowledged by the network (issue #18), through the real worker on Kafka and
Redis: published again without a result, settled by one, given up on, results that are
bad input dead-lettered, and a network that re-activates a card corrected."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from ..conftest import KafkaIO
from .helpers import card_event, iccid, record, upsert, wait_for

pytestmark = pytest.mark.integration

FAST_ACKS = {
    "USAGE_MONITOR_COMMAND_ACK_TIMEOUT_S": "1",
    "USAGE_MONITOR_COMMAND_MAX_ATTEMPTS": "3",
    "USAGE_MONITOR_SCHEDULER_INTERVAL_S": "0.2",
}


def result(cmd: dict[str, Any], status: str = "applied", network: str = "suspended") -> dict:
    return {
        "command_id": cmd["command_id"],
        "iccid": cmd["iccid"],
        "status": status,
        "network_state": network,
        "detail": "HLR ok" if status == "applied" else "HLR timeout",
        "at": datetime.now(UTC).isoformat(),
    }


async def suspend_over_quota(kafka: KafkaIO, names: dict[str, str], card: str) -> None:
    await kafka.send(names["USAGE_MONITOR_TOPIC_EVENTS"], upsert(card, 1000), key=card)
    await kafka.send(names["USAGE_MONITOR_TOPIC_USAGE"], record(card, f"r-{card}", 1500), key=card)


def of(commands: list[dict[str, Any]], card: str) -> list[dict[str, Any]]:
    return [c for c in commands if c["iccid"] == card]


def metric(worker: Any, name: str) -> float:
    text = httpx.get(f"{worker.url}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            head, _, value = line.rpartition(" ")
            if head == name or head.startswith(name + "{"):
                total += float(value)
    return total


async def test_a_command_is_published_again_until_its_result_then_never(
    start_worker: Any, kafka: KafkaIO, names: dict[str, str]
) -> None:
    worker = start_worker(**FAST_ACKS)
    card = iccid(1801)
    topic = names["USAGE_MONITOR_TOPIC_COMMANDS"]
    await suspend_over_quota(kafka, names, card)
    sent = await kafka.read(topic, lambda ms: len(ms) >= 2)
    first, again = sent[:2]
    assert first["type"] == "suspend" and first["attempt"] == 1
    assert again["command_id"] == first["command_id"] and again["attempt"] == 2
    view = worker.card(card).json()["command"]
    assert view["status"] == "pending" and view["command_id"] == first["command_id"]

    results = names["USAGE_MONITOR_TOPIC_COMMAND_RESULTS"]
    await kafka.send(results, result(first), key=card)
    await kafka.send(results, result(first), key=card)  # delivered twice: applies once
    assert await wait_for(lambda: worker.card(card).json()["command"] is None)
    count = len(await kafka.read(topic, lambda ms: False, timeout_s=1))
    await asyncio.sleep(4)  # longer than every remaining wait: nothing goes out again
    assert len(await kafka.read(topic, lambda ms: False, timeout_s=1)) == count
    assert await wait_for(lambda: metric(worker, "usage_monitor_enforcement_seconds_count") == 1)
    assert metric(worker, "usage_monitor_commands_pending") == 0


async def test_a_command_never_answered_is_marked_unconfirmed(
    start_worker: Any, kafka: KafkaIO, names: dict[str, str]
) -> None:
    worker = start_worker(**FAST_ACKS)
    card = iccid(1802)
    await suspend_over_quota(kafka, names, card)
    # Waits of 1, 2 and 4 s: three publications, then unconfirmed.
    view = await wait_for(
        lambda: (
            (c := worker.card(card)).status_code == 200
            and (c.json()["command"] or {}).get("status") == "unconfirmed"
            and c.json()["command"]
        ),
        timeout_s=30,
    )
    assert view["attempt"] == 3 and view["next_attempt_at"] is None
    sent = of(await kafka.read(names["USAGE_MONITOR_TOPIC_COMMANDS"], lambda ms: False, 2), card)
    assert [c["attempt"] for c in sent] == [1, 2, 3]
    assert await wait_for(lambda: metric(worker, "usage_monitor_commands_unconfirmed") == 1)
    assert metric(worker, "usage_monitor_commands_gave_up_total") == 1
    # An answer after all: the card is confirmed and the count goes back down.
    await kafka.send(names["USAGE_MONITOR_TOPIC_COMMAND_RESULTS"], result(sent[0]), key=card)
    assert await wait_for(lambda: worker.card(card).json()["command"] is None)
    assert await wait_for(lambda: metric(worker, "usage_monitor_commands_unconfirmed") == 0)


async def test_failed_is_retried_and_rejected_is_not(
    start_worker: Any, kafka: KafkaIO, names: dict[str, str]
) -> None:
    worker = start_worker(
        **{**FAST_ACKS, "USAGE_MONITOR_COMMAND_ACK_TIMEOUT_S": "60"}
    )  # only a failure brings the next attempt within the test
    topic, results = (
        names["USAGE_MONITOR_TOPIC_COMMANDS"],
        names["USAGE_MONITOR_TOPIC_COMMAND_RESULTS"],
    )
    failing, refused = iccid(1803), iccid(1804)
    for card in (failing, refused):
        await suspend_over_quota(kafka, names, card)
    sent = await kafka.read(topic, lambda ms: len(ms) >= 2)
    (f,), (r,) = of(sent, failing), of(sent, refused)
    await kafka.send(results, result(f, "failed", "active"), key=failing)
    await kafka.send(results, result(r, "rejected", "active"), key=refused)
    sent = await kafka.read(topic, lambda ms: len(of(ms, failing)) >= 2, timeout_s=30)
    assert [c["attempt"] for c in of(sent, failing)] == [1, 2]  # 10 s after the failure
    assert [c["attempt"] for c in of(sent, refused)] == [1]
    view = worker.card(refused).json()["command"]
    assert view["status"] == "rejected" and view["next_attempt_at"] is None
    assert await wait_for(lambda: metric(worker, "usage_monitor_commands_rejected") == 1)


async def test_a_network_that_reactivates_a_suspended_card_is_corrected_once(
    start_worker: Any, kafka: KafkaIO, names: dict[str, str]
) -> None:
    worker = start_worker()
    card = iccid(1805)
    topic, events = names["USAGE_MONITOR_TOPIC_COMMANDS"], names["USAGE_MONITOR_TOPIC_EVENTS"]
    await suspend_over_quota(kafka, names, card)
    (suspend,) = await kafka.read(topic, lambda ms: len(ms) >= 1)
    await kafka.send(names["USAGE_MONITOR_TOPIC_COMMAND_RESULTS"], result(suspend), key=card)
    assert await wait_for(lambda: worker.card(card).json()["command"] is None)

    observed = card_event("card.network_observed", card, network_state="active")
    await kafka.send(events, observed, key=card)
    await kafka.send(events, observed, key=card)  # the same observation twice
    sent = await kafka.read(topic, lambda ms: len(ms) >= 2)
    fix = sent[1]
    assert (fix["type"], fix["trigger"], fix["reasons"]) == ("suspend", "reconcile", ["over_quota"])
    await asyncio.sleep(2)
    assert len(await kafka.read(topic, lambda ms: False, timeout_s=1)) == 2
    assert worker.card(card).json()["command"]["command_id"] == fix["command_id"]
    assert metric(worker, "usage_monitor_commands_reconciled_total") == 1


async def test_bad_results_are_dead_lettered_with_their_reason(
    start_worker: Any, kafka: KafkaIO, names: dict[str, str]
) -> None:
    worker = start_worker()
    card, other = iccid(1806), iccid(1807)
    await suspend_over_quota(kafka, names, card)
    (suspend,) = await kafka.read(names["USAGE_MONITOR_TOPIC_COMMANDS"], lambda ms: len(ms) >= 1)
    results = names["USAGE_MONITOR_TOPIC_COMMAND_RESULTS"]
    bad = [
        (card, b"{not json", "Invalid JSON"),
        (card, b'{"command_id": "x", "iccid": "' + card.encode() + b'"}', "status"),
        (card, {**result(suspend), "status": "maybe"}, "status"),
        (other, result(suspend), "not the result's ICCID"),
        (card, {**result(suspend), "command_id": "cmd-forged"}, "unknown command"),
        (other, {**result(suspend), "iccid": other}, "unknown card"),
    ]
    await kafka.send_many(results, [(key, value) for key, value, _ in bad])
    letters = await kafka.read(names["USAGE_MONITOR_TOPIC_DLQ"], lambda ms: len(ms) >= len(bad))
    letters.sort(key=lambda d: (d["partition"], d["offset"]))
    by_error = sorted(letter["error"] for letter in letters)
    for _, _, words in bad:
        assert any(words in e for e in by_error), (words, by_error)
    assert all(letter["source_topic"] == results for letter in letters)
    # The stream goes on: a good result after the bad ones is applied.
    await kafka.send(results, result(suspend), key=card)
    assert await wait_for(lambda: worker.card(card).json()["command"] is None)
