"""The benchmark's fleet and traffic: deterministic, realistic mix."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

QUOTA = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Mix:
    cards: int
    records: int
    duplicate_share: float = 0.05
    late_share: float = 0.002
    heavy_share: float = 0.02
    seed: int = 42


def iccid(i: int) -> str:
    return f"898604{i:014d}"


def profile(card: str, now: datetime, quota: int = QUOTA) -> dict[str, object]:
    return {
        "type": "card.upserted",
        "event_id": f"bench-upsert-{card}",
        "occurred_at": now.isoformat(),
        "iccid": card,
        "customer_id": "bench",
        "plan": {
            "plan_id": "bench",
            "quota_bytes": quota,
            "monthly_fee": 100,
            "auto_suspend": True,
        },
        "billing": "prepaid",
        "balance": 10_000,
        "expires_at": "2099-01-01T00:00:00+08:00",
    }


def records(mix: Mix, now: datetime, run: str) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs: heavy cards cross their warn levels and quota, 5 % are
    redeliveries of earlier records, a few belong to the previous cycle (late)."""
    rng = random.Random(mix.seed)
    heavy = max(1, int(mix.cards * mix.heavy_share))
    # Heavy cards get enough volume to pass 100 % of quota over the run.
    heavy_bytes = 2 * QUOTA * heavy // max(1, int(mix.records * 0.2))
    out: list[tuple[bytes, bytes]] = []
    at = now.isoformat()
    late_at = (now - timedelta(days=40)).isoformat()
    for n in range(mix.records):
        if out and rng.random() < mix.duplicate_share:
            out.append(out[rng.randrange(len(out))])
            continue
        if rng.random() < 0.2:
            card, volume = iccid(rng.randrange(heavy)), heavy_bytes
        else:
            card, volume = iccid(rng.randrange(heavy, mix.cards)), rng.randint(0, 20_000)
        when = late_at if rng.random() < mix.late_share else at
        doc = {
            "record_id": f"b{run}-{n}",
            "iccid": card,
            "event_time": when,
            "bytes_up": volume // 3,
            "bytes_down": volume - volume // 3,
        }
        out.append((card.encode(), json.dumps(doc).encode()))
    return out


def utc_now() -> datetime:
    return datetime.now(UTC)
