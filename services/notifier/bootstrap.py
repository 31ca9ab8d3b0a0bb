"""The notifier's composition root: builds every component from its settings, once, and
wires the adapters (Redis ledger, channels, Kafka publisher) to the service layer."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client import CollectorRegistry

from simwatch_runtime.durability import Barrier
from simwatch_runtime.kafka_publisher import KafkaPublisher
from simwatch_runtime.redis_client import AnyRedis, connect

from .adapters.keys import Keys
from .adapters.redis_ledger import RedisLedger
from .channels.sms import Aliyun, HttpGateway, Twilio
from .channels.webhook import WebhookSender
from .entrypoints.consumers import Inputs
from .metrics import Metrics
from .ports import SmsProvider
from .service_layer.dispatcher import Dispatcher
from .service_layer.scheduling import Scheduler
from .settings import Settings


class ConfigError(Exception):
    """A setting is invalid or a dependency cannot be reached."""


@dataclass(frozen=True, slots=True)
class Components:
    settings: Settings
    registry: CollectorRegistry
    metrics: Metrics
    redis: AnyRedis
    http: httpx.AsyncClient
    webhooks: WebhookSender
    publisher: KafkaPublisher
    ledger: RedisLedger
    dispatcher: Dispatcher
    inputs: Inputs
    barrier: Barrier

    async def close(self) -> None:
        await self.publisher.close()
        await self.barrier.close()
        await self.http.aclose()
        await self.webhooks.close()
        await self.redis.aclose()


def validate_sms(s: Settings) -> None:
    """Raise ConfigError when the chosen SMS provider lacks a setting it needs."""
    required = {
        "none": (),
        "http": (("SMS_HTTP_URL", s.sms_http_url),),
        "twilio": (
            ("TWILIO_ACCOUNT_SID", s.twilio_account_sid),
            ("TWILIO_AUTH_TOKEN", s.twilio_auth_token),
            ("TWILIO_FROM", s.twilio_from),
        ),
        "aliyun": (
            ("ALIYUN_ACCESS_KEY_ID", s.aliyun_access_key_id),
            ("ALIYUN_ACCESS_KEY_SECRET", s.aliyun_access_key_secret),
            ("ALIYUN_SIGN_NAME", s.aliyun_sign_name),
            ("ALIYUN_TEMPLATE_CODE", s.aliyun_template_code),
        ),
    }[s.sms_provider]
    missing = [name for name, value in required if not value]
    if missing:
        raise ConfigError(f"{', '.join(missing)} required with SMS_PROVIDER={s.sms_provider}")


def sms_provider(s: Settings, client: httpx.AsyncClient) -> SmsProvider | None:
    validate_sms(s)
    if s.sms_provider == "none":
        return None
    if s.sms_provider == "http":
        assert s.sms_http_url is not None
        return HttpGateway(client, s.sms_http_url, s.sms_timeout_s)
    if s.sms_provider == "twilio":
        assert s.twilio_account_sid, "validate_sms checked the settings"
        assert s.twilio_auth_token
        assert s.twilio_from
        return Twilio(
            client,
            s.twilio_base_url,
            s.twilio_account_sid,
            s.twilio_auth_token.get_secret_value(),
            s.twilio_from,
            s.sms_timeout_s,
        )
    assert s.aliyun_access_key_id
    assert s.aliyun_access_key_secret
    assert s.aliyun_sign_name
    assert s.aliyun_template_code
    return Aliyun(
        client,
        s.aliyun_endpoint,
        s.aliyun_access_key_id,
        s.aliyun_access_key_secret.get_secret_value(),
        s.aliyun_sign_name,
        s.aliyun_template_code,
        s.sms_timeout_s,
    )


def build(settings: Settings, registry: CollectorRegistry | None = None) -> Components:
    registry = registry or CollectorRegistry()
    metrics = Metrics.create(registry)
    redis = connect(settings.redis_url, socket_timeout=10, socket_connect_timeout=5)
    # SMS providers; webhooks have their own pinned client (channels/webhook.py).
    http = httpx.AsyncClient(follow_redirects=False, limits=httpx.Limits(max_connections=200))
    publisher = KafkaPublisher(
        settings.kafka_bootstrap_servers,
        client_id=settings.group_id,
        idempotence=settings.producer_idempotence,
        on_renew=metrics.producer_renewals.inc,
    )
    ledger = RedisLedger(redis, settings.redis_prefix)
    provider = sms_provider(settings, http)
    # Redirects are never followed: a webhook redirect is a failed attempt, not a new target.
    webhooks = WebhookSender(
        allow_private=settings.allow_private_webhooks,
        timeout_s=settings.webhook_timeout_s,
        max_connections=settings.concurrency,
        per_host=settings.per_host_concurrency,
    )

    async def publish(topic: str, key: bytes | None, value: bytes) -> None:
        await publisher.publish([(topic, key, value)])

    dispatcher = Dispatcher(ledger, webhooks, provider, settings, metrics, publish)
    scheduler = Scheduler(ledger, metrics, sms_enabled=provider is not None)
    barrier = Barrier(
        redis,
        settings.durability,
        Keys(settings.redis_prefix).durability,
        timeout_s=settings.durability_timeout_s,
    )
    inputs = Inputs(settings, scheduler, metrics, publish, dispatcher.wake, barrier)
    return Components(
        settings,
        registry,
        metrics,
        redis,
        http,
        webhooks,
        publisher,
        ledger,
        dispatcher,
        inputs,
        barrier,
    )
