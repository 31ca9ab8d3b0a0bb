"""`usage-monitor simulate`: a synthetic IoT fleet producing `card.events` and `usage.records`.

Most cards idle along well under quota; a few heavy users cross their warn levels and the
quota; a trickle of records is redelivered (duplicates) or malformed. Point it at any Kafka
cluster to see simwatch work end to end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class FleetSpec:
    cards: int = 2000
    rate: float = 2000.0
    records: int = 100_000
    heavy_share: float = 0.03
    heavy_traffic_share: float = 0.3
    duplicate_share: float = 0.02
    malformed_share: float = 0.002
    expiring_share: float = 0.02
    quota_bytes: int = 64 * MIB
    pool_share: float = 0.25
    """Cards that are members of the fleet's pool (流量池), which runs out within a minute or
    two at the demo's rate and stops them all."""
    pool_quota_bytes: int = 4096 * MIB
    seed: int = 1
    first_iccid: int = 0


class Fleet:
    """Deterministic for a seed: the same spec yields the same cards and records."""

    def __init__(self, spec: FleetSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.iccids = [f"898604{spec.first_iccid + i:014d}" for i in range(spec.cards)]
        heavy = max(1, int(spec.cards * spec.heavy_share))
        self.heavy_list = self.rng.sample(self.iccids, heavy)
        self.heavy = set(self.heavy_list)
        self.pool_id = f"sim-pool-{spec.seed}"
        self.pooled = set(self.iccids[: int(spec.cards * spec.pool_share)])
        self._sent: list[dict[str, Any]] = []
        self._seq = 0
        # Record ids are unique per run: a second run is new traffic, not a redelivery.
        self.run_id = f"{int(time.time()):x}"

    def pool(self, now: datetime) -> dict[str, Any]:
        """The fleet's pool (`pool.events`), if it has members."""
        return {
            "type": "pool.upserted",
            "event_id": f"sim-pool-{self.spec.seed}-{self.run_id}",
            "occurred_at": now.isoformat(),
            "pool_id": self.pool_id,
            "customer_id": "customer-0",
            "quota_bytes": self.spec.pool_quota_bytes,
            "warn_percents": [80, 90],
            "on_exhausted": "suspend_all",
        }

    def profiles(self, now: datetime) -> list[dict[str, Any]]:
        out = []
        for i, iccid in enumerate(self.iccids):
            expiring = self.rng.random() < self.spec.expiring_share
            expires = now + (
                timedelta(days=self.rng.randint(1, 20)) if expiring else timedelta(days=365)
            )
            out.append(
                {
                    "type": "card.upserted",
                    "event_id": f"sim-upsert-{iccid}-{self.spec.seed}",
                    "occurred_at": now.isoformat(),
                    "iccid": iccid,
                    "customer_id": f"customer-{i % 7}",
                    "plan": {
                        "plan_id": "iot-64m",
                        "quota_bytes": self.spec.quota_bytes,
                        "monthly_fee": 500,
                        "auto_suspend": i % 5 != 0,
                        "warn_percents": [80, 90],
                        **({"pool_id": self.pool_id} if iccid in self.pooled else {}),
                    },
                    "billing": "prepaid",
                    "balance": self.rng.randint(0, 5000),
                    "expires_at": expires.isoformat(),
                }
            )
        return out

    def record(self, now: datetime) -> tuple[str | None, bytes]:
        """The next usage record (occasionally a duplicate or a malformed one)."""
        roll = self.rng.random()
        if roll < self.spec.malformed_share:
            return None, b'{"record_id": "broken", "iccid": "89", "bytes_up": -1}'
        if roll < self.spec.malformed_share + self.spec.duplicate_share and self._sent:
            doc = self.rng.choice(self._sent)
            return doc["iccid"], json.dumps(doc).encode()
        # Heavy users send a large share of the traffic, so they reach their quota soon.
        if self.rng.random() < self.spec.heavy_traffic_share:
            iccid = self.rng.choice(self.heavy_list)
        else:
            iccid = self.rng.choice(self.iccids)
        heavy = iccid in self.heavy
        volume = self.rng.randint(MIB // 2, 2 * MIB) if heavy else self.rng.randint(0, 64 * 1024)
        self._seq += 1
        doc = {
            "record_id": f"sim-{self.run_id}-{self._seq}",
            "iccid": iccid,
            "event_time": now.isoformat(),
            "bytes_up": volume // 4,
            "bytes_down": volume - volume // 4,
        }
        if len(self._sent) < 10_000:
            self._sent.append(doc)
        else:
            self._sent[self.rng.randrange(10_000)] = doc
        return iccid, json.dumps(doc).encode()


DEMO_WEBHOOK_SECRET = "whsec_ZGVtby1zZWNyZXQtZm9yLXNpbXdhdGNo"


def webhook_secret() -> str:
    """The customers' webhook secret: `SIMWATCH_WEBHOOK_SECRET`, never an argument (a command
    line is visible to every user of the machine in `ps`)."""
    return os.environ.get("SIMWATCH_WEBHOOK_SECRET") or DEMO_WEBHOOK_SECRET


async def run(args: argparse.Namespace) -> None:
    spec = FleetSpec(
        cards=args.cards,
        rate=args.rate,
        records=args.records,
        seed=args.seed,
        pool_share=args.pool_share if args.topic_pools else 0.0,
    )
    fleet = Fleet(spec)
    producer = AIOKafkaProducer(
        bootstrap_servers=args.bootstrap, linger_ms=10, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        now = datetime.now(UTC)
        if fleet.pooled and args.topic_pools:
            pool = fleet.pool(now)
            await producer.send(
                args.topic_pools, json.dumps(pool).encode(), key=fleet.pool_id.encode()
            )
        for doc in fleet.profiles(now):
            await producer.send(
                args.topic_events, json.dumps(doc).encode(), key=doc["iccid"].encode()
            )
        if args.webhook_url:
            for customer in sorted({f"customer-{i % 7}" for i in range(spec.cards)}):
                settings = {
                    "customer_id": customer,
                    "language": "zh-CN",
                    "webhook": {"url": args.webhook_url, "secret": webhook_secret()},
                }
                await producer.send(
                    args.topic_settings, json.dumps(settings).encode(), key=customer.encode()
                )
        await producer.flush()
        await _stream(producer, fleet, args)
    finally:
        await producer.stop()


async def _stream(producer: AIOKafkaProducer, fleet: Fleet, args: argparse.Namespace) -> None:
    columns = (
        TextColumn("[bold]usage records"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}"),
        TextColumn("{task.fields[rate]:,.0f}/s"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, disable=args.quiet) as progress:
        task = progress.add_task("records", total=args.records or None, rate=0.0)
        started = time.monotonic()
        sent = 0
        while not args.records or sent < args.records:
            due = int((time.monotonic() - started) * args.rate) - sent
            if due <= 0:
                await asyncio.sleep(0.01)
                continue
            now = datetime.now(UTC)
            for _ in range(min(due, 5000)):
                key, value = fleet.record(now)
                await producer.send(args.topic_usage, value, key=key.encode() if key else None)
                sent += 1
            elapsed = time.monotonic() - started
            progress.update(task, completed=sent, rate=sent / elapsed if elapsed else 0.0)
        await producer.flush()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    parser.add_argument("--cards", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=2000.0, help="records per second")
    parser.add_argument("--records", type=int, default=0, help="stop after this many (0: never)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--topic-usage", default="usage.records")
    parser.add_argument("--topic-events", default="card.events")
    parser.add_argument("--topic-settings", default="customer.settings")
    parser.add_argument(
        "--topic-pools", default="pool.events", help="the fleet's pool ('' for no pool)"
    )
    parser.add_argument(
        "--pool-share", type=float, default=0.25, help="share of cards in the fleet's pool"
    )
    parser.add_argument(
        "--webhook-url",
        default="",
        help="give every customer this webhook, signed with $SIMWATCH_WEBHOOK_SECRET",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
