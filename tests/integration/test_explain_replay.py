"""Explain and replay through the real worker: a card stopped for two reasons explains both
(API and CLI, both languages, bad input answered clearly), its decisions are on
card.decisions and in its history, and a replay reproduces them — and reports a tampered one.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..conftest import BIN, KafkaIO, worker_env
from .helpers import card_event, iccid, record, upsert, wait_for

pytestmark = pytest.mark.integration


def cli(names: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "usage-monitor"), *args],
        env=worker_env(names),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _two_reasons(start_worker: Any, kafka: KafkaIO, names: dict[str, str]) -> tuple[Any, str]:
    worker = start_worker()
    card = iccid(77)
    events, usage = names["USAGE_MONITOR_TOPIC_EVENTS"], names["USAGE_MONITOR_TOPIC_USAGE"]
    await kafka.send(events, upsert(card, 1000), key=card)
    await wait_for(lambda: worker.card(card).status_code == 200)
    await kafka.send(usage, record(card, "r1", 1200), key=card)
    await wait_for(lambda: worker.card(card).json()["reasons"] == ["over_quota"])
    await kafka.send(events, card_event("card.suspend_requested", card), key=card)
    await wait_for(lambda: worker.card(card).json()["reasons"] == ["over_quota", "manual"])
    return worker, card


async def test_explain_and_replay_a_card_stopped_for_two_reasons(
    start_worker: Any, kafka: KafkaIO, names: dict[str, str], tmp_path: Path
) -> None:
    worker, card = await _two_reasons(start_worker, kafka, names)
    body = httpx.get(f"{worker.url}/cards/{card}/explain", params={"lang": "en"}).json()
    assert body["state"] == "suspended"
    assert [(r["reason"], r["lifts"]["how"]) for r in body["reasons"]] == [
        ("over_quota", "next_cycle"),
        ("manual", "customer_resume"),
    ]
    assert "resumes by itself" in body["reasons"][0]["text"]
    kinds = {(h["kind"], h["type"]) for h in body["history"]}
    assert ("command", "suspend") in kinds and ("alert", "quota_exhausted") in kinds
    zh = httpx.get(f"{worker.url}/cards/{card}/explain").json()  # zh-CN by default
    assert "自动超停" in zh["summary"] and "人工停用" in zh["summary"]

    assert httpx.get(f"{worker.url}/cards/{iccid(78)}/explain").status_code == 404
    bad = httpx.get(f"{worker.url}/cards/12345/explain")
    assert bad.status_code == 400 and bad.json()["error"] == "malformed ICCID"
    assert httpx.get(f"{worker.url}/cards/{card}/explain?lang=fr").status_code == 400

    printed = cli(names, "explain", card, "--lang", "en", "--json")
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout)["reasons"] == body["reasons"]
    person = cli(names, "explain", card)
    assert person.returncode == 0 and "人工停用" in person.stdout

    # The audit trail: every decision published, and a replay reproduces them all.
    decisions = await kafka.read(
        names["USAGE_MONITOR_TOPIC_DECISIONS"], lambda ms: len(ms) >= len(body["history"])
    )
    assert {d["kind"] for d in decisions} >= {"command", "alert"}
    ok = cli(names, "replay", "--iccid", card)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"{len(decisions)} decisions reproduced, 0 differ" in ok.stdout

    forged = {**decisions[0], "type": "cancel"}
    await kafka.send_many(names["USAGE_MONITOR_TOPIC_DECISIONS"], [(card, forged)])  # acked
    tampered = cli(names, "replay", "--iccid", card)
    assert tampered.returncode == 1 and "first difference" in tampered.stdout

    future = cli(names, "replay", "--iccid", card, "--since", "2999-01-01")
    assert future.returncode == 2 and "in the future" in future.stderr
