"""No secret reaches the logs: a whole flow (usage_monitor worker -> card.alerts -> notifier ->
webhook and SMS gateway) at debug level, with credentials in every URL it is given, and the
logs of both processes scanned for each of them, for the phone numbers and for ICCIDs."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import httpx
import pytest

from ..conftest import BIN, KAFKA, KafkaIO, Worker, worker_env
from ..receiver import SECRET, Receiver, customer
from ..servers import PrivateRedis, free_port
from .helpers import card_event, now_iso, record, upsert, wait_for
from .test_notifier import eventually

pytestmark = pytest.mark.integration

REDIS_PASSWORD = "redispw-Q7x2Lk9v"
HOOK_PASSWORD = "hookpw-Zr81Nq3e"
HOOK_TOKEN = "hooktok-Vb52Mx0c"
SMS_TOKEN = "smstok-Hd64Py1w"
NUMBERS = ["+8613912345678", "+8613987654321"]
# Letters as well as digits (the contract allows them), so that no log line can hold any
# five of their last characters by coincidence.
CARD = "8986041234567ABCXYZ"
STRANGER = "8986049876543QRSTUV"
ANY_ICCID = re.compile(r"89[0-9A-Z]{17,18}")


def _notifier(env: dict[str, str], log: Path) -> Worker:
    return Worker(
        env,
        log,
        command=[str(BIN / "notifier"), "--loglevel", "debug"],
        port_var="NOTIFIER_WEB_PORT",
    )


async def test_no_secret_phone_number_or_iccid_in_either_services_logs(
    tmp_path: Path,
    names: dict[str, str],
    topics: dict[str, str],
    receiver: Receiver,
    kafka: KafkaIO,
) -> None:
    redis = PrivateRedis(tmp_path / "redis", password=REDIS_PASSWORD).start()
    # The SMS gateway refuses, echoing the number: the refusal is logged with its body.
    receiver.script["/sms"] = [(400, {}, f"bad request for {NUMBERS[0]}")]
    hook = receiver.url("/hook").replace("://", f"://hookuser:{HOOK_PASSWORD}@")
    hook += f"?token={HOOK_TOKEN}"
    sms_url = receiver.url(f"/sms?token={SMS_TOKEN}")
    procs: list[Worker] = []
    try:
        worker_redis = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis.port}/0"
        env = worker_env(names, REDIS_URL=worker_redis)
        worker = Worker(
            env,
            tmp_path / "usage-monitor.log",
            command=[str(BIN / "usage-monitor"), "worker", "--loglevel", "debug"],
        )
        procs.append(worker)
        await asyncio.to_thread(worker.start)
        notifier_env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
        notifier_env |= topics | {
            "NOTIFIER_TOPIC_ALERTS": names["USAGE_MONITOR_TOPIC_ALERTS"],
            "KAFKA_BOOTSTRAP_SERVERS": KAFKA,
            # The password in the query string this time (redis-py reads it there too).
            "REDIS_URL": f"redis://127.0.0.1:{redis.port}/0?password={REDIS_PASSWORD}",
            "NOTIFIER_WEB_PORT": str(free_port()),
            "NOTIFIER_ALLOW_PRIVATE_WEBHOOKS": "true",
            "NOTIFIER_RETRY_SCHEDULE_S": "[0.3]",
            "NOTIFIER_DISPATCH_INTERVAL_S": "0.05",
            "NOTIFIER_PRODUCER_IDEMPOTENCE": str(os.environ.get("KAFKA_IMPL") != "tansu"),
            "SMS_PROVIDER": "http",
            "SMS_HTTP_URL": sms_url,
        }
        notifier = _notifier(notifier_env, tmp_path / "notifier.log")
        procs.append(notifier)
        await kafka.send(
            topics["NOTIFIER_TOPIC_SETTINGS"],
            customer("acme", webhook=hook, sms=NUMBERS),
            key="acme",
        )
        await asyncio.to_thread(notifier.start)

        await kafka.send(names["USAGE_MONITOR_TOPIC_EVENTS"], upsert(CARD, 1000), key=CARD)
        renew = card_event("card.renewed", STRANGER, expires_at="2099-01-01T00:00:00+08:00")
        await kafka.send(names["USAGE_MONITOR_TOPIC_EVENTS"], renew, key=STRANGER)  # rejected
        await wait_for(lambda: worker.card(CARD).status_code == 200)
        usage = record(CARD, f"r-{now_iso()}", 900)
        await kafka.send(names["USAGE_MONITOR_TOPIC_USAGE"], usage, key=CARD)
        await eventually(lambda: len(receiver.hits["/hook"]) >= 1, timeout_s=60)
        await eventually(lambda: len(receiver.hits["/sms"]) >= len(NUMBERS), timeout_s=30)
        await eventually(lambda: _failed_sms(notifier) >= len(NUMBERS), timeout_s=30)
        await asyncio.sleep(1)  # the last log lines
    finally:
        for proc in procs:
            proc.stop()
        redis.stop()

    assert receiver.hits["/hook"][0].headers["Authorization"].startswith("Basic")
    logs = {p.log_path.name: p.log_path.read_text(errors="replace") for p in procs}
    assert "card.renewed" in logs["usage-monitor.log"]  # the rejection was logged
    assert "sms" in logs["notifier.log"]  # and so was the refused SMS
    secrets = [REDIS_PASSWORD, HOOK_PASSWORD, HOOK_TOKEN, SMS_TOKEN, SECRET, SECRET[6:], hook]
    secrets += NUMBERS + [n[1:] for n in NUMBERS]
    secrets += [CARD, STRANGER, CARD[-5:], STRANGER[-5:]]
    for name, text in logs.items():
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"{name} logs {leaked}"
        assert not ANY_ICCID.search(text), f"{name}: {ANY_ICCID.search(text)}"


def _failed_sms(w: Worker) -> float:
    try:
        text = httpx.get(f"{w.url}/metrics", timeout=2).text
    except httpx.HTTPError:
        return 0
    found = re.search(r'notifier_deliveries_total\{channel="sms",outcome="gave_up"\} (\S+)', text)
    return float(found.group(1)) if found else 0
