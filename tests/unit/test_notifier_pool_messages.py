"""Pool alerts (流量池, #19) in the notifier: their SMS texts in both languages, with and
without top cards, kept to two segments; a card suspended by its pool; logs and dead letters
keyed by the pool id; a pool's stop texted once, its members' stops sent to the webhook."""

from __future__ import annotations

import json
from typing import Any

import pytest

from notifier.domain.delivery import Channel, plan
from notifier.domain.messages import mask_iccid, render, sms_segments, subject
from notifier.domain.outcome import Outcome, Result
from simwatch_contracts import AlertType, CardAlert, CustomerSettings

from .test_notifier_dispatcher import NUMBER, URL, customer_settings, world

GiB = 2**30
MEMBERS = [{"iccid": f"8986041234567890{n:04d}", "used_bytes": (6 - n) * GiB} for n in range(5)]
NEXT_CYCLE = {
    "reason": "pool_over_quota",
    "how": "pool_next_cycle",
    "at": "2026-12-01T00:00:00+08:00",
}


def pool_alert(kind: str = "pool_threshold", **extra: Any) -> CardAlert:
    doc = {
        "alert_id": f"palr-{kind}",
        "type": kind,
        "pool_id": "POOL-SH-7",
        "customer_id": "acme",
        "cycle": "2026-11-01",
        "occurred_at": "2026-11-25T10:00:01+08:00",
        "percent": 80 if kind == "pool_threshold" else 100,
        "used_bytes": 400 * GiB if kind == "pool_threshold" else 500 * GiB,
        "quota_bytes": 500 * GiB,
        "top_members": MEMBERS,
    }
    return CardAlert.model_validate_json(json.dumps(doc | extra))


def test_pool_alerts_have_no_iccid_and_are_keyed_by_the_pool() -> None:
    alert = pool_alert()
    assert alert.iccid is None and alert.key == "POOL-SH-7"
    assert subject(alert) == "pool POOL-SH-7" and mask_iccid(None) == "-"


def test_pool_threshold_in_chinese_names_the_pool_usage_and_top_cards() -> None:
    text = render(pool_alert(), "zh-CN")
    assert text.startswith("【simwatch】流量池 POOL-SH-7 本周期已用 80%（400.00 GB/500.00 GB）")
    assert "用量最多的卡：89860412345678900000（6.00 GB）、89860412345678900001（5.00 GB）" in text
    assert "None" not in text and sms_segments(text) <= 2


def test_pool_threshold_in_english_lists_the_top_cards_that_fit() -> None:
    text = render(pool_alert(), "en")
    assert text.startswith("simwatch: pool POOL-SH-7 has used 80% of its data this cycle")
    assert "(400.00 GB of 500.00 GB)" in text
    assert "Top cards: 89860412345678900000 (6.00 GB), 89860412345678900001 (5.00 GB)" in text
    assert sms_segments(text) <= 2


@pytest.mark.parametrize("kind", ["pool_threshold", "pool_exhausted"])
@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_without_top_members_the_text_has_no_list(kind: str, lang: str) -> None:
    text = render(pool_alert(kind, top_members=[]), lang)
    assert "POOL-SH-7" in text and "500.00 GB" in text
    assert "用量最多" not in text and "Top cards" not in text and "None" not in text
    assert sms_segments(text) <= 2


@pytest.mark.parametrize("kind", ["pool_threshold", "pool_exhausted"])
@pytest.mark.parametrize("lang", ["zh-CN", "en", "fr"])
@pytest.mark.parametrize("pool_id", ["P1", "pool-" + "x" * 40])
def test_top_cards_are_dropped_to_keep_two_segments(kind: str, lang: str, pool_id: str) -> None:
    extra: dict[str, Any] = {"pool_id": pool_id}
    if kind == "pool_exhausted":
        extra |= {"trigger": "pool_over_quota", "lifts": [NEXT_CYCLE]}
    text = render(pool_alert(kind, **extra), lang)
    assert sms_segments(text) <= 2 and pool_id in text
    if len(pool_id) < 10:
        assert "89860412345678900000" in text  # the heaviest card fits beside a short id


def test_pool_exhausted_says_the_cards_stop_until_the_pools_next_cycle() -> None:
    alert = pool_alert("pool_exhausted", trigger="pool_over_quota", lifts=[NEXT_CYCLE])
    zh = render(alert, "zh-CN")
    assert zh.startswith("【simwatch】流量池 POOL-SH-7 本周期流量已用完（500.00 GB/500.00 GB）。")
    assert "池内的卡已停机，流量池下个计费周期开始时（2026-12-01 00:00）自动恢复。" in zh
    assert "89860412345678900000（6.00 GB）" in zh
    en = render(alert, "en")
    assert "Its cards are suspended until the pool's next cycle begins (2026-12-01 00:00)." in en
    assert "Top cards: 89860412345678900000 (6.00 GB)" in en
    # trigger alone (no date known): still said, without a date
    bare = render(pool_alert("pool_exhausted", trigger="pool_over_quota", top_members=[]), "en")
    assert bare.endswith("Its cards are suspended until the pool's next cycle begins.")


def test_pool_exhausted_without_the_suspension_says_it_conditionally() -> None:
    """The alert does not carry the pool's `on_exhausted`: unless it says the cards are held
    (`pool_over_quota`), the text does not claim they were stopped."""
    alert = pool_alert("pool_exhausted")
    zh = render(alert, "zh-CN")
    assert "如流量池设为用完停机，池内的卡将停机至下个计费周期。" in zh and "已停机" not in zh
    en = render(alert, "en")
    assert "If the pool stops its cards when used up" in en and "are suspended" not in en


@pytest.mark.parametrize("reason", ["pool_over_quota", "member_cap", "reconcile"])
@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_a_card_suspended_for_a_pool_reason_renders(reason: str, lang: str) -> None:
    """Every Reason renders (before, `pool_over_quota` raised KeyError on every attempt)."""
    alert = CardAlert.model_validate_json(
        json.dumps(
            {
                "alert_id": "alr-s",
                "type": "suspended",
                "iccid": "89860412345678901234",
                "customer_id": "acme",
                "cycle": "2026-11-01",
                "occurred_at": "2026-11-25T10:00:01+08:00",
                "trigger": reason,
                "reasons": [reason],
            }
        )
    )
    text = render(alert, lang)
    assert "89860412345678901234" in text and "None" not in text
    if reason == "pool_over_quota":
        assert ("流量池" in text) if lang == "zh-CN" else ("data pool" in text)
    if reason == "member_cap":
        assert ("池内" in text) if lang == "zh-CN" else ("cap" in text)


def test_every_alert_type_has_a_template_in_both_languages() -> None:
    for kind in (AlertType.POOL_THRESHOLD, AlertType.POOL_EXHAUSTED):
        for lang in ("zh-CN", "en"):
            assert render(pool_alert(kind.value), lang)


def test_sms_segments_counts_gsm7_and_ucs2() -> None:
    assert sms_segments("a" * 160) == 1 and sms_segments("a" * 161) == 2
    assert sms_segments("a" * 306) == 2 and sms_segments("a" * 307) == 3
    assert sms_segments("[" * 80) == 1 and sms_segments("[" * 81) == 2  # extended: two each
    assert sms_segments("流" * 70) == 1 and sms_segments("流" * 71) == 2
    assert sms_segments("流" * 134) == 2 and sms_segments("流" * 135) == 3


async def test_a_pool_alert_is_delivered_by_webhook_and_sms_and_dead_lettered_by_pool() -> None:
    """Through the service layer (in-memory ledger, fake channels): a pool alert without an
    ICCID is scheduled, sent by SMS in the customer's language with the pool as the template
    subject, and its failed webhook dead-lettered under the pool id."""
    w = world()
    params: list[dict[str, str]] = []
    send = w.sms.send

    async def recording(to: str, text: str, key: str, p: dict[str, str]) -> Outcome:
        params.append(p)
        return await send(to, text, key, p)

    w.sms.send = recording  # type: ignore[method-assign]
    w.webhooks.answers = [Outcome(Result.REFUSED, "HTTP 400")]
    await w.scheduler.store_settings("acme", customer_settings(sms=[NUMBER]))
    await w.scheduler.alert(pool_alert(), partition=3, offset=7)
    await w.step()
    ((to, text, _),) = w.sms.sent
    assert to == NUMBER and text.startswith("【simwatch】流量池 POOL-SH-7 本周期已用 80%")
    assert params == [{"iccid": "POOL-SH-7", "type": "pool_threshold"}]
    assert w.webhooks.sent == [(URL, "palr-pool_threshold")]
    ((topic, key, letter),) = w.published
    assert topic == "notifier.deliveries.dlq" and key == b"POOL-SH-7"
    assert letter["key"] == "POOL-SH-7" and (letter["partition"], letter["offset"]) == (3, 7)
    original = json.loads(letter["original"])
    assert "iccid" not in original and original["top_members"][0]["used_bytes"] == 6 * GiB


def _settings() -> CustomerSettings:
    return CustomerSettings.model_validate_json(
        json.dumps(
            {
                "customer_id": "acme",
                "webhook": {"url": "https://h.example/x", "secret": "whsec_" + "A" * 43},
                "sms": {"numbers": ["+8613800000000"]},
            }
        )
    )


def _member_alert(kind: str, trigger: str, reasons: list[str], lifted: list[str] | None) -> Any:
    doc: dict[str, Any] = {
        "alert_id": "alr-m",
        "type": kind,
        "iccid": "89860412345678901234",
        "customer_id": "acme",
        "cycle": "2026-11-01",
        "occurred_at": "2026-11-25T10:00:01+08:00",
        "trigger": trigger,
        "reasons": reasons,
    }
    if lifted is not None:
        doc["lifted"] = lifted
    return CardAlert.model_validate_json(json.dumps(doc))


POOL = "pool_over_quota"


@pytest.mark.parametrize(
    ("kind", "trigger", "reasons", "lifted", "texted"),
    [
        ("suspended", POOL, [POOL], None, False),  # the pool alone: pool_exhausted says it
        ("resumed", POOL, [], [POOL], False),
        ("suspended", POOL, [POOL, "member_cap"], None, True),  # its own cap too
        ("resumed", POOL, [], [POOL, "member_cap"], True),  # was texted when its cap hit
        ("resumed", POOL, [], [POOL, "manual"], True),
        ("resumed", POOL, [], None, True),  # published before `lifted`: not known, texted
        ("suspended", "member_cap", ["member_cap"], None, True),
        ("resumed", "member_cap", [], ["member_cap"], True),
        ("suspended", "over_quota", ["over_quota"], None, True),
    ],
)
def test_a_pools_stop_reaches_the_phone_once_not_once_per_member(
    kind: str, trigger: str, reasons: list[str], lifted: list[str] | None, texted: bool
) -> None:
    """A pool's stop (and its end) is one `pool_exhausted` SMS; a member stopped or resumed
    by the pool alone (10 000 at once) is told by webhook only. A member's own reasons (its
    cap, a manual stop) are still texted, so a `suspended` SMS always gets its `resumed`."""
    member = _member_alert(kind, trigger, reasons, lifted)
    channels = [p.channel for p in plan(member, _settings(), sms_enabled=True)]
    assert channels == ([Channel.WEBHOOK, Channel.SMS] if texted else [Channel.WEBHOOK])
    pool = pool_alert("pool_exhausted", trigger=POOL, lifts=[NEXT_CYCLE])
    assert [p.channel for p in plan(pool, _settings(), True)] == [Channel.WEBHOOK, Channel.SMS]
