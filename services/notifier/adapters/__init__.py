"""Redis (ledger, due queue, customer settings) and Kafka adapters of the notifier."""
