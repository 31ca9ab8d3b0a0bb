"""The notifier's pure parts: backoff, Retry-After, quiet hours, texts, signatures."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook

from notifier.channels.sms import aliyun_signature
from notifier.channels.webhook import body_of, sign, sign_all
from notifier.domain import policy
from notifier.domain.delivery import Channel, plan, sms_key
from notifier.domain.messages import mask_iccid, render, volume
from notifier.domain.policy import backoff, quiet_until, retry_after
from simwatch_contracts import AlertType, CardAlert, QuietHours

NOW = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)  # 22:00 in Shanghai
ALERT = CardAlert.model_validate_json(
    json.dumps(
        {
            "alert_id": "alr-1",
            "type": "usage_threshold",
            "iccid": "89860412345678901234",
            "customer_id": "acme",
            "cycle": "2026-11-01",
            "percent": 80,
            "used_bytes": 858993459,
            "quota_bytes": 1073741824,
            "occurred_at": "2026-11-25T10:00:01+08:00",
        }
    )
)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_backoff_follows_the_schedule_with_jitter_then_gives_up() -> None:
    rng = random.Random(1)
    schedule = (5.0, 300.0, 1800.0)
    delays = [backoff(n, schedule, rng) for n in (1, 2, 3)]
    for delay, base in zip(delays, schedule, strict=True):
        assert delay is not None and 0.8 * base <= delay <= 1.2 * base
    assert backoff(4, schedule, rng) is None


def test_retry_after_seconds_date_and_garbage() -> None:
    assert retry_after("7", NOW, 3600) == 7
    assert retry_after("999999", NOW, 3600) == 3600
    assert retry_after("Wed, 25 Nov 2026 14:00:30 GMT", NOW, 3600) == 30
    assert retry_after("soon", NOW, 3600) is None
    assert retry_after(None, NOW, 3600) is None


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("Wed, 25 Nov 2026 14:00:30 -0000", 30),  # RFC 5322 "unknown zone": UTC
        ("Wed, 25 Nov 2026 14:00:30 +0000", 30),
        ("Wednesday, 25-Nov-26 14:00:30 GMT", 30),  # RFC 850, still valid HTTP
        ("Wed, 25 Nov 2026 13:00:00 GMT", 0),  # in the past: now
        (" 7 ", 7),
        ("\u0667", None),  # an Arabic-Indic seven: not delta-seconds
        ("\u00b2", None),  # superscript two: isdigit() but not a number
        ("-5", None),
        ("1e3", None),
        ("9" * 400, 3600),
        ("Wed, 99 Foo 99999 99:99:99 GMT", None),
        ("Wed, 25 Nov 2026 14:00:30", 30),  # no zone at all: UTC
    ],
)
def test_retry_after_odd_headers_never_raise(header: str, seconds: float | None) -> None:
    assert retry_after(header, NOW, 3600) == seconds


def test_retry_after_counts_against_the_schedule_and_is_floored() -> None:
    rng = random.Random(1)
    schedule = (5.0, 300.0)
    assert policy.next_delay(1, "0", NOW, schedule, rng, floor_s=1.0, cap_s=3600) == 1.0
    assert policy.next_delay(2, "120", NOW, schedule, rng, floor_s=1.0, cap_s=3600) == 120
    assert policy.next_delay(3, "0", NOW, schedule, rng, floor_s=1.0, cap_s=3600) is None
    assert policy.next_delay(3, "120", NOW, schedule, rng, floor_s=1.0, cap_s=3600) is None
    delay = policy.next_delay(1, None, NOW, schedule, rng, floor_s=1.0, cap_s=3600)
    assert delay is not None and 4 <= delay <= 6


def test_quiet_hours_across_midnight_defer_to_their_end() -> None:
    quiet = QuietHours(start="22:00", end="08:00", timezone="Asia/Shanghai")
    until = quiet_until(quiet, NOW)
    assert until is not None and until.astimezone(UTC) == NOW + timedelta(hours=10)
    assert quiet_until(quiet, NOW - timedelta(minutes=1)) is None
    assert quiet_until(quiet, NOW + timedelta(hours=9, minutes=59)) is not None
    day = QuietHours(start="12:00", end="13:00", timezone="UTC")
    assert quiet_until(day, datetime(2026, 11, 25, 12, 30, tzinfo=UTC)) == datetime(
        2026, 11, 25, 13, 0, tzinfo=UTC
    )
    assert quiet_until(None, NOW) is None


def test_texts_in_both_languages_say_what_to_do() -> None:
    zh = render(ALERT, "zh-CN")
    assert "89860412345678901234" in zh and "80%" in zh and "819.2 MB/1.00 GB" in zh
    en = render(ALERT, "en")
    assert "80% of its monthly data (819.2 MB of 1.00 GB)" in en
    suspended = CardAlert.model_validate_json(
        json.dumps(
            {
                **json.loads(ALERT.model_dump_json(exclude_none=True)),
                "type": AlertType.SUSPENDED,
                "trigger": "arrears",
                "reasons": ["arrears"],
            }
        )
    )
    assert "请充值后申请复机" in render(suspended, "zh-CN")
    assert "Recharge, then request a restore" in render(suspended, "en")
    assert volume(None) == "-" and mask_iccid(ALERT.iccid) == "…1234"


def test_signature_verifies_with_the_standard_webhooks_library() -> None:
    body = body_of(ALERT)
    stamp = int(datetime.now(UTC).timestamp())
    headers = {
        "webhook-id": ALERT.alert_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(SECRET, ALERT.alert_id, stamp, body),
    }
    payload = Webhook(SECRET).verify(body, headers)
    assert payload["type"] == "usage_threshold" and payload["data"]["percent"] == 80
    assert body_of(ALERT) == body  # the same bytes on every attempt
    with pytest.raises(Exception, match="signature"):
        Webhook(SECRET).verify(body + b" ", headers)


@pytest.mark.parametrize("occurred_at", ["2026-11-25T10:00:01+08:00", "2026-11-25T02:00:01.5Z"])
@pytest.mark.parametrize("customer_id", ["acme", 'q"b\\s\n\t\x01\x7f\u2028é中'])
def test_the_body_is_the_alert_as_compact_json_whatever_it_holds(
    occurred_at: str, customer_id: str
) -> None:
    """body_of places pydantic's JSON of the alert as it is: the bytes json.dumps gives for
    the parsed document (what it used to build), escapes and non-ASCII text included."""
    alert = ALERT.model_copy(
        update={"customer_id": customer_id, "occurred_at": datetime.fromisoformat(occurred_at)}
    )
    data = json.loads(alert.model_dump_json(exclude_none=True))
    doc = {"type": alert.type.value, "timestamp": data["occurred_at"], "data": data}
    expected = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    assert body_of(alert) == expected


def test_every_active_secret_signs_and_either_verifies() -> None:
    import base64

    old, new = SECRET, "whsec_" + base64.b64encode(b"n" * 32).decode()
    body = body_of(ALERT)
    stamp = int(datetime.now(UTC).timestamp())
    signature = sign_all([old, new], ALERT.alert_id, stamp, body)
    assert len(signature.split(" ")) == 2 and all(s.startswith("v1,") for s in signature.split())
    headers = {
        "webhook-id": ALERT.alert_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": signature,
    }
    for holder in (old, new):
        assert Webhook(holder).verify(body, headers)["data"]["percent"] == 80
    with pytest.raises(Exception, match="signature"):
        Webhook("whsec_" + base64.b64encode(b"x" * 32).decode()).verify(body, headers)


def test_deliveries_planned_per_channel_target_with_stable_ids() -> None:
    from simwatch_contracts import CustomerSettings

    settings = CustomerSettings.model_validate_json(
        json.dumps(
            {
                "customer_id": "acme",
                "webhook": {"url": "https://h.example/x", "secret": SECRET},
                "sms": {"numbers": ["+8613800000000", "+8613900000000"]},
            }
        )
    )
    planned = plan(ALERT, settings, sms_enabled=True)
    assert [(p.channel, p.target) for p in planned] == [
        (Channel.WEBHOOK, "webhook"),
        (Channel.SMS, "+8613800000000"),
        (Channel.SMS, "+8613900000000"),
    ]
    assert plan(ALERT, settings, sms_enabled=True) == planned
    assert [p.channel for p in plan(ALERT, settings, sms_enabled=False)] == [Channel.WEBHOOK]
    assert plan(ALERT, None, sms_enabled=True) == []
    assert sms_key("a", "+1") == sms_key("a", "+1") != sms_key("a", "+2")


def test_aliyun_signature_is_order_independent_and_keyed() -> None:
    q = {"B": "2", "A": "1 +*~"}
    assert aliyun_signature("s", "POST", q) == aliyun_signature(
        "s", "POST", dict(reversed(q.items()))
    )
    assert aliyun_signature("s", "POST", q) != aliyun_signature("t", "POST", q)


def test_missing_sms_provider_settings_are_named() -> None:
    from notifier.bootstrap import ConfigError, validate_sms
    from notifier.settings import Settings

    with pytest.raises(ConfigError, match=r"^TWILIO_AUTH_TOKEN, TWILIO_FROM required with"):
        validate_sms(Settings(sms_provider="twilio", twilio_account_sid="AC1"))
    validate_sms(Settings(sms_provider="http", sms_http_url="https://sms.example/send"))
    validate_sms(Settings())


def test_a_lease_shorter_than_twice_an_attempt_is_refused_by_name() -> None:
    """A lease that ends while its attempt waits for an answer lets a second claim send the
    same webhook or SMS again: refused at start-up, naming the variables to change."""
    from pydantic import ValidationError

    from notifier.settings import Settings
    from simwatch_runtime.process import settings_error

    Settings(lease_s=30, webhook_timeout_s=15)  # exactly twice: accepted
    with pytest.raises(ValidationError) as refused:
        Settings(lease_s=20, webhook_timeout_s=15)
    line = settings_error(refused.value, "NOTIFIER_")
    assert line.startswith("NOTIFIER_LEASE_S (20) must be at least twice"), line
    assert "NOTIFIER_WEBHOOK_TIMEOUT_S" in line
    # The SMS deadline counts only when SMS are sent.
    Settings(lease_s=4, webhook_timeout_s=1, sms_timeout_s=15)
    with pytest.raises(ValidationError, match="longest attempt \\(15 s"):
        Settings(lease_s=4, webhook_timeout_s=1, sms_timeout_s=15, sms_provider="twilio")


def test_a_suspended_alert_says_what_lifts_each_reason() -> None:
    """The usage_monitor decides `lifts` with explain's rules; the SMS says it concretely."""
    from datetime import UTC, datetime

    from simwatch_contracts import LiftHint, Reason

    at = datetime(2026, 12, 1, 2, tzinfo=UTC)
    alert = ALERT.model_copy(
        update={
            "type": AlertType.SUSPENDED,
            "trigger": Reason.ARREARS,
            "reasons": (Reason.ARREARS, Reason.OVER_QUOTA),
            "occurred_at": datetime.fromisoformat("2026-12-01T10:00:00+08:00"),
            "lifts": (
                LiftHint(reason=Reason.ARREARS, how="recharge", amount=1250),
                LiftHint(
                    reason=Reason.OVER_QUOTA, how="next_cycle", at=at.replace(day=31, hour=16)
                ),
            ),
        }
    )
    zh, en = render(alert, "zh-CN"), render(alert, "en")
    assert "请至少充值 12.50 元" in zh and "2027-01-01 00:00" in zh
    assert "Recharge at least CNY 12.50" in en and "(2027-01-01 00:00)" in en
