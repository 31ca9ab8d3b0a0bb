"""usage_monitor's settings, read once from the environment in ``__main__``."""

from __future__ import annotations

import ipaddress

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from simwatch_contracts.common import _check_timezone
from simwatch_runtime.durability import Durability
from simwatch_runtime.settings import RuntimeSettings

from .domain.policy import Policy

DAY = 86_400
MIN_TOKEN_CHARS = 16


class Settings(RuntimeSettings):
    """Environment variables: ``USAGE_MONITOR_<FIELD>``, plus the shared ``KAFKA_BOOTSTRAP_SERVERS``
    and ``REDIS_URL``."""

    model_config = SettingsConfigDict(env_prefix="USAGE_MONITOR_", extra="ignore", frozen=True)

    app_id: str = Field("simwatch-usage-monitor", min_length=1)
    web_bind: str = "127.0.0.1"
    web_port: int = Field(6066, ge=1, le=65535)
    api_token: SecretStr | None = Field(
        None,
        description="bearer token of /cards… (required unless the web bind is loopback)",
        validate_default=True,
    )

    topic_usage: str = "usage.records"
    topic_events: str = "card.events"
    topic_commands: str = "card.commands"
    topic_alerts: str = "card.alerts"
    topic_decisions: str = Field("card.decisions", description="output: the audit trail")
    topic_pools: str = Field("pool.events", description="input: pool definitions (流量池)")
    topic_command_results: str = Field(
        "card.command_results", description="input: the provisioning adapter's results"
    )
    topic_dlq: str = "usage.records.dlq"
    topic_partitions: int = Field(12, ge=1, description="partitions of topics it creates")
    create_topics: bool = True

    redis_prefix: str = Field("sw", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    redis_shards: int = Field(12, ge=1, le=16384, description="= usage topic partitions")
    record_dedupe_ttl_s: int = Field(35 * DAY, ge=60)
    event_dedupe_ttl_s: int = Field(35 * DAY, ge=60)
    history_length: int = Field(
        20, ge=1, le=1000, description="decisions each card keeps for explain's history"
    )
    dedupe_buckets: int = Field(
        256,
        ge=1,
        le=1 << 20,
        description="sets per shard and event day holding remembered record ids (a power of "
        "two; size it so each holds at most set-max-intset-entries, docs/operations.md)",
    )
    future_skew_s: int = Field(600, ge=0)
    max_message_bytes: int = Field(
        64 * 1024, ge=1024, description="larger usage records and card events are dead-lettered"
    )
    native_records: bool = Field(
        True,
        description="read usage records in the plain form with the compiled reader (pydantic "
        "validates the rest); false: pydantic validates every record",
    )
    default_timezone: str = "Asia/Shanghai"
    default_cycle_day: int = Field(1, ge=1, le=28)

    producer_idempotence: bool = Field(
        True, description="idempotent producer; false for brokers without InitProducerId (Tansu)"
    )
    expiry_leads_days: tuple[int, ...] = Field((30, 7, 1), description="JSON list, e.g. [30,7,1]")
    grace_months: int = Field(3, ge=0, le=24)
    retention_fee: int = Field(500, ge=0, description="per grace month, minor units")
    balance_warning_days: int = Field(3, ge=0, le=27)
    postpaid_cancel_months: int = Field(3, ge=1, le=24)
    postpaid_due_days: int = Field(
        15, ge=0, le=27, description="payment period: a postpaid bill falls due this much later"
    )
    command_ack_timeout_s: int = Field(
        300,
        ge=0,
        le=7 * DAY,
        description="a command without a result this long is published again (attempt + 1, "
        "the wait doubling each time up to an hour); 0: commands are not tracked (no "
        "provisioning adapter answers on card.command_results)",
    )
    command_max_attempts: int = Field(
        5, ge=1, le=100, description="publications of a command before it is unconfirmed"
    )
    scheduler_interval_s: float = Field(
        1.0, gt=0, description="each worker's due-time scan period (over the shards it owns)"
    )
    pool_fanout_poll_s: float = Field(
        0.25,
        gt=0,
        description="how often each worker looks for pool fan-outs to do its part of (the "
        "members in the shards it owns)",
    )
    scheduler_batch: int = Field(
        2000, ge=1, description="due cards read, decided and committed per round trip"
    )
    clock_offset_s: float = Field(
        0.0,
        description="TESTS AND BENCHMARKS ONLY: added to the wall clock the worker decides by, "
        "to cross a cycle boundary on demand; never set it in production",
    )

    batch_max_records: int = Field(
        5000, ge=1, description="records per fetch (measured: 1000 -> 35k/s, 5000 -> 58k/s)"
    )
    fetch_max_wait_ms: int = Field(20, ge=0)
    broker_session_timeout_s: float = Field(10.0, gt=0)
    outbox_sweep_interval_s: float = Field(1.0, gt=0)
    outbox_entry_per_decision: bool = Field(
        True,
        description="one outbox entry per card decision, holding all its messages; false: "
        "one per message, as workers before 2026-11-29 wrote and read them (set it while "
        "rolling an upgrade from such a version, docs/operations.md)",
    )
    retry_backoff_max_s: float = Field(10.0, gt=0)
    consumer_stall_s: float = Field(
        120.0,
        gt=0,
        description="a worker whose usage consumer has records waiting, applied nothing for "
        "this long and retries nothing stops, for its supervisor to restart it "
        "(docs/reliability.md)",
    )
    durability: Durability = Field(
        Durability.FSYNC,
        description="what Redis must have done with a batch's writes before its offsets are "
        "committed: fsync (local AOF on disk), replica (held by a replica), memory "
        "(docs/operations.md)",
    )
    durability_timeout_s: float = Field(
        5.0, gt=0, le=60, description="longest wait for one durability confirmation"
    )

    @field_validator("api_token")
    @classmethod
    def _token(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            value = None  # an empty variable (compose's `${X:-}`) is no token
        if value is None:
            bind = info.data.get("web_bind", "127.0.0.1")
            if not is_loopback(bind):
                raise ValueError(
                    f"required when the web bind ({bind}) is not loopback: the card API "
                    "would be open to anyone who reaches the port"
                )
        elif len(value.get_secret_value()) < MIN_TOKEN_CHARS:
            raise ValueError(f"at least {MIN_TOKEN_CHARS} characters")
        return value

    @field_validator("dedupe_buckets")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value & (value - 1):
            raise ValueError("must be a power of two")
        return value

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _check_timezone(value)

    @property
    def policy(self) -> Policy:
        return Policy(
            expiry_leads_days=self.expiry_leads_days,
            grace_months=self.grace_months,
            retention_fee=self.retention_fee,
            balance_warning_days=self.balance_warning_days,
            postpaid_cancel_months=self.postpaid_cancel_months,
            postpaid_due_days=self.postpaid_due_days,
            default_timezone=self.default_timezone,
            default_cycle_day=self.default_cycle_day,
            ack_timeout_s=self.command_ack_timeout_s,
            ack_max_attempts=self.command_max_attempts,
        )

    @property
    def default_calendar(self) -> str:
        return calendar_key(self.default_timezone, self.default_cycle_day)


def calendar_key(tz: str, cycle_day: int) -> str:
    """How a card's billing calendar is named in Redis (`cal` field)."""
    return f"{tz}|{cycle_day}"


def is_loopback(host: str) -> bool:
    """Whether binding `host` serves this machine only (127.0.0.0/8, ::1, `localhost`)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost: assume it is reachable
        return False
