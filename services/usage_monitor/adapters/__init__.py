"""Adapters at the edges: Redis (state, counters, outbox) and Kafka (publishing)."""
