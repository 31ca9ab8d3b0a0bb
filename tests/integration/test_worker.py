"""The real `usage-monitor worker` on real Kafka and Redis, through its entry points."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from simwatch_runtime.liveness import QUIET_S

from ..conftest import BIN, KafkaIO, worker_env
from .helpers import card_event, iccid, record, upsert, wait_for

pytestmark = pytest.mark.integration


def of_type(msgs: list[dict[str, Any]], card: str) -> Counter[str]:
    return Counter(m["type"] for m in msgs if m["iccid"] == card)


async def test_over_quota_card_is_warned_then_suspended_once(
    start_worker: Any, kafka: KafkaIO, names: dict[str, str]
) -> None:
    worker = start_worker()
    card = iccid(1)
    topics = names
    await kafka.send(topics["USAGE_MONITOR_TOPIC_EVENTS"], upsert(card, 1000), key=card)
    records = [record(card, f"r{i}", 100) for i in range(12)]
    records += records[:5]  # redelivered duplicates
    await kafka.send_many(topics["USAGE_MONITOR_TOPIC_USAGE"], [(card, r) for r in records])

    commands = await kafka.read(
        topics["USAGE_MONITOR_TOPIC_COMMANDS"], lambda ms: len(ms) >= 1, timeout_s=60
    )
    alerts = await kafka.read(
        topics["USAGE_MONITOR_TOPIC_ALERTS"], lambda ms: len(ms) >= 4, timeout_s=30
    )
    assert [(c["type"], c["trigger"], c["reasons"]) for c in commands] == [
        ("suspend", "over_quota", ["over_quota"])
    ]
    assert of_type(alerts, card) == {"usage_threshold": 2, "quota_exhausted": 1, "suspended": 1}
    assert sorted(a["percent"] for a in alerts if a["type"] == "usage_threshold") == [80, 90]

    status = await wait_for(
        lambda: worker.card(card).json().get("used_bytes") == 1200 and worker.card(card).json()
    )
    assert status["state"] == "suspended" and status["reasons"] == ["over_quota"]
    assert (status["quota_bytes"], status["percent"]) == (1000, 120.0)
    assert worker.card(iccid(999)).status_code == 404
    assert worker.card("not-an-iccid").status_code == 400


async def test_usage_before_profile_then_manual_stop_and_start(
    start_worker: Any, kafka: KafkaIO, names: dict[str, str]
) -> None:
    start_worker()
    card = iccid(2)
    await kafka.send_many(
        names["USAGE_MONITOR_TOPIC_USAGE"], [(card, record(card, f"p{i}", 100)) for i in range(9)]
    )
    await asyncio.sleep(2)
    await kafka.send(names["USAGE_MONITOR_TOPIC_EVENTS"], upsert(card, 1000), key=card)
    alerts = await kafka.read(names["USAGE_MONITOR_TOPIC_ALERTS"], lambda ms: len(ms) >= 2)
    assert of_type(alerts, card) == {"usage_threshold": 2}

    events = names["USAGE_MONITOR_TOPIC_EVENTS"]
    await kafka.send(events, card_event("card.suspend_requested", card), key=card)
    await kafka.send(events, card_event("card.violation_reported", card), key=card)
    await kafka.send(events, card_event("card.resume_requested", card), key=card)  # refused
    await kafka.send(events, card_event("card.violation_cleared", card), key=card)
    commands = await kafka.read(names["USAGE_MONITOR_TOPIC_COMMANDS"], lambda ms: len(ms) >= 2)
    assert [(c["type"], c["trigger"]) for c in commands] == [
        ("suspend", "manual"),
        ("resume", "violation"),
    ]


async def test_malformed_input_is_dead_lettered_and_the_stream_goes_on(
    start_worker: Any, kafka: KafkaIO, names: dict[str, str]
) -> None:
    worker = start_worker()
    card = iccid(3)
    usage = names["USAGE_MONITOR_TOPIC_USAGE"]
    bad: list[tuple[str | None, Any]] = [
        (card, b"{not json"),
        (card, {**record(card, "b1", 10), "bytes_up": -5}),
        (card, {**record(card, "b2", 10), "iccid": "8986"}),
        (card, {**record(card, "b3", 10), "event_time": "2026-11-25T10:00:00"}),
        (card, record(card, "b4", 10, at="2099-01-01T00:00:00+00:00")),
        (None, b"\xff\xfe\x00"),
    ]
    await kafka.send_many(usage, [*bad, (card, record(card, "ok1", 10))])
    await kafka.send(names["USAGE_MONITOR_TOPIC_EVENTS"], b'{"type":"card.exploded"}', key=card)
    await kafka.send(names["USAGE_MONITOR_TOPIC_EVENTS"], upsert(card, 10**9), key=card)

    dlq = await kafka.read(names["USAGE_MONITOR_TOPIC_DLQ"], lambda ms: len(ms) >= 7)
    assert len(dlq) == 7
    errors = [d["error"] for d in dlq]
    assert any("Invalid JSON" in e for e in errors)
    assert any(e.startswith("bytes_up: Input should be greater than or equal to 0") for e in errors)
    assert any(e.startswith("iccid: Value error, ICCID must be") for e in errors)
    assert any("timezone info" in e for e in errors)
    assert any("in the future" in e for e in errors)
    assert any(d["encoding"] == "base64" for d in dlq)
    assert any(d["source_topic"] == names["USAGE_MONITOR_TOPIC_EVENTS"] for d in dlq)
    assert all({"partition", "offset", "failed_at"} <= d.keys() for d in dlq)

    status = await wait_for(
        lambda: worker.card(card).status_code == 200 and worker.card(card).json()
    )
    assert status["used_bytes"] == 10
    metrics = httpx.get(f"{worker.url}/metrics").text
    assert 'usage_monitor_records_total{outcome="dead_lettered"} 6.0' in metrics
    # The valid record came before the card's profile: counted, as an unknown card's.
    assert 'usage_monitor_records_total{outcome="unknown_card"} 1.0' in metrics


def test_bad_configuration_exits_with_one_line(names: dict[str, str]) -> None:
    def run(**extra: str) -> subprocess.CompletedProcess[str]:
        env = worker_env(names, **extra)
        return subprocess.run(
            [str(BIN / "usage-monitor"), "check"],
            env=env,
            text=True,
            capture_output=True,
            timeout=60,
            check=False,
        )

    bad_port = run(USAGE_MONITOR_WEB_PORT="http")
    assert bad_port.returncode == 2
    assert bad_port.stderr.strip().splitlines() == [
        "usage-monitor: invalid setting: USAGE_MONITOR_WEB_PORT: Input should be a valid "
        "integer, unable to parse string as an integer"
    ]
    no_redis = run(REDIS_URL="redis://127.0.0.1:1/0")
    assert no_redis.returncode == 2
    assert no_redis.stderr.startswith("usage-monitor: REDIS_URL=redis://127.0.0.1:1/0: Redis")
    assert len(no_redis.stderr.strip().splitlines()) == 1
    no_replica = run(USAGE_MONITOR_DURABILITY="replica")  # the test servers have none
    assert no_replica.returncode == 2
    assert no_replica.stderr.startswith("usage-monitor: USAGE_MONITOR_DURABILITY=replica: ")
    assert "0 connected replicas" in no_replica.stderr
    assert len(no_replica.stderr.strip().splitlines()) == 1
    no_kafka = run(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
    assert no_kafka.returncode == 2
    assert no_kafka.stderr.startswith("usage-monitor: KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1:")
    assert os.environ.get("USAGE_MONITOR_WEB_PORT") != "http"
    ok = run()
    assert ok.returncode == 0, ok.stderr


async def test_an_idle_worker_is_not_taken_for_stalled(
    start_worker: Any, kafka: KafkaIO, names: dict[str, str], tmp_path: Path
) -> None:
    """Both stall watchdogs (`simwatch_runtime/liveness.py`), with a 2 s stall timeout, on a worker
    that applied events and records and then has nothing to do for longer than the quiet
    rule and the timeout together: nothing waits, so nothing is a stall."""
    worker = start_worker(USAGE_MONITOR_CONSUMER_STALL_S="2")
    card = iccid(3)
    await kafka.send(names["USAGE_MONITOR_TOPIC_EVENTS"], upsert(card, 1000), key=card)
    await kafka.send(
        names["USAGE_MONITOR_TOPIC_EVENTS"], card_event("card.suspend_requested", card), key=card
    )
    await kafka.send_many(
        names["USAGE_MONITOR_TOPIC_USAGE"], [(card, record(card, f"i{i}", 100)) for i in range(5)]
    )
    await kafka.read(names["USAGE_MONITOR_TOPIC_COMMANDS"], lambda ms: len(ms) >= 1)
    await asyncio.sleep(QUIET_S + 2 + 5)
    log_text = (tmp_path / "worker-0.log").read_text()
    assert "stalled" not in log_text, log_text[-3000:]
    assert worker.proc is not None and worker.proc.poll() is None
