"""The simulator's settings: ``PROVISIONING_SIM_<FIELD>`` in the environment (the topics also
from usage_monitor's variables, so one environment serves both), overridden by flags."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .network import Rates

PREFIX = "PROVISIONING_SIM_"


def _env(field: str, *others: str) -> AliasChoices:
    """The field's own variable first, then the others (usage_monitor's names)."""
    return AliasChoices(f"{PREFIX}{field.upper()}", *others)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=PREFIX, extra="ignore", frozen=True, populate_by_name=True
    )

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", min_length=1, validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS")
    )
    group_id: str = Field("simwatch-provisioning-sim", min_length=1)
    offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="where a new consumer group starts reading card.commands"
    )
    producer_idempotence: bool = Field(True, description="false for brokers without it (Tansu)")
    topic_commands: str = Field(
        "card.commands",
        min_length=1,
        validation_alias=_env("topic_commands", "USAGE_MONITOR_TOPIC_COMMANDS"),
    )
    topic_results: str = Field(
        "card.command_results",
        min_length=1,
        validation_alias=_env("topic_results", "USAGE_MONITOR_TOPIC_COMMAND_RESULTS"),
    )
    topic_events: str = Field(
        "card.events",
        min_length=1,
        validation_alias=_env("topic_events", "USAGE_MONITOR_TOPIC_EVENTS"),
    )

    delay_min_s: float = Field(0.2, ge=0)
    delay_max_s: float = Field(2.0, ge=0)
    drop_rate: float = Field(0.0, ge=0, le=1)
    fail_rate: float = Field(0.0, ge=0, le=1)
    reject_rate: float = Field(0.0, ge=0, le=1)
    duplicate_rate: float = Field(0.0, ge=0, le=1)

    observe_interval_s: float = Field(30.0, ge=0, description="0: no observations")
    observe_max: int = Field(1000, ge=1, description="cards observed per round")
    drift_rate: float = Field(0.0, ge=0, le=1)

    seed: int | None = None
    duration_s: float = Field(0.0, ge=0, description="0: until SIGTERM / SIGINT")
    summary_interval_s: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.delay_max_s < self.delay_min_s:
            raise ValueError("delay_max_s must not be below delay_min_s")
        self.rates()  # raises when drop + fail + reject exceed 1
        return self

    def rates(self) -> Rates:
        return Rates(
            drop=self.drop_rate,
            fail=self.fail_rate,
            reject=self.reject_rate,
            duplicate=self.duplicate_rate,
        )
