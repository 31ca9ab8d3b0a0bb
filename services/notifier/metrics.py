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
    in_flight: Gauge
    latency: Histogram
    dead_letters: Counter
    transient_errors: Counter
    producer_renewals: Counter
    delivery_errors: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(f"notifier_{name}", doc, labels, registry=registry)

        return cls(
            alerts=counter(
                "alerts",
                "card.alerts consumed, by outcome (scheduled, duplicate, no_channel, "
                "webhook_only: a pool member's stop for a customer without a webhook, "
                "dead_lettered)",
                "outcome",
            ),
            settings=counter("settings", "customer.settings consumed, by outcome", "outcome"),
            deliveries=counter(
                "deliveries",
                "Delivery attempts by channel and outcome (delivered, retry, gave_up, disabled, "
                "refused, failed, uncertain, deferred, dropped)",
                "channel",
                "outcome",
            ),
            retry_queue=Gauge(
                "notifier_retry_queue_depth", "Deliveries waiting for an attempt", registry=registry
            ),
            in_flight=Gauge(
                "notifier_attempts_in_flight", "Delivery attempts in flight", registry=registry
            ),
            latency=Histogram(
                "notifier_delivery_latency_seconds",
                "Alert occurred_at to delivered",
                ["channel"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            dead_letters=counter(
                "dead_letters",
                "Inputs and exhausted deliveries sent to a dead-letter topic",
                "source",
                "reason",
            ),
            transient_errors=counter(
                "transient_errors",
                "Redis or Kafka failures retried in place, by component",
                "component",
            ),
            producer_renewals=counter(
                "kafka_producer_renewals",
                "Kafka producers replaced because they could no longer deliver (their sender "
                "task died, or an idempotence error)",
            ),
            delivery_errors=counter(
                "delivery_errors",
                "Unexpected errors in a delivery attempt (a bug or unusable stored data); "
                "the attempt counts against the retry schedule",
                "channel",
            ),
        )
