"""One workload and one oracle for every fault test, as in Kafka's own transaction tests.

A `Workload` is a fleet of cards with a quota and a stream of usage records (with
redeliveries) whose right outcome is known in advance. After any fault, `check` requires:

* every card's total equals the sum over its *distinct* records;
* each over-quota card has exactly one `suspend` (one command id), and no other card has one;
* each card has exactly the alerts its total implies, each decided once (one alert id);
* with a notifier and a webhook receiver: every alert reached the receiver, and
  (unless the test cut the network in the middle of responses) exactly once.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from simwatch_contracts.ids import stable_id
from simwatch_runtime.redis_client import AnyRedis
from usage_monitor.adapters.keys import Keys
from usage_monitor.domain.cycles import cycle_of

from ..conftest import KafkaIO
from ..receiver import Receiver, customer
from .helpers import iccid, record, upsert, wait_for_totals


@dataclass
class Workload:
    cards: list[str]
    batches: list[list[tuple[str, dict[str, Any]]]]
    expected: dict[str, int]
    quota: int
    customer: str = "acme"
    stats: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        seed: int,
        *,
        cards: int = 120,
        batches: int = 20,
        per_batch: int = 400,
        quota: int = 400_000,
        first_card: int = 50_000,
    ) -> Workload:
        """A quarter of the cards are heavy users that cross the quota; 5 % redeliveries."""
        rng = random.Random(seed)
        ids = [iccid(first_card + i) for i in range(cards)]
        heavy = set(ids[: cards // 4])
        mean_heavy = 2 * quota * cards // (batches * per_batch)  # heavy cards end near 2x
        expected: dict[str, int] = defaultdict(int)
        out = []
        for b in range(batches):
            batch = []
            for i in range(per_batch):
                card = rng.choice(ids)
                top = mean_heavy * 2 if card in heavy else quota // (batches * per_batch) + 1
                nbytes = rng.randint(0, top)
                batch.append((card, record(card, f"s{seed}-{b}-{i}", nbytes)))
                expected[card] += nbytes
            out.append(batch + rng.sample(batch, per_batch // 20))
        return cls(ids, out, dict(expected), quota)

    def stats_records(self) -> int:
        """Records in the stream, redeliveries included."""
        return sum(len(b) for b in self.batches)

    @property
    def over(self) -> set[str]:
        return {c for c, total in self.expected.items() if total >= self.quota}

    def profiles(self) -> list[tuple[str, dict[str, Any]]]:
        """Every card is also a member of one pool, never defined: its count must still be
        the sum of the cards' distinct records, however the stream was interrupted."""
        out = []
        for c in self.cards:
            event = upsert(c, self.quota, customer_id=self.customer)
            event["plan"]["pool_id"] = POOL
            out.append((c, event))
        return out

    def expected_alerts(self, card: str) -> set[tuple[str, int | None]]:
        total = self.expected.get(card, 0)
        want: set[tuple[str, int | None]] = {
            ("usage_threshold", p) for p in (80, 90) if total * 100 >= self.quota * p
        }
        if total >= self.quota:
            want |= {("quota_exhausted", 100), ("suspended", None)}
        return want

    def all_records(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for batch in self.batches:
            yield from batch

    async def produce(self, kafka: KafkaIO, topic: str, pause_s: float = 0.25) -> None:
        """Send the batches one by one, a pause between them: a stream a fault can hit."""
        for batch in self.batches:
            await kafka.send_many(topic, batch)
            await asyncio.sleep(pause_s)


async def start_notifier_for(
    w: Workload,
    start_notifier: Any,
    webhook: str,
    kafka: KafkaIO,
    names: dict[str, str],
    topics: dict[str, str],
    **env: str,
) -> Any:
    """The workload's customer gets `webhook`; a notifier reads the workers' alerts."""
    hook = customer(w.customer, webhook=webhook)
    await kafka.send(topics["NOTIFIER_TOPIC_SETTINGS"], hook, key=w.customer)
    return await asyncio.to_thread(
        start_notifier, NOTIFIER_TOPIC_ALERTS=names["USAGE_MONITOR_TOPIC_ALERTS"], **env
    )


def begin(
    w: Workload, kafka: KafkaIO, names: dict[str, str], pause_s: float = 0.25
) -> asyncio.Task[None]:
    """Profiles first, then the stream in the background, for a fault to strike mid-stream."""

    async def feed() -> None:
        await kafka.send_many(names["USAGE_MONITOR_TOPIC_EVENTS"], w.profiles())
        await w.produce(kafka, names["USAGE_MONITOR_TOPIC_USAGE"], pause_s)

    return asyncio.create_task(feed())


POOL = "oracle-pool"


async def pool_total(redis: AnyRedis, prefix: str, shards: int) -> int:
    """The oracle pool's count in the current cycle: its per-shard counts summed."""
    keys = Keys(prefix, shards)
    cycle = cycle_of(datetime.now(UTC), "Asia/Shanghai").isoformat()
    total = 0
    for shard in range(shards):
        total += int(await redis.hget(keys.pool_usage(shard, cycle), POOL) or 0)
    return total


async def check_totals(
    w: Workload, *, redis: AnyRedis, names: dict[str, str], shards: int = 4, timeout_s: float = 120
) -> None:
    """Every card's counter equals the bytes of its distinct records (each counted once)."""
    got = await wait_for_totals(
        redis, names["USAGE_MONITOR_REDIS_PREFIX"], w.expected, timeout_s, shards=shards
    )
    wrong = {c: (got[c], w.expected[c]) for c in w.expected if got[c] != w.expected[c]}
    assert not wrong, f"{len(wrong)} cards' totals differ from their distinct records: {wrong}"


async def check(
    w: Workload,
    *,
    redis: AnyRedis,
    names: dict[str, str],
    kafka: KafkaIO,
    shards: int = 4,
    receiver: Receiver | None = None,
    hook: str = "/hook",
    exactly_once: bool = True,
    timeout_s: float = 120,
    ledger: str | None = None,
) -> None:
    """`ledger`: the notifier's NOTIFIER_REDIS_PREFIX, to tell a webhook sent again after an
    answer that came too late from a defect (see `_unexplained`)."""
    started = time.monotonic()
    await check_totals(w, redis=redis, names=names, shards=shards, timeout_s=timeout_s)
    settled_s = time.monotonic() - started
    # Records counted before a card's profile arrived join the pool with the profile.
    want, deadline = sum(w.expected.values()), time.monotonic() + 30
    pooled = await pool_total(redis, names["USAGE_MONITOR_REDIS_PREFIX"], shards)
    while pooled != want and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        pooled = await pool_total(redis, names["USAGE_MONITOR_REDIS_PREFIX"], shards)
    assert pooled == want, f"the pool's count {pooled} differs from its members' {want}"

    over = w.over
    assert over and len(over) < len(w.cards), "the workload must push some cards over quota"
    commands = await kafka.read(
        names["USAGE_MONITOR_TOPIC_COMMANDS"],
        lambda ms: len({m["iccid"] for m in ms}) >= len(over),
        timeout_s=60,
    )
    suspend_ids: dict[str, set[str]] = defaultdict(set)
    for c in commands:
        assert (c["type"], c["trigger"]) == ("suspend", "over_quota"), c
        suspend_ids[c["iccid"]].add(c["command_id"])
    suspended = set(suspend_ids)
    assert suspended == over, (
        f"suspended cards differ from the over-quota cards: {len(over - suspended)} never "
        f"suspended {sorted(over - suspended)[:5]}, {len(suspended - over)} suspended under "
        f"quota {sorted(suspended - over)[:5]}"
    )
    assert all(len(ids) == 1 for ids in suspend_ids.values()), "a card was suspended twice"

    wanted = sum(len(w.expected_alerts(c)) for c in w.cards)
    alerts = await kafka.read(
        names["USAGE_MONITOR_TOPIC_ALERTS"],
        lambda ms: len({m["alert_id"] for m in ms}) >= wanted,
        timeout_s=60,
    )
    steps: dict[str, set[tuple[str, int | None]]] = defaultdict(set)
    ids_per_step: dict[tuple[str, str, int | None], set[str]] = defaultdict(set)
    for a in alerts:
        steps[a["iccid"]].add((a["type"], a.get("percent")))
        ids_per_step[(a["iccid"], a["type"], a.get("percent"))].add(a["alert_id"])
    for c in w.cards:
        assert steps.get(c, set()) == w.expected_alerts(c), f"alerts of card {c}"
    assert all(len(ids) == 1 for ids in ids_per_step.values()), "an alert was decided twice"
    w.stats.update(
        records=w.stats_records(), over=len(over), alerts=wanted, settled_ms=int(settled_s * 1e3)
    )
    if receiver is None:
        print(f"oracle ok: {w.stats}")  # shown with -s: the figures in docs/reliability.md
        return
    alert_ids = {a["alert_id"] for a in alerts}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not alert_ids <= set(receiver.webhook_ids(hook)) and loop.time() < deadline:
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # and nothing more arrives
    delivered = Counter(receiver.webhook_ids(hook))
    missing = alert_ids - set(delivered)
    assert not missing, f"{len(missing)} alerts never reached the webhook"
    assert set(delivered) == alert_ids, "a webhook for an alert that was never decided"
    twice = {i: n for i, n in delivered.items() if n > 1}
    w.stats.update(webhooks=sum(delivered.values()), repeats=sum(n - 1 for n in twice.values()))
    print(f"oracle ok: {w.stats}")
    if exactly_once:
        unexplained = await unexplained_repeats(twice, redis, ledger)
        assert not unexplained, f"alerts delivered more than once: {unexplained}"


async def unexplained_repeats(
    twice: dict[str, int], redis: AnyRedis, ledger: str | None
) -> dict[str, str]:
    """The repeats the notifier's ledger does not account for. A webhook whose answer did
    not arrive in time (NOTIFIER_WEBHOOK_TIMEOUT_S) is sent again with the same webhook-id:
    that repeat is one more recorded attempt of the alert's one delivery, under a claim of its
    own. Any other repeat (a second delivery of one alert, a second send under one claim, a
    lease that lapsed mid-attempt) is a defect. Without the ledger's prefix, none is allowed."""
    out = {}
    for alert_id, hits in twice.items():
        if ledger is None:
            out[alert_id] = f"{hits} hits"
            continue
        key = f"{{{ledger}}}:d:{stable_id('dlv', alert_id, 'webhook', 'webhook')}"
        raw = await redis.hgetall(key)
        record = {k.decode(): v.decode() for k, v in raw.items()}
        attempts, claims = int(record.get("attempts", 0)), int(record.get("claims", 0))
        if not (hits <= attempts == claims):
            out[alert_id] = f"{hits} hits, {attempts} attempts, {claims} claims"
    return out
