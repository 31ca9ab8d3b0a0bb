"""Where input arrives: the Kafka consumers and the HTTP server."""
