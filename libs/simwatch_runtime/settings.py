"""What both services' settings share: the Kafka and Redis they reach, named without the
service's prefix (`KAFKA_BOOTSTRAP_SERVERS`, `REDIS_URL`), read once from the environment."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings


class RuntimeSettings(BaseSettings):
    """Subclassed by each service's `Settings`, which sets its own ``env_prefix``."""

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS")
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias=AliasChoices("REDIS_URL"))
