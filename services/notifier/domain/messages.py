"""Customer-facing text: one template file per alert type and language, filled with what the
customer needs to act (card, usage in MB/GB, days left, the reason, what to do)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources
from zoneinfo import ZoneInfo

from simwatch_contracts import POOL_ALERTS, CardAlert, PoolMember, Reason

LANGUAGES = ("zh-CN", "en")

_REASONS = {
    "zh-CN": {
        Reason.OVER_QUOTA: "本月流量已用完",
        Reason.MANUAL: "人工停用",
        Reason.ARREARS: "欠费",
        Reason.EXPIRED: "套餐到期",
        Reason.VIOLATION: "违规使用",
        Reason.BLACKLISTED: "客户有未结清的欠费",
        Reason.POOL_OVER_QUOTA: "所属流量池本周期流量已用完",
        Reason.MEMBER_CAP: "超出该卡在流量池内的用量上限",
    },
    "en": {
        Reason.OVER_QUOTA: "monthly data quota used up",
        Reason.MANUAL: "stopped by hand",
        Reason.ARREARS: "unpaid balance",
        Reason.EXPIRED: "plan expired",
        Reason.VIOLATION: "terms violation",
        Reason.BLACKLISTED: "an earlier card's debt is unpaid",
        Reason.POOL_OVER_QUOTA: "its data pool is used up for this cycle",
        Reason.MEMBER_CAP: "over its own cap within the data pool",
    },
}

_ACTIONS = {
    "zh-CN": {
        Reason.OVER_QUOTA: "下个计费周期自动恢复；如需继续使用请升级套餐。",
        Reason.MANUAL: "如需恢复，请在客户平台人工开启。",
        Reason.ARREARS: "请充值后申请复机。",
        Reason.EXPIRED: "请在到期后三个月内续费，逾期号码将被注销。",
        Reason.VIOLATION: "请联系运营商处理。",
        Reason.BLACKLISTED: "请先结清此前已注销号码的欠费，结清后自动开通。",
        Reason.POOL_OVER_QUOTA: "流量池下个计费周期开始时自动恢复；如需继续使用请扩容流量池。",
        Reason.MEMBER_CAP: "下个计费周期自动恢复；如需继续使用请调高该卡的池内上限。",
    },
    "en": {
        Reason.OVER_QUOTA: (
            "It resumes with the next billing cycle; upgrade the plan to continue now."
        ),
        Reason.MANUAL: "Start it again in the customer portal when needed.",
        Reason.ARREARS: "Recharge, then request a restore.",
        Reason.EXPIRED: "Renew within three months of expiry, or the number is cancelled.",
        Reason.VIOLATION: "Please contact your operator.",
        Reason.BLACKLISTED: (
            "Pay the debt of the earlier cancelled card; service starts once it is paid."
        ),
        Reason.POOL_OVER_QUOTA: (
            "It resumes when the pool's next cycle begins; add data to the pool to continue now."
        ),
        Reason.MEMBER_CAP: (
            "It resumes with its next billing cycle; raise its cap in the pool to continue now."
        ),
    },
}


# What lifts one held reason (a `suspended` alert's `lifts`, decided by usage_monitor).
_LIFTS = {
    "zh-CN": {
        "next_cycle": "下个计费周期开始时（{at}）自动恢复。",
        "pool_next_cycle": "流量池下个计费周期开始时（{at}）自动恢复。",
        "recharge": "请至少充值 {amount}，然后申请复机。",
        "pay_debt": "请至少缴纳 {amount}，缴清后自动恢复。",
        "renew": "请在 {deadline} 前续费，逾期号码将被注销。",
        "customer_resume": "如需恢复，请在客户平台人工开启。",
        "violation_cleared": "请联系运营商处理。",
        "raise_quota": "请换用含流量的套餐。",
        "none": "",
    },
    "en": {
        "next_cycle": "It resumes by itself when the next cycle begins ({at}).",
        "pool_next_cycle": "It resumes when the pool's next cycle begins ({at}).",
        "recharge": "Recharge at least {amount}, then request a restore.",
        "pay_debt": "Pay at least {amount}; service is restored once it is paid.",
        "renew": "Renew before {deadline}, or the number is cancelled.",
        "customer_resume": "Start it again in the customer portal when needed.",
        "violation_cleared": "Please contact your operator.",
        "raise_quota": "Move the card to a plan with data.",
        "none": "",
    },
}


def actions(alert: CardAlert, language: str) -> str:
    """What the customer can do: from the alert's `lifts` (each held reason, with the amount
    or the date), or, for an alert without them, the trigger's general advice."""
    lang = language if language in LANGUAGES else "zh-CN"
    if not alert.lifts:
        trigger = alert.trigger or (alert.reasons[0] if alert.reasons else None)
        return _ACTIONS[lang].get(trigger, "") if trigger else ""
    tz = alert.occurred_at.tzinfo
    parts = []
    for hint in alert.lifts:
        template = _LIFTS[lang].get(hint.how, "")
        fields = {
            "at": hint.at.astimezone(tz).strftime("%Y-%m-%d %H:%M") if hint.at else "-",
            "deadline": hint.deadline.astimezone(tz).strftime("%Y-%m-%d") if hint.deadline else "-",
            "amount": money(hint.amount, lang),
        }
        text = template.format(**fields)
        if text and text not in parts:
            parts.append(text)
    return ("" if lang == "zh-CN" else " ").join(parts)


@cache
def _template(language: str, kind: str) -> str:
    path = resources.files("notifier").joinpath("templates", language, f"{kind}.txt")
    return path.read_text(encoding="utf-8").strip()


def volume(nbytes: int | None) -> str:
    """1 536 000 000 -> '1.43 GB'; MB below one GB (binary units, as operators bill)."""
    if nbytes is None:
        return "-"
    gib = nbytes / 2**30
    return f"{gib:.2f} GB" if gib >= 1 else f"{nbytes / 2**20:.1f} MB"


def money(minor: int | None, language: str) -> str:
    if minor is None:
        return "-"
    return f"{minor / 100:.2f} 元" if language == "zh-CN" else f"CNY {minor / 100:.2f}"


def mask_iccid(iccid: str | None) -> str:
    """For logs: the last 4 characters only."""
    return f"…{iccid[-4:]}" if iccid else "-"


def subject(alert: CardAlert) -> str:
    """What an alert is about, for logs: a card by the last 4 characters of its ICCID, a pool
    by its id (an operator's id, not a subscriber's: shown whole, so its alerts can be found)."""
    if alert.type in POOL_ALERTS or alert.iccid is None:
        return f"pool {alert.pool_id or alert.key or '-'}"
    return f"card {mask_iccid(alert.iccid)}"


def render(alert: CardAlert, language: str) -> str:
    """The SMS text (and webhook-free summary) of `alert` in `language` (zh-CN or en)."""
    lang = language if language in LANGUAGES else "zh-CN"
    trigger = alert.trigger or (alert.reasons[0] if alert.reasons else None)
    fields = {
        "iccid": alert.iccid or alert.key,
        "pool_id": alert.pool_id or "-",
        "percent": alert.percent if alert.percent is not None else "-",
        "used": volume(alert.used_bytes),
        "quota": volume(alert.quota_bytes),
        "days_left": alert.days_left if alert.days_left is not None else "-",
        "expires": _local_date(alert),
        "reason": _REASONS[lang].get(trigger, trigger.value) if trigger else "-",
        "action": actions(alert, lang),
        "balance": money(alert.balance, lang),
        "amount_due": money(alert.amount_due, lang),
    }
    template = _template(lang, alert.type.value)
    if alert.type not in POOL_ALERTS:
        return template.format(**fields)
    fields["pool_action"] = _pool_action(alert, lang)
    members = alert.top_members or ()
    # The top cards are a courtesy: as many as fit in SMS_SEGMENTS (the webhook has them all).
    for shown in range(len(members), 0, -1):
        text = template.format(**fields, top=_top(members[:shown], lang))
        if sms_segments(text) <= SMS_SEGMENTS:
            return text
    return template.format(**fields, top="")


_POOL = {
    "zh-CN": {
        "top": "用量最多的卡：{members}。",
        "member": "{iccid}（{used}）",
        "sep": "、",
        "stopped": "池内的卡已停机，流量池下个计费周期开始时{at}自动恢复。",
        "at": "（{at}）",
        "if_stopped": "如流量池设为用完停机，池内的卡将停机至下个计费周期。",
    },
    "en": {
        "top": " Top cards: {members}.",
        "member": "{iccid} ({used})",
        "sep": ", ",
        "stopped": "Its cards are suspended until the pool's next cycle begins{at}.",
        "at": " ({at})",
        "if_stopped": "If the pool stops its cards when used up, they stay suspended until its "
        "next cycle.",
    },
}


def _top(members: Sequence[PoolMember], lang: str) -> str:
    if not members:
        return ""
    words = _POOL[lang]
    listed = words["sep"].join(
        words["member"].format(iccid=m.iccid, used=volume(m.used_bytes)) for m in members
    )
    return words["top"].format(members=listed)


def _pool_action(alert: CardAlert, lang: str) -> str:
    """What an exhausted pool means for its cards: stopped until the pool's next cycle when
    the alert says so (trigger or a lift `pool_over_quota`), else said conditionally (the
    pool's `on_exhausted` is not part of the alert)."""
    words = _POOL[lang]
    lifts = alert.lifts or ()
    held = Reason.POOL_OVER_QUOTA in (alert.trigger, *(alert.reasons or ()))
    if not held and not any(h.reason is Reason.POOL_OVER_QUOTA for h in lifts):
        return words["if_stopped"]
    at = next((h.at for h in lifts if h.how == "pool_next_cycle" and h.at is not None), None)
    when = (
        words["at"].format(at=at.astimezone(alert.occurred_at.tzinfo).strftime("%Y-%m-%d %H:%M"))
        if at
        else ""
    )
    return words["stopped"].format(at=when)


SMS_SEGMENTS = 2
"""Pool texts keep to this many SMS segments (they drop top cards to fit)."""

_GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")


def sms_segments(text: str) -> int:
    """How many segments `text` takes: GSM-7 (160, or 153 each when split; the extended
    characters count twice) when it can, else UCS-2 (70, or 67 each, in UTF-16 units)."""
    if all(c in _GSM7 or c in _GSM7_EXTENDED for c in text):
        units = len(text) + sum(c in _GSM7_EXTENDED for c in text)
        single, part = 160, 153
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, part = 70, 67
    return 1 if units <= single else -(-units // part)


def _local_date(alert: CardAlert) -> str:
    if alert.expires_at is None:
        return "-"
    return alert.expires_at.astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
