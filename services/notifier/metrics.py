"""The notifier's Prometheus metrics, one typed container on an injected registry.
Labels are small fixed sets: never a phone number, ICCID, URL or customer id."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200, 36000)


@dataclass(frozen=True, slots=True)
class Metrics:
    alerts: Counter
    settings: Counter
    deliveries: Counter
    retry_queue: Gauge
    latency: Histogram
    dead_letters: Counter
    transient_errors: Counter
    delivery_errors: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        p = "notifier"
        return cls(
            alerts=Counter(
                f"{p}_alerts",
                "card.alerts consumed, by outcome (scheduled, "
                "duplicate, no_channel, dead_lettered)",
                ["outcome"],
                registry=registry,
            ),
            settings=Counter(
                f"{p}_settings",
                "customer.settings consumed, by outcome",
                ["outcome"],
                registry=registry,
            ),
            deliveries=Counter(
                f"{p}_deliveries",
                "Delivery attempts by channel and outcome "
                "(delivered, retry, gave_up, disabled, refused, failed, "
                "uncertain, deferred, dropped)",
                ["channel", "outcome"],
                registry=registry,
            ),
            retry_queue=Gauge(
                f"{p}_retry_queue_depth", "Deliveries waiting for an attempt", registry=registry
            ),
            latency=Histogram(
                f"{p}_delivery_latency_seconds",
                "Alert occurred_at to delivered",
                ["channel"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            dead_letters=Counter(
                f"{p}_dead_letters",
                "Inputs and exhausted deliveries sent to a dead-letter topic",
                ["source", "reason"],
                registry=registry,
            ),
            transient_errors=Counter(
                f"{p}_transient_errors",
                "Redis or Kafka failures retried in place, by component",
                ["component"],
                registry=registry,
            ),
            delivery_errors=Counter(
                f"{p}_delivery_errors",
                "Unexpected errors in a delivery attempt (a bug or unusable stored data); "
                "the attempt counts against the retry schedule",
                ["channel"],
                registry=registry,
            ),
        )
