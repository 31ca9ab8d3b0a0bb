"""The notifier's settings, read once from the environment in ``__main__``."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from simwatch_runtime.durability import Durability
from simwatch_runtime.settings import RuntimeSettings

DEFAULT_RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0)


class Settings(RuntimeSettings):
    """Environment variables: ``NOTIFIER_<FIELD>`` and the SMS providers' own names, plus the
    shared ``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL``."""

    model_config = SettingsConfigDict(env_prefix="NOTIFIER_", extra="ignore", frozen=True)

    group_id: str = Field("simwatch-notifier", min_length=1)
    web_bind: str = "127.0.0.1"
    web_port: int = Field(6067, ge=1, le=65535)
    topic_alerts: str = "card.alerts"
    topic_settings: str = "customer.settings"
    topic_dlq: str = "usage.records.dlq"
    topic_delivery_dlq: str = Field(
        "notifier.deliveries.dlq", description="deliveries given up or refused"
    )
    redis_prefix: str = Field("nt", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    producer_idempotence: bool = True
    durability: Durability = Field(
        Durability.FSYNC,
        description="what Redis must have done with the ledger writes of an input batch "
        "before its offsets are committed: fsync, replica or memory (docs/operations.md)",
    )
    durability_timeout_s: float = Field(5.0, gt=0, le=60)
    consumer_stall_s: float = Field(
        120.0,
        gt=0,
        description="a notifier whose settings or alerts consumer has records waiting, applied "
        "nothing for this long and retries nothing stops, for its supervisor to restart it "
        "(docs/reliability.md)",
    )

    allow_private_webhooks: bool = Field(
        False, description="allow http:// and loopback/private targets (local demo and tests)"
    )
    webhook_timeout_s: float = Field(15.0, gt=0)
    retry_schedule_s: tuple[float, ...] = Field(
        DEFAULT_RETRY_SCHEDULE, min_length=1, description="JSON list of delays between attempts"
    )
    retry_after_max_s: float = Field(86_400.0, gt=0)
    retry_after_min_s: float = Field(
        1.0, ge=0, description="a shorter Retry-After (even 0) waits this long"
    )
    lease_s: float = Field(
        60.0,
        gt=0,
        description="a claimed delivery returns after this; at least twice the longest "
        "attempt (NOTIFIER_WEBHOOK_TIMEOUT_S, NOTIFIER_SMS_TIMEOUT_S)",
    )
    concurrency: int = Field(100, ge=1, le=1000, description="attempts in flight per replica")
    per_host_concurrency: int = Field(
        32,
        ge=1,
        le=1000,
        description="attempts in flight per customer endpoint (its webhook, or its SMS) and "
        "connections per webhook host name, per replica: a slow endpoint holds no more",
    )
    dispatch_interval_s: float = Field(0.2, gt=0)

    sms_provider: Literal["none", "http", "twilio", "aliyun"] = Field(
        "none", validation_alias=AliasChoices("SMS_PROVIDER")
    )
    sms_http_url: str | None = Field(None, validation_alias=AliasChoices("SMS_HTTP_URL"))
    sms_rate_per_hour: int = Field(10, ge=1, description="SMS per number per hour")
    sms_timeout_s: float = Field(15.0, gt=0)
    quiet_bypass_types: tuple[str, ...] = Field(
        ("suspended",), description="alert types sent by SMS even in quiet hours"
    )
    twilio_account_sid: str | None = Field(
        None, validation_alias=AliasChoices("TWILIO_ACCOUNT_SID")
    )
    twilio_auth_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("TWILIO_AUTH_TOKEN")
    )
    twilio_from: str | None = Field(None, validation_alias=AliasChoices("TWILIO_FROM"))
    twilio_base_url: str = Field(
        "https://api.twilio.com", validation_alias=AliasChoices("TWILIO_BASE_URL")
    )
    aliyun_access_key_id: str | None = Field(
        None, validation_alias=AliasChoices("ALIYUN_ACCESS_KEY_ID")
    )
    aliyun_access_key_secret: SecretStr | None = Field(
        None, validation_alias=AliasChoices("ALIYUN_ACCESS_KEY_SECRET")
    )
    aliyun_sign_name: str | None = Field(None, validation_alias=AliasChoices("ALIYUN_SIGN_NAME"))
    aliyun_template_code: str | None = Field(
        None, validation_alias=AliasChoices("ALIYUN_TEMPLATE_CODE")
    )
    aliyun_endpoint: str = Field(
        "https://dysmsapi.aliyuncs.com/", validation_alias=AliasChoices("ALIYUN_ENDPOINT")
    )

    @model_validator(mode="after")
    def _lease_outlasts_an_attempt(self) -> Settings:
        """A lease that can end while its attempt still waits for an answer lets the next
        claim send the same message again: every slow endpoint would get it twice."""
        longest = self.longest_attempt_s
        if self.lease_s < 2 * longest:
            raise ValueError(
                f"NOTIFIER_LEASE_S ({self.lease_s:g}) must be at least twice the longest "
                f"attempt ({longest:g} s, NOTIFIER_WEBHOOK_TIMEOUT_S or NOTIFIER_SMS_TIMEOUT_S): "
                "a lease that ends while its attempt waits for an answer lets the delivery be "
                "claimed and sent again"
            )
        return self

    @property
    def longest_attempt_s(self) -> float:
        """The longest one attempt may take, on the channels this notifier sends on."""
        sms = self.sms_timeout_s if self.sms_provider != "none" else 0.0
        return max(self.webhook_timeout_s, sms)
