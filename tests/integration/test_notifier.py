"""The real `notifier` process on real Kafka and Redis, delivering to real HTTP servers on
loopback that fail, hang, disappear and throttle; every webhook is verified with the
`standardwebhooks` library."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, IllegalStateError
from standardwebhooks import Webhook

from notifier.adapters.keys import Keys as NotifierKeys
from simwatch_runtime.liveness import QUIET_S
from simwatch_runtime.redis_client import AnyRedis

from ..conftest import KAFKA, KafkaIO, Worker
from ..receiver import SECRET, Receiver, customer, verified
from .helpers import iccid, metric, now_iso
from .oracle import unexplained_repeats

pytestmark = pytest.mark.integration


def alert(
    card: str, kind: str = "usage_threshold", n: int = 0, customer: str = "acme", **extra: Any
) -> dict[str, Any]:
    doc = {
        "alert_id": f"alr-{card[-6:]}-{kind}-{n}",
        "type": kind,
        "iccid": card,
        "customer_id": customer,
        "cycle": "2026-11-01",
        "occurred_at": now_iso(),
    }
    if kind == "usage_threshold":
        doc |= {"percent": 80, "used_bytes": 800, "quota_bytes": 1000}
    if kind == "suspended":
        doc |= {"trigger": "over_quota", "reasons": ["over_quota"]}
    return doc | extra


async def eventually(check: Callable[[], bool], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_webhook_fails_then_succeeds_with_a_stable_id_and_valid_signatures(
    start_notifier: Any, receiver: Receiver, kafka: KafkaIO, topics: dict[str, str]
) -> None:
    receiver.script["/hook"] = [500, 503, 200]
    await kafka.send(
        topics["NOTIFIER_TOPIC_SETTINGS"],
        customer("acme", webhook=receiver.url("/hook")),
        key="acme",
    )
    start_notifier()
    card = iccid(7001)
    await kafka.send(topics["NOTIFIER_TOPIC_ALERTS"], alert(card), key=card)
    await eventually(lambda: len(receiver.hits["/hook"]) == 3)
    await asyncio.sleep(1.5)
    hits = receiver.hits["/hook"]
    assert len(hits) == 3, "delivered once, after two failures, and not again"
    assert set(receiver.webhook_ids("/hook")) == {f"alr-{card[-6:]}-usage_threshold-0"}
    payloads = [verified(h) for h in hits]
    assert payloads[0]["type"] == "usage_threshold" and payloads[0]["data"]["iccid"] == card
    assert hits[1].at - hits[0].at >= 0.2  # backoff between attempts


async def test_timeout_410_and_retry_after(
    start_notifier: Any, receiver: Receiver, kafka: KafkaIO, topics: dict[str, str]
) -> None:
    receiver.script["/slow"] = [("sleep", 3), 200]
    receiver.script["/gone"] = [410]
    receiver.script["/busy"] = [(429, {"Retry-After": "2"}), 200]
    settings = topics["NOTIFIER_TOPIC_SETTINGS"]
    for cid, path in (("slow", "/slow"), ("gone", "/gone"), ("busy", "/busy")):
        await kafka.send(settings, customer(cid, webhook=receiver.url(path)), key=cid)
    start_notifier()
    alerts = topics["NOTIFIER_TOPIC_ALERTS"]
    for cid in ("slow", "gone", "busy"):
        card = iccid(hash(cid) % 10_000)
        await kafka.send(alerts, alert(card, customer=cid), key=card)
    await eventually(lambda: len(receiver.hits["/slow"]) >= 2 and len(receiver.hits["/busy"]) >= 2)
    slow = receiver.hits["/slow"]
    assert slow[1].at - slow[0].at < 3  # the hung attempt was abandoned at the 1 s timeout
    busy = receiver.hits["/busy"]
    assert busy[1].at - busy[0].at >= 1.8  # Retry-After: 2 honoured
    # 410 disables the endpoint: a later alert for that customer is not sent there.
    await kafka.send(alerts, alert(iccid(8001), customer="gone", n=1), key=iccid(8001))
    await asyncio.sleep(2)
    assert len(receiver.hits["/gone"]) == 1


async def test_redirect_is_not_followed(
    start_notifier: Any, receiver: Receiver, kafka: KafkaIO, topics: dict[str, str]
) -> None:
    receiver.script["/moved"] = [(302, {"Location": "http://169.254.169.254/latest/meta-data"})]
    await kafka.send(
        topics["NOTIFIER_TOPIC_SETTINGS"],
        customer("acme", webhook=receiver.url("/moved")),
        key="acme",
    )
    start_notifier()
    card = iccid(7101)
    await kafka.send(topics["NOTIFIER_TOPIC_ALERTS"], alert(card), key=card)
    dlq = await kafka.read(topics["NOTIFIER_TOPIC_DELIVERY_DLQ"], lambda ms: len(ms) >= 1)
    # first attempt + 3 retries, never the Location (the letter's reason when it is not so:
    # twice in a dozen cluster runs no attempt was seen, cause not yet known)
    assert len(receiver.hits["/moved"]) == 4, dlq[0]["error"]
    assert "gave_up" in dlq[0]["error"] and "HTTP 302" in dlq[0]["error"]


async def test_sms_gateway_once_per_alert_and_number_in_the_customer_language(
    start_notifier: Any, receiver: Receiver, kafka: KafkaIO, topics: dict[str, str]
) -> None:
    numbers = ["+8613800000001", "+8613800000002"]
    await kafka.send(
        topics["NOTIFIER_TOPIC_SETTINGS"],
        customer("acme", sms=numbers, language="zh-CN"),
        key="acme",
    )
    start_notifier(SMS_PROVIDER="http", SMS_HTTP_URL=receiver.url("/sms"))
    card = iccid(7201)
    doc = alert(card)
    for _ in range(3):  # the same alert, redelivered
        await kafka.send(topics["NOTIFIER_TOPIC_ALERTS"], doc, key=card)
    await kafka.send(topics["NOTIFIER_TOPIC_ALERTS"], b"{broken", key=card)
    await eventually(lambda: len(receiver.hits["/sms"]) >= 2)
    await asyncio.sleep(1.5)
    sent = [json.loads(h.body) for h in receiver.hits["/sms"]]
    assert sorted(s["to"] for s in sent) == numbers
    assert all("本月流量已使用 80%" in s["text"] and card in s["text"] for s in sent)
    assert len({s["idempotency_key"] for s in sent}) == 2
    dlq = await kafka.read(topics["NOTIFIER_TOPIC_DLQ"], lambda ms: len(ms) >= 1)
    assert "Invalid JSON" in dlq[0]["error"]


async def test_crash_after_the_provider_call_never_sends_a_second_sms(
    start_notifier: Any, receiver: Receiver, kafka: KafkaIO, topics: dict[str, str]
) -> None:
    """The notifier dies while a non-idempotent provider (Twilio) is answering: after the
    restart the delivery is recorded as uncertain, and nothing is sent again."""
    receiver.script["/2010-04-01/Accounts/AC1/Messages.json"] = [("sleep", 10)]
    await kafka.send(
        topics["NOTIFIER_TOPIC_SETTINGS"], customer("acme", sms=["+8613800000009"]), key="acme"
    )
    twilio = {
        "SMS_PROVIDER": "twilio",
        "TWILIO_ACCOUNT_SID": "AC1",
        "TWILIO_AUTH_TOKEN": "t",
        "TWILIO_FROM": "+15550000000",
        "TWILIO_BASE_URL": receiver.url(""),
        # The restart claims the delivery when the lease ends; the dead attempt's own 3 s
        # deadline is not reached before the kill.
        "NOTIFIER_SMS_TIMEOUT_S": "3",
        "NOTIFIER_LEASE_S": "6",
    }
    first = start_notifier(**twilio)
    card = iccid(7301)
    await kafka.send(topics["NOTIFIER_TOPIC_ALERTS"], alert(card, "suspended"), key=card)
    path = "/2010-04-01/Accounts/AC1/Messages.json"
    await eventually(lambda: len(receiver.hits[path]) == 1)
    first.kill(signal.SIGKILL)  # between the provider call and the ledger update
    second = start_notifier(**twilio)
    await eventually(lambda: 'outcome="uncertain"' in _metrics(second), timeout_s=20)
    await asyncio.sleep(1)
    assert len(receiver.hits[path]) == 1
    hit = receiver.hits[path][0]
    assert b"To=%2B8613800000009" in hit.body and hit.headers["Authorization"].startswith("Basic")


async def test_two_replicas_deliver_each_alert_exactly_once(
    start_notifier: Any,
    receiver: Receiver,
    kafka: KafkaIO,
    topics: dict[str, str],
    redis: AnyRedis,
) -> None:
    receiver.script["/hook"] = [("sleep", 0.05)]  # slow enough that both replicas are busy
    await kafka.send(
        topics["NOTIFIER_TOPIC_SETTINGS"],
        customer("acme", webhook=receiver.url("/hook")),
        key="acme",
    )
    replicas = [start_notifier(), start_notifier()]
    cards = [iccid(7400 + i) for i in range(60)]
    await kafka.send_many(topics["NOTIFIER_TOPIC_ALERTS"], [(c, alert(c)) for c in cards])
    try:
        await eventually(lambda: len(set(receiver.webhook_ids("/hook"))) == len(cards), 30)
    except AssertionError:
        # Failed twice in CI on a Redis Cluster with nothing logged: say what each replica did.
        said = [await asyncio.to_thread(_outcomes, replica.url) for replica in replicas]
        delivered = len(set(receiver.webhook_ids("/hook")))
        raise AssertionError(f"{delivered} of {len(cards)} delivered; replicas: {said}") from None
    await asyncio.sleep(1.5)
    counts = Counter(receiver.webhook_ids("/hook"))
    assert len(counts) == len(cards)
    # Once each, but for an attempt whose answer came too late (a loaded machine), sent again
    # as a recorded attempt of the same delivery: the two replicas never both sent one.
    twice = {i: n for i, n in counts.items() if n > 1}
    assert not await unexplained_repeats(twice, redis, topics["NOTIFIER_REDIS_PREFIX"])


def _outcomes(url: str) -> str:
    """A notifier's alert outcomes and delivery attempts, from its /metrics."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=5).text
    except httpx.HTTPError as exc:
        return f"{url}: {exc!r}"
    wanted = ("notifier_alerts_total", "notifier_deliveries_total", "notifier_transient_errors")
    return "; ".join(
        line for line in text.splitlines() if line.startswith(wanted) and not line.endswith(" 0.0")
    )


async def test_a_replica_with_no_settings_partition_waits_for_their_holder(
    start_notifier: Any,
    receiver: Receiver,
    kafka: KafkaIO,
    topics: dict[str, str],
    redis: AnyRedis,
) -> None:
    """More replicas than settings partitions: the replica assigned none reads no settings
    itself, yet an alert it reads before the holder has stored them would find its customer
    missing and reach no one. It waits for the holder's committed offset to pass the end it
    saw at start, then goes on at once (not after the catch-up's 15 s bound)."""
    hook = customer("acme", webhook=receiver.url("/hook"))
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topics["NOTIFIER_TOPIC_SETTINGS"], 1, 1)])
    finally:
        await admin.close()
    await kafka.send(topics["NOTIFIER_TOPIC_SETTINGS"], hook, key="acme")
    holder = AIOKafkaConsumer(
        topics["NOTIFIER_TOPIC_SETTINGS"],
        bootstrap_servers=KAFKA,
        group_id=f"{topics['NOTIFIER_GROUP_ID']}-settings",
        client_id="0-holder",  # sorts before the notifier's member id: keeps the partition
        heartbeat_interval_ms=500,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await holder.start()
    try:
        fetched: dict[Any, Any] = {}
        while not fetched:
            fetched = await holder.getmany(timeout_ms=200)
        notifier = await asyncio.to_thread(start_notifier)
        card = iccid(7500)
        await kafka.send(topics["NOTIFIER_TOPIC_ALERTS"], alert(card), key=card)
        await asyncio.sleep(3)
        no_channel = r'notifier_alerts_total\{outcome="no_channel"\}'
        read_early = await asyncio.to_thread(metric, notifier.url, no_channel)
        assert read_early == 0, "an alert was read before its settings"
        assert not receiver.webhook_ids("/hook")
        # The holder stores what it read, then commits: the waiting replica goes on.
        await redis.set(
            NotifierKeys(topics["NOTIFIER_REDIS_PREFIX"]).customer("acme"), json.dumps(hook)
        )
        offsets = {tp: msgs[-1].offset + 1 for tp, msgs in fetched.items()}
        for _ in range(50):  # the notifier's join may still be rebalancing the group
            try:
                await holder.commit(offsets)
                break
            except (CommitFailedError, IllegalStateError):
                await holder.getmany(timeout_ms=200)  # rejoins; keeps its partition
        else:
            raise AssertionError("the holder could not commit in 10 s")
        stored = time.monotonic()
        await eventually(lambda: bool(receiver.webhook_ids("/hook")), 30)
        elapsed = time.monotonic() - stored
        assert holder.assignment(), "the notifier took the settings partition: nothing shown"
    finally:
        await holder.stop()
    assert elapsed < 8, f"first alert delivered {elapsed:.1f} s after the holder's commit"


async def test_invalid_settings_are_dead_lettered_and_rotated_secrets_all_sign(
    start_notifier: Any,
    receiver: Receiver,
    kafka: KafkaIO,
    topics: dict[str, str],
    redis: AnyRedis,
) -> None:
    short = "whsec_" + base64.b64encode(b"k" * 16).decode()
    new = "whsec_" + base64.b64encode(b"n" * 32).decode()
    invalid = {  # customer -> (webhook, words of the dead letter's error)
        "short": ({"url": receiver.url("/short"), "secret": short}, "at least 24 bytes"),
        "garbled": ({"url": receiver.url("/g"), "secret": "whsec_not*base64*at*all"}, "base64"),
        "port": ({"url": "http://127.0.0.1:70000/x", "secret": SECRET}, "webhook.url"),
    }
    settings_topic, alerts = topics["NOTIFIER_TOPIC_SETTINGS"], topics["NOTIFIER_TOPIC_ALERTS"]
    for cid, (webhook, _) in invalid.items():
        await kafka.send(settings_topic, {"customer_id": cid, "webhook": webhook}, key=cid)
    rotating = {"url": receiver.url("/hook"), "secret": SECRET, "secrets": [new]}
    await kafka.send(settings_topic, {"customer_id": "acme", "webhook": rotating}, key="acme")
    # Settings stored by an earlier version, which did not check secrets: never used.
    legacy_key = f"{{{topics['NOTIFIER_REDIS_PREFIX']}}}:c:legacy"
    legacy = {"customer_id": "legacy", "webhook": {"url": receiver.url("/old"), "secret": short}}
    await redis.set(legacy_key, json.dumps(legacy))
    try:
        worker = start_notifier()
        stored = 'notifier_settings_total{outcome="stored"} 1.0'
        await eventually(lambda: stored in _metrics(worker))  # acme's settings are known
        for n, cid in enumerate(["legacy", "short", "acme"]):
            card = iccid(7500 + n)
            await kafka.send(alerts, alert(card, customer=cid), key=card)
        await eventually(lambda: len(receiver.hits["/hook"]) == 1)
        letters = await kafka.read(topics["NOTIFIER_TOPIC_DLQ"], lambda ms: len(ms) >= 3)
    finally:
        await redis.delete(legacy_key)
    errors = {letter["key"]: letter["error"] for letter in letters}
    for cid, (_, words) in invalid.items():
        assert words in errors[cid], errors
    hit = receiver.hits["/hook"][0]
    for holder in (SECRET, new):
        assert Webhook(holder).verify(hit.body, hit.headers)["data"]["customer_id"] == "acme"
    await asyncio.sleep(0.5)
    assert not receiver.hits["/short"] and not receiver.hits["/old"]
    assert worker.proc is not None and worker.proc.poll() is None
    assert 'notifier_settings_total{outcome="dead_lettered"} 3.0' in _metrics(worker)


def _metrics(w: Worker) -> str:

    try:
        return httpx.get(f"{w.url}/metrics", timeout=2).text
    except httpx.HTTPError:
        return ""


async def test_a_pool_alert_keyed_by_the_pool_is_delivered_signed_once(
    start_notifier: Any, receiver: Receiver, kafka: KafkaIO, topics: dict[str, str]
) -> None:
    """A `pool_threshold` alert (流量池, #19: no ICCID, keyed by the pool id), published twice,
    reaches the customer's webhook once, signed, with the whole alert (its top cards too),
    and each SMS number once, in Chinese, naming the pool."""
    numbers = ["+8613800000031"]
    await kafka.send(
        topics["NOTIFIER_TOPIC_SETTINGS"],
        customer("acme", webhook=receiver.url("/hook"), sms=numbers, language="zh-CN"),
        key="acme",
    )
    start_notifier(SMS_PROVIDER="http", SMS_HTTP_URL=receiver.url("/sms"))
    top = [{"iccid": iccid(7600 + n), "used_bytes": (5 - n) * 2**30} for n in range(5)]
    doc = {
        "alert_id": "palr-pool-sh-7-80",
        "type": "pool_threshold",
        "pool_id": "pool-sh-7",
        "customer_id": "acme",
        "cycle": "2026-11-01",
        "occurred_at": now_iso(),
        "percent": 80,
        "used_bytes": 400 * 2**30,
        "quota_bytes": 500 * 2**30,
        "top_members": top,
    }
    for _ in range(2):  # the same alert, redelivered
        await kafka.send(topics["NOTIFIER_TOPIC_ALERTS"], doc, key="pool-sh-7")
    await eventually(lambda: len(receiver.hits["/hook"]) >= 1 and len(receiver.hits["/sms"]) >= 1)
    await asyncio.sleep(1.5)
    (hit,) = receiver.hits["/hook"]
    assert receiver.webhook_ids("/hook") == ["palr-pool-sh-7-80"]
    payload = verified(hit)  # raises unless signed with the customer's secret
    assert payload["type"] == "pool_threshold"
    data = payload["data"]
    assert "iccid" not in data and data["pool_id"] == "pool-sh-7" and data["top_members"] == top
    (sms,) = [json.loads(h.body) for h in receiver.hits["/sms"]]
    assert sms["to"] == numbers[0]
    assert sms["text"].startswith(
        "【simwatch】流量池 pool-sh-7 本周期已用 80%（400.00 GB/500.00 GB）"
    )
    assert f"用量最多的卡：{top[0]['iccid']}（5.00 GB）" in sms["text"]


async def test_an_idle_notifier_is_not_taken_for_stalled(
    start_notifier: Any, receiver: Receiver, kafka: KafkaIO, topics: dict[str, str], tmp_path: Any
) -> None:
    """The notifier's stall watchdogs (`simwatch_runtime/liveness.py`), with a 2 s stall
    timeout, on a notifier that delivered an alert and then has nothing to do for longer
    than the quiet rule and the timeout together: nothing waits, so nothing is a stall."""
    await kafka.send(
        topics["NOTIFIER_TOPIC_SETTINGS"],
        customer("acme", webhook=receiver.url("/idle")),
        key="acme",
    )
    notifier = start_notifier(NOTIFIER_CONSUMER_STALL_S="2")
    card = iccid(7101)
    await kafka.send(topics["NOTIFIER_TOPIC_ALERTS"], alert(card), key=card)
    await eventually(lambda: len(receiver.hits["/idle"]) == 1)
    await asyncio.sleep(QUIET_S + 2 + 5)
    log_text = (tmp_path / "notifier-0.log").read_text()
    assert "stalled" not in log_text, log_text[-3000:]
    assert notifier.proc is not None and notifier.proc.poll() is None
