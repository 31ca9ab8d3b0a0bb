"""What both services share, below them and above the contracts: errors and transient
classification with retry (`errors`), the Redis client for a single server or a cluster
and one Lua loader (`redis_client`, `lua`), the Kafka publisher, start-up checks
(`preflight`), dead-letter writing, log redaction, and process start-up (`process`).

Neither service imports the other; both import this (import-linter checks it).
"""
