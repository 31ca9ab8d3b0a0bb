"""The wire contract: examples round-trip, every malformed case is refused with a clear reason,
and the checked-in JSON Schemas match the models."""

from __future__ import annotations

import base64
import json

import pytest
from pydantic import ValidationError

from simwatch_contracts import (
    CardAlert,
    CardCommand,
    CardUpserted,
    CustomerSettings,
    DeadLetter,
    UsageRecord,
    describe_validation_error,
    parse_card_event,
)
from simwatch_contracts.schemas import SCHEMA_DIR, render

ICCID = "89860412345678901234"
RECORD = {
    "record_id": "cdr-20261125-000001",
    "iccid": ICCID,
    "event_time": "2026-11-25T10:00:00+08:00",
    "bytes_up": 1024,
    "bytes_down": 4096,
}
UPSERT = {
    "type": "card.upserted",
    "event_id": "evt-1",
    "occurred_at": "2026-11-25T10:00:00+08:00",
    "iccid": ICCID,
    "customer_id": "acme",
    "plan": {
        "plan_id": "iot-1g",
        "quota_bytes": 1073741824,
        "monthly_fee": 1000,
        "auto_suspend": True,
    },
    "billing": "prepaid",
    "balance": 5000,
    "expires_at": "2027-11-25T00:00:00+08:00",
}


SECRET_A = "whsec_" + base64.b64encode(b"a" * 24).decode()
SECRET_B = base64.b64encode(bytes(range(32))).decode()  # `whsec_` is optional


def reason(model: type, doc: object) -> str:
    with pytest.raises(ValidationError) as info:
        model.model_validate_json(json.dumps(doc))  # type: ignore[attr-defined]
    return describe_validation_error(info.value)


def test_usage_record_round_trips() -> None:
    record = UsageRecord.model_validate_json(json.dumps(RECORD))
    assert record.total_bytes == 5120
    assert UsageRecord.model_validate_json(record.model_dump_json()) == record


def test_unknown_fields_are_ignored() -> None:
    record = UsageRecord.model_validate_json(json.dumps({**RECORD, "apn": "iot.example"}))
    assert record.record_id == RECORD["record_id"]


def test_lower_case_iccid_is_upper_cased() -> None:
    doc = {**RECORD, "iccid": "8986041234567890123a"}
    assert UsageRecord.model_validate_json(json.dumps(doc)).iccid == "8986041234567890123A"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"iccid": "8986041234567890123456789"}, "iccid: Value error, ICCID must be"),
        ({"iccid": "12860412345678901234"}, "iccid: Value error, ICCID must be"),
        ({"iccid": "89860412345678-01234"}, "iccid: Value error, ICCID must be"),
        # Letters are ASCII only, before and after upper-casing: "ß".upper() is "SS" (20
        # characters from 19), dotless i (U+0131) upper-cases to "I"; the Python check
        # upper-cased first and took both until 2026-11-29.
        ({"iccid": "89860412345678901ß"}, "iccid: Value error, ICCID must be"),
        ({"iccid": "8986041234567890123\u0131"}, "iccid: Value error, ICCID must be"),
        ({"iccid": "89860412345678901234\n"}, "iccid: Value error, ICCID must be"),
        ({"iccid": 89860412345678901234}, "iccid: Input should be a valid string"),
        ({"bytes_up": -1}, "bytes_up: Input should be greater than or equal to 0"),
        ({"bytes_down": 2**40 + 1}, "bytes_down: Input should be less than or equal to"),
        ({"bytes_up": "1024"}, "bytes_up: Input should be a valid integer"),
        ({"bytes_up": 1.5}, "bytes_up: Input should be a valid integer"),
        ({"bytes_up": True}, "bytes_up: Input should be a valid integer"),
        ({"event_time": "2026-11-25T10:00:00"}, "event_time: Input should have timezone info"),
        ({"event_time": 1764036000}, "event_time: Input should be a valid datetime"),
        ({"record_id": ""}, "record_id: Value error, id must be"),
        ({"record_id": "x" * 129}, "record_id: Value error, id must be"),
        ({"record_id": "记录-1"}, "record_id: Value error, id must be"),
        ({"record_id": "cdr-1\n"}, "record_id: Value error, id must be"),
    ],
)
def test_malformed_usage_records_are_refused(change: dict[str, object], expected: str) -> None:
    assert reason(UsageRecord, {**RECORD, **change}).startswith(expected)


@pytest.mark.parametrize("missing", ["record_id", "iccid", "event_time", "bytes_up", "bytes_down"])
def test_missing_required_field_is_named(missing: str) -> None:
    doc = {k: v for k, v in RECORD.items() if k != missing}
    assert reason(UsageRecord, doc) == f"{missing}: Field required"


def test_nan_is_not_a_volume() -> None:
    raw = json.dumps(RECORD).replace("1024", "NaN")
    with pytest.raises(ValidationError):
        UsageRecord.model_validate_json(raw)


def test_card_events_select_their_variant() -> None:
    event = parse_card_event(json.dumps(UPSERT))
    assert isinstance(event, CardUpserted)
    assert event.plan.warn_percents == (80, 90)
    assert event.cycle_day == 1
    assert event.timezone == "Asia/Shanghai"
    recharge = parse_card_event(
        json.dumps(
            {
                "type": "card.recharged",
                "event_id": "e2",
                "amount": 100,
                "occurred_at": "2026-11-25T10:00:00+08:00",
                "iccid": ICCID,
            }
        )
    )
    assert recharge.type == "card.recharged"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"type": "card.exploded"}, "Input tag 'card.exploded' found using 'type'"),
        ({"cycle_day": 29}, "card.upserted.cycle_day: Input should be less than or equal to 28"),
        ({"timezone": "Mars/Olympus"}, "card.upserted.timezone: Value error, unknown IANA"),
        ({"billing": "barter"}, "card.upserted.billing: Input should be 'prepaid' or 'postpaid'"),
        ({"plan": {**UPSERT["plan"], "warn_percents": [0]}}, "card.upserted.plan.warn_percents.0"),
    ],
)
def test_malformed_card_events_are_refused(change: dict[str, object], expected: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_card_event(json.dumps({**UPSERT, **change}))
    assert expected in describe_validation_error(info.value)


def test_unlimited_plan_has_null_quota() -> None:
    doc = {**UPSERT, "plan": {**UPSERT["plan"], "quota_bytes": None}}
    event = parse_card_event(json.dumps(doc))
    assert isinstance(event, CardUpserted)
    assert event.plan.quota_bytes is None


def test_command_and_alert_examples_round_trip() -> None:
    command = CardCommand.model_validate_json(
        json.dumps(
            {
                "command_id": "cmd-1",
                "type": "suspend",
                "iccid": ICCID,
                "trigger": "over_quota",
                "reasons": ["over_quota"],
                "cycle": "2026-11-01",
                "issued_at": "2026-11-25T10:00:01+08:00",
            }
        )
    )
    assert json.loads(command.model_dump_json())["cycle"] == "2026-11-01"
    alert = CardAlert.model_validate_json(
        json.dumps(
            {
                "alert_id": "alr-1",
                "type": "usage_threshold",
                "iccid": ICCID,
                "customer_id": "acme",
                "cycle": "2026-11-01",
                "percent": 80,
                "used_bytes": 858993459,
                "quota_bytes": 1073741824,
                "occurred_at": "2026-11-25T10:00:01+08:00",
            }
        )
    )
    assert CardAlert.model_validate_json(alert.model_dump_json()) == alert


def test_alert_requires_the_fields_of_its_type() -> None:
    doc = {
        "alert_id": "alr-1",
        "type": "usage_threshold",
        "iccid": ICCID,
        "customer_id": "a",
        "cycle": "2026-11-01",
        "occurred_at": "2026-11-25T10:00:01+08:00",
    }
    assert "requires percent, used_bytes, quota_bytes" in reason(CardAlert, doc)


def test_customer_settings_example() -> None:
    settings = CustomerSettings.model_validate_json(
        json.dumps(
            {
                "customer_id": "acme",
                "language": "zh-CN",
                "webhook": {
                    "url": "https://hooks.acme.example/simwatch",
                    "secret": SECRET_A,
                },
                "sms": {"numbers": ["+8613800000000"]},
                "quiet_hours": {"start": "22:00", "end": "08:00", "timezone": "Asia/Shanghai"},
            }
        )
    )
    assert settings.sms is not None and settings.sms.numbers == ("+8613800000000",)
    assert "sms.numbers.0" in reason(
        CustomerSettings, {"customer_id": "a", "sms": {"numbers": ["13800000000"]}}
    )
    assert "quiet_hours.start" in reason(
        CustomerSettings, {"customer_id": "a", "quiet_hours": {"start": "25:00", "end": "08:00"}}
    )


ARABIC_INDIC = "".join(chr(0x0660 + int(d)) for d in "13800000000")


def settings(**fields: object) -> dict[str, object]:
    return {"customer_id": "a", **fields}


def hook(**fields: object) -> dict[str, object]:
    return settings(webhook={"url": "https://h.example/x", "secret": SECRET_A, **fields})


@pytest.mark.parametrize(
    ("model", "doc", "expected"),
    [
        (UsageRecord, {**RECORD, "iccid": ICCID + "\n"}, "ICCID must be"),
        (UsageRecord, {**RECORD, "record_id": "cdr-1\n"}, "record_id"),
        (CustomerSettings, settings(sms={"numbers": ["+8613800000000\n"]}), "sms.numbers.0"),
        (CustomerSettings, settings(sms={"numbers": ["+86" + ARABIC_INDIC]}), "sms.numbers.0"),
        (CustomerSettings, settings(quiet_hours={"start": "1\u0662:00", "end": "08:00"}), "start"),
        (CustomerSettings, settings(quiet_hours={"start": "22:00\n", "end": "08:00"}), "start"),
        (CustomerSettings, hook(secret="whsec_" + base64.b64encode(b"k" * 16).decode()), "24"),
        (CustomerSettings, hook(secret="whsec_"), "webhook.secret"),
        (CustomerSettings, hook(secret="whsec_" + "=" * 40), "webhook.secret"),
        (CustomerSettings, hook(secret="whsec_not*valid*base64*at*all*but*long"), "base64"),
        (CustomerSettings, hook(secret=None), "secret"),
        (CustomerSettings, hook(secret=None, secrets=[]), "secret"),
        (CustomerSettings, hook(secrets=[SECRET_B, "whsec_c2hvcnQ="]), "webhook.secrets.1"),
        (CustomerSettings, hook(url="https://h.example:70000/x"), "webhook.url"),
        (CustomerSettings, hook(url="ftp://h.example/x"), "webhook.url"),
        (CustomerSettings, hook(url="https:///x"), "webhook.url"),
        (CustomerSettings, hook(url="https://h.example/x\n"), "webhook.url"),
    ],
)
def test_loose_values_are_refused(model: type, doc: dict[str, object], expected: str) -> None:
    assert expected in reason(model, {k: v for k, v in doc.items() if v is not None})


def test_webhook_secrets_rotate() -> None:
    both = CustomerSettings.model_validate_json(json.dumps(hook(secrets=[SECRET_B, SECRET_A])))
    assert both.webhook is not None and both.webhook.signing_secrets == (SECRET_A, SECRET_B)
    only_new = CustomerSettings.model_validate_json(
        json.dumps(settings(webhook={"url": "https://h.example/x", "secrets": [SECRET_B]}))
    )
    assert only_new.webhook is not None and only_new.webhook.signing_secrets == (SECRET_B,)


def test_dead_letter_keeps_bytes_losslessly() -> None:
    from datetime import UTC, datetime

    letter = DeadLetter.of(
        value=b"\xff\xfe",
        key=b"k",
        topic="usage.records",
        partition=1,
        offset=7,
        error="bad",
        failed_at=datetime.now(UTC),
        service="t",
    )
    assert (letter.encoding, letter.original) == ("base64", "//4=")
    text = DeadLetter.of(
        value=b"{oops",
        key=None,
        topic="t",
        partition=0,
        offset=0,
        error="bad",
        failed_at=datetime.now(UTC),
        service="t",
    )
    assert (text.encoding, text.original, text.key) == ("utf-8", "{oops", None)


def test_checked_in_schemas_match_the_models() -> None:
    """Fails when a model changed without `make schemas` (the published contract drifted)."""
    rendered = render()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in SCHEMA_DIR.glob("*.json")}
    assert sorted(on_disk) == sorted(rendered)
    for name, text in rendered.items():
        assert on_disk[name] == text, f"{name} is stale: run `make schemas`"
