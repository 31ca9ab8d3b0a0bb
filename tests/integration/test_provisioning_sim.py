"""`provisioning-sim` as a process on the real Kafka: it answers `card.commands` on the
results topic (applied with the network state, failed, rejected, duplicated, or dropped:
never), and observes the cards on the events topic, with drift."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from simwatch_contracts import CommandResult, NetworkObserved, parse_card_event

from ..conftest import BIN, KAFKA, KafkaIO
from .helpers import iccid, now_iso, wait_for

pytestmark = pytest.mark.integration


class Sim:
    """One `provisioning-sim` process on the test's own topics; its output in a log file."""

    def __init__(self, topics: dict[str, str], log: Path) -> None:
        self.topics = topics
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *flags: str) -> Sim:
        env = {k: v for k, v in os.environ.items() if not k.startswith("USAGE_MONITOR_")}
        env["KAFKA_BOOTSTRAP_SERVERS"] = KAFKA
        env["PROVISIONING_SIM_PRODUCER_IDEMPOTENCE"] = str(os.environ.get("KAFKA_IMPL") != "tansu")
        cmd = [
            str(BIN / "provisioning-sim"),
            *("--group-id", self.topics["group"]),
            *("--topic-commands", self.topics["commands"]),
            *("--topic-results", self.topics["results"]),
            *("--topic-events", self.topics["events"]),
            *("--summary-interval", "0.5", "--seed", "1"),
            *flags,
        ]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        return self

    def output(self) -> str:
        return self.log.read_text()

    def count(self, name: str) -> int:
        """The latest summary line's `name=N`, or -1 before the first line."""
        found = re.findall(rf"\b{name}=(\d+)", self.output())
        return int(found[-1]) if found else -1

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    tag = uuid.uuid4().hex[:10]
    topics = {
        "group": f"ps-{tag}",
        "commands": f"p{tag}.card.commands",
        "results": f"p{tag}.card.command_results",
        "events": f"p{tag}.card.events",
    }
    one = Sim(topics, tmp_path / "provisioning-sim.log")
    yield one
    if one.proc is not None:
        one.stop()


def command(kind: str, card: str, command_id: str, attempt: int = 1) -> dict[str, Any]:
    return {
        "command_id": command_id,
        "type": kind,
        "iccid": card,
        "trigger": "manual" if kind != "cancel" else "expired",
        "reasons": ["manual"] if kind == "suspend" else [],
        "cycle": "2026-11-01",
        "issued_at": now_iso(),
        "attempt": attempt,
    }


async def send(kafka: KafkaIO, topic: str, commands: list[dict[str, Any]]) -> None:
    await kafka.send_many(topic, [(c.get("iccid"), c) for c in commands])
    await kafka.producer.flush()


async def read_keyed(topic: str, count: int, timeout_s: float) -> list[tuple[str, dict[str, Any]]]:
    """(key, JSON value) of the topic's messages from the beginning, once `count` are there
    or the timeout passed; in order per partition (so per card)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False)
    await consumer.start()
    out: list[tuple[str, dict[str, Any]]] = []
    try:
        deadline = time.monotonic() + timeout_s
        parts: set[int] = set()
        while not parts and time.monotonic() < deadline:
            await consumer._client.force_metadata_update()
            parts = consumer._client.cluster.partitions_for_topic(topic) or set()
        if not parts:
            return out
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while len(out) < count and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=200)).values():
                out += [(m.key.decode(), json.loads(m.value)) for m in messages if m.key]
        return out
    finally:
        await consumer.stop()


def by_card(messages: list[tuple[str, dict[str, Any]]]) -> dict[str, list[CommandResult]]:
    out: dict[str, list[CommandResult]] = {}
    for key, value in messages:
        result = CommandResult.model_validate_json(json.dumps(value))
        assert key == result.iccid
        out.setdefault(key, []).append(result)
    return out


async def test_commands_are_applied_in_order_with_the_network_state(
    sim: Sim, kafka: KafkaIO
) -> None:
    a, b, c = iccid(9101), iccid(9102), iccid(9103)
    commands = [
        command("suspend", a, "s-a"),
        command("resume", a, "r-a"),
        command("suspend", a, "s-a", attempt=2),  # applied before: answered, not applied again
        command("cancel", b, "c-b"),
        command("resume", b, "r-b"),  # a cancelled card stays cancelled
        command("suspend", c, "s-c"),
    ]
    await send(kafka, sim.topics["commands"], [*commands[:3], {"not": "a command"}])
    await kafka.send(sim.topics["commands"], b"\xff not json", key=None)
    await send(kafka, sim.topics["commands"], commands[3:])
    sim.start("--delay-min", "0", "--delay-max", "0.2", "--observe-interval", "0")

    got = by_card(await read_keyed(sim.topics["results"], 6, timeout_s=60))
    seen = {k: [(r.command_id, r.status, r.network_state) for r in v] for k, v in got.items()}
    assert seen == {
        a: [
            ("s-a", "applied", "suspended"),
            ("r-a", "applied", "active"),
            ("s-a", "applied", "active"),
        ],
        b: [("c-b", "applied", "cancelled"), ("r-b", "applied", "cancelled")],
        c: [("s-c", "applied", "suspended")],
    }
    assert "already applied" in (got[a][2].detail or "")
    assert all((r.detail or "").startswith("HLR ok") for v in got.values() for r in v)
    assert all(r.at.utcoffset() is not None for v in got.values() for r in v)
    assert await wait_for(lambda: sim.count("malformed") == 2, timeout_s=10)
    assert sim.stop() == 0  # SIGTERM: a clean stop, with a last summary line
    assert sim.count("seen") == 6 and sim.count("applied") == 6 and sim.count("pending") == 0


@pytest.mark.parametrize(
    ("flags", "status", "copies"),
    [
        (("--fail-rate", "1.0"), "failed", 1),
        (("--reject-rate", "1.0"), "rejected", 1),
        (("--duplicate-rate", "1.0"), "applied", 2),
    ],
)
async def test_failures_rejections_and_duplicates_at_rate_one(
    sim: Sim, kafka: KafkaIO, flags: tuple[str, str], status: str, copies: int
) -> None:
    cards = [iccid(9200 + i) for i in range(3)]
    await send(kafka, sim.topics["commands"], [command("suspend", c, f"s-{c}") for c in cards])
    sim.start("--delay-min", "0", "--delay-max", "0.2", "--observe-interval", "0", *flags)

    got = by_card(await read_keyed(sim.topics["results"], 3 * copies, timeout_s=60))
    assert sorted(got) == sorted(cards)
    for card in cards:
        assert [(r.command_id, r.status) for r in got[card]] == [(f"s-{card}", status)] * copies
        expected = "suspended" if status == "applied" else "active"  # failures change nothing
        assert {r.network_state for r in got[card]} == {expected}
    assert sim.stop() == 0
    assert sim.count(status) == 3 and sim.count("duplicated") == 3 * (copies - 1)


async def test_dropped_commands_are_never_answered(sim: Sim, kafka: KafkaIO) -> None:
    cards = [iccid(9300 + i) for i in range(3)]
    await send(kafka, sim.topics["commands"], [command("suspend", c, f"s-{c}") for c in cards])
    sim.start("--delay-min", "0", "--delay-max", "0.2", "--drop-rate", "1.0")
    assert await wait_for(lambda: sim.count("dropped") == 3, timeout_s=60), sim.output()
    assert await read_keyed(sim.topics["results"], 1, timeout_s=4) == []
    assert sim.stop() == 0
    assert sim.count("seen") == 3 and sim.count("applied") == 0


@pytest.mark.parametrize("drift", [0.0, 1.0])
async def test_the_network_is_observed_and_suspended_cards_drift_back(
    sim: Sim, kafka: KafkaIO, drift: float
) -> None:
    suspended, cancelled = [iccid(9400), iccid(9401)], iccid(9402)
    await send(
        kafka,
        sim.topics["commands"],
        [*(command("suspend", c, f"s-{c}") for c in suspended), command("cancel", cancelled, "x")],
    )
    flags = ["--observe-interval", "1", "--drift-rate", str(drift)]
    sim.start("--delay-min", "0", "--delay-max", "0.1", *flags)
    # Every card is applied and then seen in at least two rounds of three.
    assert await wait_for(lambda: sim.count("observations") >= 8, timeout_s=60), sim.output()
    assert sim.stop() == 0
    total = sim.count("observations")
    events = await read_keyed(sim.topics["events"], total, timeout_s=30)
    assert len(events) == total
    observed = [parse_card_event(json.dumps(value)) for _, value in events]
    assert all(isinstance(e, NetworkObserved) for e in observed)
    assert [k for k, _ in events] == [e.iccid for e in observed]
    assert len({e.event_id for e in observed}) == len(observed)
    states: dict[str, set[str]] = {}
    for e in observed:
        assert isinstance(e, NetworkObserved)
        states.setdefault(e.iccid, set()).add(e.network_state)
    assert states[cancelled] == {"cancelled"}
    for card in suspended:
        assert states[card] == ({"active"} if drift else {"suspended"})
    assert sim.count("drifts") == (2 if drift else 0)  # once each: then they are active
