"""`make bench`: usage_monitor measured on local Kafka and Redis, beside a naive design."""
