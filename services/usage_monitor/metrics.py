"""usage_monitor's Prometheus metrics, in one typed container on an injected registry.

Label values come from small fixed sets; never an ICCID, MSISDN or customer id.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400)
BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000)
ENFORCEMENT_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 900, 1800, 3600, 21600, 86400)
OVERSHOOT_BUCKETS = tuple(float(1024 * 4**i) for i in range(12))  # 1 KiB .. 4 GiB
ACK_COUNTS = ("pending", "unconfirmed", "rejected")
"""The fleet's tracked commands by status (kept in Redis with the cards; see `enforcement`)."""


@dataclass(frozen=True, slots=True)
class Metrics:
    records: Counter
    card_events: Counter
    alerts: Counter
    commands: Counter
    dead_letters: Counter
    batch_records: Histogram
    batch_seconds: Histogram
    event_lag: Histogram
    evaluations: Counter
    outbox_published: Counter
    outbox_depth: Gauge
    transient_errors: Counter
    producer_renewals: Counter
    card_transitions: Counter
    scheduled: Counter
    consumer_lag: Gauge
    suspended_cards: Gauge
    record_latency: Histogram
    durability_seconds: Histogram
    durability_failures: Counter
    uncommitted_seconds: Gauge
    commands_tracked: dict[str, Gauge]
    command_results: Counter
    command_retries: Counter
    commands_gave_up: Counter
    commands_reconciled: Counter
    network_divergent: Counter
    enforcement_seconds: Histogram
    overshoot_bytes: Histogram
    pool_fanouts: Counter
    pool_fanout_seconds: Histogram

    def __post_init__(self) -> None:
        # Series that alert rules take `increase()` of must exist from the start at 0:
        # a labelled counter appears only at its first increment, already at 1.
        for status, outcome in (
            ("rejected", "rejected"),
            ("applied", "confirmed"),
            ("failed", "retry"),
            ("failed", "unconfirmed"),
        ):
            self.command_results.labels(status, outcome)
        for kind in ("suspend", "resume", "cancel"):
            self.command_retries.labels(kind)
            self.commands_gave_up.labels(kind)

    def count_dead_letter(self, source: str, reason: str) -> None:
        self.dead_letters.labels(source, reason).inc()

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        p = "usage_monitor"
        return cls(
            records=Counter(
                f"{p}_records",
                "Usage records by outcome, each record exactly one of: applied, duplicate, "
                "late (counted in a closed cycle), unknown_card (counted, no profile yet), "
                "dead_lettered",
                ["outcome"],
                registry=registry,
            ),
            card_events=Counter(
                f"{p}_card_events",
                "card.events by type and outcome",
                ["type", "outcome"],
                registry=registry,
            ),
            alerts=Counter(f"{p}_alerts", "Alerts decided, by type", ["type"], registry=registry),
            commands=Counter(
                f"{p}_commands",
                "Commands decided, by type and trigger",
                ["type", "trigger"],
                registry=registry,
            ),
            dead_letters=Counter(
                f"{p}_dead_letters",
                "Messages sent to the dead-letter topic (reason: malformed, future_event, "
                "too_large)",
                ["source", "reason"],
                registry=registry,
            ),
            batch_records=Histogram(
                f"{p}_batch_records",
                "Records per processed batch",
                buckets=BATCH_BUCKETS,
                registry=registry,
            ),
            batch_seconds=Histogram(
                f"{p}_batch_seconds",
                "Time to process one batch, fetch to offset commit",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            event_lag=Histogram(
                f"{p}_event_lag_seconds",
                "Processing time minus record event time (one record in 8 sampled)",
                buckets=LAG_BUCKETS,
                registry=registry,
            ),
            evaluations=Counter(
                f"{p}_evaluations",
                "Card evaluations by result (changed, unchanged, unknown_card, conflict)",
                ["result"],
                registry=registry,
            ),
            outbox_published=Counter(
                f"{p}_outbox_published",
                "Outbox messages published to Kafka",
                ["topic"],
                registry=registry,
            ),
            outbox_depth=Gauge(
                f"{p}_outbox_depth",
                "Outbox entries waiting in Redis (all shards): a card decision's messages each",
                registry=registry,
            ),
            transient_errors=Counter(
                f"{p}_transient_errors",
                "Retried errors by component (redis, kafka)",
                ["component"],
                registry=registry,
            ),
            producer_renewals=Counter(
                f"{p}_kafka_producer_renewals",
                "Kafka producers replaced because they could no longer deliver (their sender "
                "task died, or an idempotence error); the outbox publishes again",
                registry=registry,
            ),
            scheduled=Counter(
                f"{p}_scheduled_evaluations",
                "Cards brought up to date because a step fell due",
                registry=registry,
            ),
            consumer_lag=Gauge(
                f"{p}_consumer_lag",
                "usage.records not yet processed, per partition (highwater from the last fetch "
                "minus the committed position)",
                ["partition"],
                registry=registry,
            ),
            suspended_cards=Gauge(
                f"{p}_suspended_cards",
                "Cards suspended now, whole fleet (every worker reports the same: use max)",
                registry=registry,
            ),
            record_latency=Histogram(
                f"{p}_record_latency_seconds",
                "Kafka append of a batch's oldest record to the batch's decisions published "
                "and offsets committed (an upper bound of record-to-command latency)",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            durability_seconds=Histogram(
                f"{p}_durability_seconds",
                "One durability barrier: from its start to Redis confirming every batch "
                "applied before it (USAGE_MONITOR_DURABILITY)",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            durability_failures=Counter(
                f"{p}_durability_failures",
                "Barriers Redis did not confirm (kind: unconfirmed = timed out or refused, tried "
                "again; reapplied = a primary died, restarted or failed over, so the batches "
                "were applied again); their offsets are not committed meanwhile",
                ["kind"],
                registry=registry,
            ),
            uncommitted_seconds=Gauge(
                f"{p}_uncommitted_seconds",
                "Age of the oldest applied usage batch whose offsets wait for durability",
                registry=registry,
            ),
            card_transitions=Counter(
                f"{p}_suspensions",
                "Reasons added to cards, by reason",
                ["reason"],
                registry=registry,
            ),
            commands_tracked={
                status: Gauge(
                    f"{p}_commands_{status}",
                    f"Cards whose latest command is {status} (no result yet / every attempt "
                    "unanswered / refused by the network), whole fleet: use max",
                    registry=registry,
                )
                for status in ACK_COUNTS
            },
            command_results=Counter(
                f"{p}_command_results",
                "card.command_results by status and what they did (confirmed, retry, "
                "rejected, unconfirmed, superseded, stale, dead_lettered)",
                ["status", "outcome"],
                registry=registry,
            ),
            command_retries=Counter(
                f"{p}_command_retries",
                "Commands published again (the same command_id, the next attempt)",
                ["type"],
                registry=registry,
            ),
            commands_gave_up=Counter(
                f"{p}_commands_gave_up",
                "Commands marked unconfirmed: no result after every attempt",
                ["type"],
                registry=registry,
            ),
            commands_reconciled=Counter(
                f"{p}_commands_reconciled",
                "Corrective commands: the network's own view differed from simwatch's "
                "(source: observation = card.network_observed, result = a result's state)",
                ["type", "source"],
                registry=registry,
            ),
            network_divergent=Counter(
                f"{p}_network_divergent",
                "Differences with the network no command may correct (it cancelled a card "
                "simwatch holds)",
                ["network_state"],
                registry=registry,
            ),
            enforcement_seconds=Histogram(
                f"{p}_enforcement_seconds",
                "From the arrival of the input that caused a command (the usage batch that "
                "crossed the quota, the event) to the network's applied result",
                ["type"],
                buckets=ENFORCEMENT_BUCKETS,
                registry=registry,
            ),
            overshoot_bytes=Histogram(
                f"{p}_overshoot_bytes",
                "Bytes counted for a card after its over-quota suspension was decided (at: "
                "enforced = when the network confirmed the suspension, cycle_end = final, "
                "when the over-quota reason ends)",
                ["at"],
                buckets=OVERSHOOT_BUCKETS,
                registry=registry,
            ),
            pool_fanouts=Counter(
                f"{p}_pool_fanouts",
                "Pools whose members were all evaluated again (a pool's stop began or ended)",
                registry=registry,
            ),
            pool_fanout_seconds=Histogram(
                f"{p}_pool_fanout_seconds",
                "From a pool's exhaustion (or its end) committed to every member's decision "
                "committed (their commands are in the outbox)",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
        )
