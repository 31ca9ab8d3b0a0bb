"""Where input arrives: the Kafka consumers of card.alerts and customer.settings, and the
HTTP server (/health, /metrics). Each parses at the edge and hands typed objects inward."""
