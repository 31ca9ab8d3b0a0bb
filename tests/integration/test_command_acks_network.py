"""The loop with a misbehaving network (issue #18): the provisioning adapter simulator drops,
fails and duplicates answers and silently re-activates suspended cards, and the worker is
SIGKILLed on the way. Every command ends confirmed or unconfirmed, none is published more
than its attempts or after the fleet settled, none is lost, and every re-activated card is
corrected."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..conftest import BIN, KAFKA, KafkaIO
from .helpers import iccid, record, upsert, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CARDS = 40
MAX_ATTEMPTS = 4
ACKS = {
    "USAGE_MONITOR_COMMAND_ACK_TIMEOUT_S": "1",
    "USAGE_MONITOR_COMMAND_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
    "USAGE_MONITOR_SCHEDULER_INTERVAL_S": "0.2",
}


def simulator(names: dict[str, str], log: Path, *flags: str) -> subprocess.Popen[bytes]:
    command = [
        str(BIN / "provisioning-sim"),
        "--bootstrap",
        KAFKA,
        "--group-id",
        f"{names['USAGE_MONITOR_APP_ID']}-network",
        "--topic-commands",
        names["USAGE_MONITOR_TOPIC_COMMANDS"],
        "--topic-results",
        names["USAGE_MONITOR_TOPIC_COMMAND_RESULTS"],
        "--topic-events",
        names["USAGE_MONITOR_TOPIC_EVENTS"],
        "--seed",
        "18",
        "--duration",
        "240",
        *flags,
    ]
    return subprocess.Popen(command, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def settled(worker: Any, cards: list[str]) -> dict[str, Any] | None:
    """Each card's tracked command (None = confirmed), once none is still pending."""
    out = {}
    for card in cards:
        r = httpx.get(f"{worker.url}/cards/{card}", timeout=5)
        if r.status_code != 200:
            return None
        view = r.json()
        if view["state"] != "suspended":
            return None
        command = view["command"]
        if command is not None and command["status"] == "pending":
            return None
        out[card] = command
    return out


async def test_every_command_ends_confirmed_or_unconfirmed_through_drops_and_a_sigkill(
    start_worker: Any, kafka: KafkaIO, names: dict[str, str], tmp_path: Path
) -> None:
    sim = simulator(
        names,
        tmp_path / "sim.log",
        *("--delay-min", "0.05", "--delay-max", "0.6"),
        *("--drop-rate", "0.3", "--fail-rate", "0.1", "--duplicate-rate", "0.3"),
        *("--observe-interval", "0"),
    )
    try:
        worker = start_worker(**ACKS)
        cards = [iccid(18_000 + i) for i in range(CARDS)]
        events, usage = names["USAGE_MONITOR_TOPIC_EVENTS"], names["USAGE_MONITOR_TOPIC_USAGE"]
        await kafka.send_many(events, [(c, upsert(c, 1000)) for c in cards])
        await kafka.send_many(usage, [(c, record(c, f"r-{c}", 1500)) for c in cards[: CARDS // 2]])
        topic = names["USAGE_MONITOR_TOPIC_COMMANDS"]
        await kafka.read(topic, lambda ms: len({m["iccid"] for m in ms}) >= CARDS // 2)
        # Killed with commands in flight, attempts due and results unread.
        worker.kill(signal.SIGKILL)
        await kafka.send_many(usage, [(c, record(c, f"r-{c}", 1500)) for c in cards[CARDS // 2 :]])
        worker = start_worker(**ACKS)
        final = await wait_for(lambda: settled(worker, cards), timeout_s=150)
        assert final, "commands still pending"

        commands = await kafka.read(topic, lambda ms: False, timeout_s=2)
        by_id: dict[str, list[int]] = {}
        for c in commands:
            by_id.setdefault(c["command_id"], []).append(c["attempt"])
        assert {c["iccid"] for c in commands} == set(cards)  # none lost
        assert all(max(a) <= MAX_ATTEMPTS for a in by_id.values()), by_id
        unconfirmed = [c for c in final.values() if c is not None]
        assert all(c["status"] == "unconfirmed" for c in unconfirmed)
        assert len(unconfirmed) < CARDS // 4  # 0.3 ** 4 of them at most, give or take
        # Settled: nothing goes out again (waits are 1, 2, 4, 8 s).
        await asyncio.sleep(10)
        assert len(await kafka.read(topic, lambda ms: False, timeout_s=2)) == len(commands)
    finally:
        sim.terminate()
        sim.wait(timeout=30)


async def test_a_network_that_reactivates_cards_is_corrected_within_one_observation(
    start_worker: Any, kafka: KafkaIO, names: dict[str, str], tmp_path: Path
) -> None:
    sim = simulator(
        names,
        tmp_path / "sim.log",
        *("--delay-min", "0.05", "--delay-max", "0.2"),
        *("--observe-interval", "3", "--drift-rate", "0.5"),
    )
    try:
        worker = start_worker()
        cards = [iccid(18_100 + i) for i in range(10)]
        events, usage = names["USAGE_MONITOR_TOPIC_EVENTS"], names["USAGE_MONITOR_TOPIC_USAGE"]
        await kafka.send_many(events, [(c, upsert(c, 1000)) for c in cards])
        await kafka.send_many(usage, [(c, record(c, f"r-{c}", 1500)) for c in cards])
        topic = names["USAGE_MONITOR_TOPIC_COMMANDS"]
        commands = await kafka.read(
            topic, lambda ms: any(m["trigger"] == "reconcile" for m in ms), timeout_s=60
        )
        fixes = [c for c in commands if c["trigger"] == "reconcile"]
        assert fixes and all(c["type"] == "suspend" for c in fixes)
        # Each correction is confirmed like any command.
        assert await wait_for(lambda: settled(worker, cards), timeout_s=60)
    finally:
        sim.terminate()
        sim.wait(timeout=30)
