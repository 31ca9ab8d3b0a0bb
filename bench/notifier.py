"""The notifier end to end (issue #20): `python -m bench.notifier` (`BENCH_QUICK=1` for a
5 000-alert burst instead of 10 000), or `run(quick)` from the main bench.

Real `notifier` processes on the shared Kafka and Redis (topics `bench<id>.nt.*`, Redis prefix
`bench<id>` in the bench DB), delivering to loopback endpoints in another process that verify
every signature with the `standardwebhooks` library (`bench.webhook_endpoint`). Measured:

* burst: N `usage_threshold` alerts for one customer, produced at once; the time from the first
  produce to the last verified delivery, and deliveries/s over it (one replica);
* latency: alerts offered at half that rate for a few seconds, alert (produced) -> verified;
* two replicas: the burst again with two notifier processes (same group, same ledger);
* fairness (on the two replicas): the same offered rate spread over 100 healthy customers
  (each its own port) and one customer whose endpoint hangs (a tenth of the alerts): the
  healthy ones' latency. Last, since the hanging attempts hold their slots for a while.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from .procs import BIN, KAFKA, LOGS, REDIS_URL, create_topics, free_port, produce

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
HEALTHY = 100


class Bench:
    """One run's topics, endpoints and notifier processes."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.prefix = f"bench{tag}"
        self.topics = {
            "NOTIFIER_TOPIC_ALERTS": f"bench{tag}.nt.alerts",
            "NOTIFIER_TOPIC_SETTINGS": f"bench{tag}.nt.settings",
            "NOTIFIER_TOPIC_DLQ": f"bench{tag}.nt.dlq",
            "NOTIFIER_TOPIC_DELIVERY_DLQ": f"bench{tag}.nt.deliveries.dlq",
        }
        self.control = self.slow = 0
        self.ports: list[int] = []  # [0]: the burst customer's; then the fleet's
        self.endpoint: subprocess.Popen[bytes] | None = None
        self.notifiers: list[tuple[subprocess.Popen[bytes], int]] = []
        self.http = httpx.Client(timeout=30)
        self.seq = 0

    # processes

    def start_endpoint(self) -> None:
        env = os.environ | {"BENCH_WEBHOOK_SECRET": SECRET}
        self.endpoint = subprocess.Popen(
            [sys.executable, "-m", "bench.webhook_endpoint", str(HEALTHY + 1)],
            env=env,
            stdout=subprocess.PIPE,
        )
        assert self.endpoint.stdout is not None
        bound = json.loads(self.endpoint.stdout.readline())
        self.control, self.slow, self.ports = bound["control"], bound["slow"], bound["ports"]
        self._wait(lambda: self.stats() is not None, "endpoint")

    def start_notifier(self) -> None:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
        env |= self.topics | {
            "KAFKA_BOOTSTRAP_SERVERS": KAFKA,
            "REDIS_URL": REDIS_URL,
            "NOTIFIER_REDIS_PREFIX": self.prefix,
            "NOTIFIER_GROUP_ID": f"{self.prefix}-notifier",
            "NOTIFIER_WEB_PORT": str(port),
            "NOTIFIER_ALLOW_PRIVATE_WEBHOOKS": "true",
            "NOTIFIER_PRODUCER_IDEMPOTENCE": str(os.environ.get("KAFKA_IMPL") != "tansu"),
        }
        LOGS.mkdir(parents=True, exist_ok=True)
        log = (LOGS / f"notifier-{len(self.notifiers)}.log").open("wb")
        proc = subprocess.Popen(
            [str(BIN / "notifier"), "--loglevel", "warning"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.notifiers.append((proc, port))
        self._wait(lambda: self._healthy(port), "notifier")

    def _healthy(self, port: int) -> bool:
        try:
            return self.http.get(f"http://127.0.0.1:{port}/health").status_code == 200
        except httpx.HTTPError:
            return False

    def _wait(self, ready: Any, what: str, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not ready")
            time.sleep(0.2)

    def stop(self) -> None:
        for proc, _ in self.notifiers:
            proc.send_signal(signal.SIGTERM)
        for proc, _ in self.notifiers:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # attempts to the hanging endpoint outlast it
                proc.kill()
                proc.wait()
        if self.endpoint is not None:
            self.endpoint.terminate()
            self.endpoint.wait()
        self.http.close()

    # the endpoint's view

    def stats(self) -> dict[str, int] | None:
        try:
            out: dict[str, int] = self.http.get(f"http://127.0.0.1:{self.control}/stats").json()
            return out
        except httpx.HTTPError:
            return None

    def arrivals(self) -> dict[str, float]:
        out: dict[str, float] = self.http.get(f"http://127.0.0.1:{self.control}/times").json()
        return out

    def verified(self) -> int:
        stats = self.stats()
        return 0 if stats is None else stats["verified"]

    # inputs

    def settings(self) -> list[tuple[bytes, bytes]]:
        def doc(cid: str, port: int) -> tuple[bytes, bytes]:
            hook = {"url": f"http://127.0.0.1:{port}/hook/{cid}", "secret": SECRET}
            return cid.encode(), json.dumps({"customer_id": cid, "webhook": hook}).encode()

        out = [doc("solo", self.ports[0]), doc("slow", self.slow)]
        return out + [doc(f"c{i:03d}", p) for i, p in enumerate(self.ports[1:])]

    def alert(self, customer: str) -> tuple[bytes, bytes]:
        self.seq += 1
        card = f"8986{self.seq:016d}"
        doc = {
            "alert_id": f"alr-{self.prefix}-{self.seq}",
            "type": "usage_threshold",
            "iccid": card,
            "customer_id": customer,
            "cycle": "2026-11-01",
            "percent": 80,
            "used_bytes": 858_993_459,
            "quota_bytes": 1_073_741_824,
            "occurred_at": datetime.now(UTC).isoformat(),
        }
        return card.encode(), json.dumps(doc).encode()

    async def setup(self) -> None:
        await create_topics(list(self.topics.values()))
        await produce(self.topics["NOTIFIER_TOPIC_SETTINGS"], self.settings())

    def wait_for(self, total: int, timeout_s: float) -> float:
        """Wait until `total` deliveries are verified; the time it happened (monotonic)."""
        deadline = time.monotonic() + timeout_s
        while self.verified() < total:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.verified()} of {total} delivered in {timeout_s} s")
            time.sleep(0.02)
        return time.monotonic()


def burst(b: Bench, n: int) -> float:
    """Seconds from producing `n` alerts for one customer to the last one verified."""
    before = b.verified()
    items = [b.alert("solo") for _ in range(n)]
    started = time.monotonic()
    asyncio.run(produce(b.topics["NOTIFIER_TOPIC_ALERTS"], items))
    return b.wait_for(before + n, timeout_s=max(120.0, n / 20)) - started


def offered(b: Bench, rate: float, seconds: float, customers: list[str]) -> dict[str, float]:
    """Offer alerts at `rate`/s for `seconds`, round-robin over `customers`; each alert id
    produced mapped to its occurred_at (epoch seconds)."""
    sent: dict[str, float] = {}

    async def go() -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=KAFKA, linger_ms=5, acks=1)
        await producer.start()
        try:
            start = time.monotonic()
            total = int(rate * seconds)
            for i in range(total):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                key, value = b.alert(customers[i % len(customers)])
                doc = json.loads(value)
                sent[doc["alert_id"]] = datetime.fromisoformat(doc["occurred_at"]).timestamp()
                await producer.send(b.topics["NOTIFIER_TOPIC_ALERTS"], value, key=key)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(go())
    return sent


def latencies(b: Bench, sent: dict[str, float], timeout_s: float = 60) -> list[float]:
    """Alert -> verified, in ms, for every id in `sent` (waits for all of them)."""
    deadline = time.monotonic() + timeout_s
    while True:
        arrivals = b.arrivals()
        if all(i in arrivals for i in sent) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return sorted(1000 * (arrivals[i] - t) for i, t in sent.items() if i in arrivals)


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else float("nan")


def measure(quick: bool) -> tuple[list[str], dict[str, Any]]:
    n = 5_000 if quick else 10_000
    seconds = 4.0 if quick else 8.0
    lines: list[str] = []
    b = Bench()
    try:
        b.start_endpoint()  # first: the customers' settings name its ports
        asyncio.run(b.setup())
        b.start_notifier()
        burst(b, 50)  # warm-up: partitions assigned, connections open
        took = burst(b, n)
        rate = n / took
        lines.append(
            f"notifier burst: {n:,} alerts (one customer) delivered and verified in "
            f"{took:.2f} s -> {rate:,.0f} deliveries/s, one replica"
        )
        half = rate / 2
        lat = latencies(b, offered(b, half, seconds, ["solo"]))
        lines.append(
            f"notifier latency at {half:,.0f}/s offered: alert -> verified p50 "
            f"{pct(lat, 50):.0f} ms, p99 {pct(lat, 99):.0f} ms ({len(lat)} alerts)"
        )
        # Before the hanging endpoint's step, whose attempts hold slots for a while.
        b.start_notifier()
        time.sleep(8)  # the group rebalances onto both replicas (heartbeats: 2.5 s)
        burst(b, 50)
        took2 = burst(b, n)
        rate2 = n / took2
        lines.append(
            f"notifier two replicas: {n:,} alerts in {took2:.2f} s -> {rate2:,.0f}/s, "
            f"{rate2 / rate:.2f}x one replica (one machine: 2 cores shared with Kafka, Redis "
            f"and the endpoint)"
        )
        fleet = [f"c{i:03d}" for i in range(HEALTHY)]
        mix = [c for i, c in enumerate(fleet) for c in ((c, "slow") if i % 9 == 0 else (c,))]
        sent = offered(b, half, seconds, mix)
        healthy = {i: t for i, t in sent.items() if i in _ids_of(b, sent, mix, "slow")}
        fair = latencies(b, healthy)
        lines.append(
            f"notifier fairness: {len(healthy)} alerts for {HEALTHY} healthy endpoints plus "
            f"{len(sent) - len(healthy)} for one that hangs, at {half:,.0f}/s: healthy p50 "
            f"{pct(fair, 50):.0f} ms, p99 {pct(fair, 99):.0f} ms, "
            f"{len(fair)}/{len(healthy)} delivered (two replicas)"
        )
        stats = b.stats() or {}
        lines.append(
            f"notifier endpoint: {stats.get('verified', 0):,} verified, "
            f"{stats.get('bad_signature', 0)} bad signatures, "
            f"{stats.get('duplicates', 0)} duplicates"
        )
    finally:
        b.stop()
    summary = {
        "burst_alerts": n,
        "burst_s": round(took, 2),
        "deliveries_per_s": round(rate),
        "p99_ms_at_half_rate": round(pct(lat, 99)),
        "p99_ms_healthy_with_slow": round(pct(fair, 99)),
        "two_replicas_ratio": round(rate2 / rate, 2),
    }
    return lines, summary


def _ids_of(b: Bench, sent: dict[str, float], mix: list[str], skip: str) -> set[str]:
    """The ids in `sent` (produced round-robin over `mix`, in order) not for `skip`."""
    ordered = sorted(sent, key=lambda i: int(i.rsplit("-", 1)[1]))
    return {i for k, i in enumerate(ordered) if mix[k % len(mix)] != skip}


def run(quick: bool) -> list[str]:
    """The lines the main bench prints (see `measure` for the summary as well)."""
    lines, summary = measure(quick)
    return [*lines, f"notifier: {json.dumps(summary)}"]


def main() -> int:
    for line in run(os.environ.get("BENCH_QUICK") == "1"):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
