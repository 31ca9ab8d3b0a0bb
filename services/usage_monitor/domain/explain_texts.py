"""What explain says, in zh-CN and en, from templates: one per reason and way to lift it,
worded as a careful support agent would, in the source document's own terms (自动超停,
人工停用, 欠费停机, 过期停机). `render` builds the body of `GET /cards/{iccid}/explain`."""

from __future__ import annotations

from datetime import datetime
from string import Template
from typing import Any

from simwatch_contracts import Reason

from .card import CardStatus
from .cycles import zone
from .explain import Explanation, HeldReason, Lift, Lifts

LANGUAGES = ("zh-CN", "en")

NAMES = {
    "zh-CN": {
        Reason.OVER_QUOTA: "自动超停",
        Reason.MANUAL: "人工停用",
        Reason.ARREARS: "欠费停机",
        Reason.EXPIRED: "过期停机",
        Reason.VIOLATION: "违规停机",
        Reason.BLACKLISTED: "历史欠费未结清",
        Reason.POOL_OVER_QUOTA: "流量池用尽停机",
        Reason.MEMBER_CAP: "池内单卡限额停机",
    },
    "en": {
        Reason.OVER_QUOTA: "over-quota stop",
        Reason.MANUAL: "manual stop",
        Reason.ARREARS: "arrears stop",
        Reason.EXPIRED: "expiry stop",
        Reason.VIOLATION: "violation",
        Reason.BLACKLISTED: "unpaid debt of an earlier card",
        Reason.POOL_OVER_QUOTA: "pool used up",
        Reason.MEMBER_CAP: "member cap reached",
    },
}

SUMMARY = {
    "zh-CN": {
        CardStatus.ACTIVE: "该卡正常使用中。",
        CardStatus.SUSPENDED: "该卡已停机，原因：$names。",
        CardStatus.CANCELLED: "该卡已注销，无法恢复。",
    },
    "en": {
        CardStatus.ACTIVE: "The card is active.",
        CardStatus.SUSPENDED: "The card is suspended: $names.",
        CardStatus.CANCELLED: "The card is cancelled and cannot be restored.",
    },
}

# Keyed by (reason, lifts.how). $-fields are filled from the reason's facts and its lift.
TEXTS: dict[str, dict[tuple[Reason | None, str], str]] = {
    "zh-CN": {
        (Reason.OVER_QUOTA, Lifts.NEXT_CYCLE): (
            "本计费周期（$cycle 起）流量已用完（已用 $used_bytes，套餐 $quota_bytes），"
            "已按套餐设置自动超停。下个计费周期开始时（$at）将自动恢复；如需立即使用，请升级套餐。"
        ),
        (
            Reason.MANUAL,
            Lifts.CUSTOMER_RESUME,
        ): "该卡已按客户申请人工停用，客户申请人工开启后即可恢复。",
        (Reason.ARREARS, Lifts.RECHARGE): (
            "账户余额 $balance 不足以支付应缴费用 $owed，已欠费停机。请至少充值 $amount$then。"
        ),
        (Reason.ARREARS, Lifts.PAY_DEBT): (
            "已到期未缴账单 $past_due，超过信用额度 $credit_limit，已欠费停机。"
            "请至少缴纳 $amount，缴费后立即恢复；停机满三个月仍未缴清，号码将被注销。"
        ),
        (Reason.ARREARS, Lifts.CUSTOMER_RESUME): "欠费已结清，请申请复机即可恢复。",
        (Reason.EXPIRED, Lifts.RENEW): (
            "套餐已于 $expires_at 到期，已过期停机。请在 $deadline 前续费，续费后即恢复；"
            "停机保号期间每月收取停机保号费 $retention_fee，逾期未续费号码将被注销。"
        ),
        (Reason.VIOLATION, Lifts.VIOLATION_CLEARED): (
            "该卡因违规使用被运营商停机，须由运营商解除，请联系运营商。"
        ),
        (Reason.BLACKLISTED, Lifts.PAY_DEBT): (
            "该客户此前注销的号码尚有欠费 $amount 未结清，结清后本卡立即开通。"
        ),
        (Reason.POOL_OVER_QUOTA, Lifts.POOL_NEXT_CYCLE): (
            "该卡所属流量池 $pool_id 本周期（$cycle 起）的共享流量已用完，池内所有卡已停机。"
            "流量池下个计费周期开始时（$at）将自动恢复；如需立即使用，请为流量池增加流量。"
        ),
        (Reason.MEMBER_CAP, Lifts.NEXT_CYCLE): (
            "该卡本周期（$cycle 起）已用 $used_bytes，达到流量池内单卡限额 $member_cap_bytes，"
            "已停机。下个计费周期开始时（$at）将自动恢复。"
        ),
        (None, Lifts.NONE): "该卡已注销（$name），号码已释放，无法恢复。",
    },
    "en": {
        (Reason.OVER_QUOTA, Lifts.NEXT_CYCLE): (
            "The data of the billing cycle that began on $cycle is used up ($used_bytes of "
            "$quota_bytes), so the plan stopped data automatically. Service resumes by itself "
            "when the next cycle begins, at $at; to continue sooner, move the card to a larger "
            "plan."
        ),
        (Reason.OVER_QUOTA, Lifts.RAISE_QUOTA): (
            "The plan includes no data, so data is stopped automatically; it starts once the "
            "card moves to a plan with data."
        ),
        (Reason.MANUAL, Lifts.CUSTOMER_RESUME): (
            "The card was stopped at the customer's request. It starts again as soon as the "
            "customer asks to start it."
        ),
        (Reason.ARREARS, Lifts.RECHARGE): (
            "The balance of $balance does not cover the $owed that is owed. Recharge at least "
            "$amount$then."
        ),
        (Reason.ARREARS, Lifts.PAY_DEBT): (
            "$past_due of the bills is past due, more than the credit limit of $credit_limit. "
            "Pay at least $amount and service is restored at once; if it is still unpaid three "
            "months after the stop, the number is cancelled."
        ),
        (Reason.ARREARS, Lifts.CUSTOMER_RESUME): (
            "What was owed is paid: request a restore and the card starts again."
        ),
        (Reason.EXPIRED, Lifts.RENEW): (
            "The plan ended on $expires_at. Renew before $deadline and the card is restored; "
            "until then a number-retention fee of $retention_fee is charged each month, and "
            "after that date the number is cancelled."
        ),
        (Reason.VIOLATION, Lifts.VIOLATION_CLEARED): (
            "The operator suspended the card for a violation of its terms. Only the operator "
            "can lift this: please contact your operator."
        ),
        (Reason.BLACKLISTED, Lifts.PAY_DEBT): (
            "An earlier card of this customer was cancelled with $amount unpaid. Pay that debt "
            "and this card starts at once."
        ),
        (Reason.POOL_OVER_QUOTA, Lifts.POOL_NEXT_CYCLE): (
            "The shared data of the card's pool $pool_id for the cycle that began on $cycle is "
            "used up, so every card of the pool is stopped. Service resumes by itself when the "
            "pool's next cycle begins, at $at; to continue sooner, add data to the pool."
        ),
        (Reason.MEMBER_CAP, Lifts.NEXT_CYCLE): (
            "The card used $used_bytes in the cycle that began on $cycle, its own cap of "
            "$member_cap_bytes inside its pool, so it is stopped. Service resumes by itself "
            "when the next cycle begins, at $at."
        ),
        (None, Lifts.NONE): "The card was cancelled ($name); its number is released for good.",
    },
}

THEN = {
    "zh-CN": ("，然后申请复机", "，充值后自动复机"),
    "en": (", then request a restore", "; the card is restored as soon as it arrives"),
}


def money(minor: object, lang: str) -> str:
    """Minor units (fen, cents) as a decimal amount."""
    value = int(minor) if isinstance(minor, int) else 0
    text = f"{'-' if value < 0 else ''}{abs(value) // 100}.{abs(value) % 100:02d}"
    return f"{text} 元" if lang == "zh-CN" else text


def volume(nbytes: object) -> str:
    if not isinstance(nbytes, int):
        return "—"
    for unit, size in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if nbytes >= size:
            return f"{nbytes / size:.2f} {unit}"
    return f"{nbytes} B"


def local(at: datetime | None, tz: str) -> str:
    return at.astimezone(zone(tz)).strftime("%Y-%m-%d %H:%M") if at else "—"


def text(held: HeldReason, lang: str, tz: str, cancelled: bool = False) -> str:
    """The sentence for one held reason."""
    if cancelled:
        return Template(TEXTS[lang][(None, Lifts.NONE)]).substitute(name=NAMES[lang][held.reason])
    f, lift = held.facts, held.lifts
    fields: dict[str, object] = {
        "cycle": f.get("cycle", "—"),
        "used_bytes": volume(f.get("used_bytes")),
        "quota_bytes": volume(f.get("quota_bytes")),
        "member_cap_bytes": volume(f.get("member_cap_bytes")),
        "pool_id": f.get("pool_id", "—"),
        "balance": money(f.get("balance"), lang),
        "owed": money(f.get("owed"), lang),
        "past_due": money(f.get("past_due"), lang),
        "credit_limit": money(f.get("credit_limit"), lang),
        "retention_fee": money(f.get("retention_fee"), lang),
        "expires_at": local(_instant(f.get("expires_at")), tz),
        "at": local(lift.at, tz),
        "deadline": local(lift.deadline, tz),
        "amount": money(lift.amount, lang),
        "then": THEN[lang][0 if lift.then_resume else 1],
    }
    return Template(TEXTS[lang][(held.reason, lift.how)]).substitute(fields)


def _instant(raw: object) -> datetime | None:
    return datetime.fromisoformat(raw) if isinstance(raw, str) else None


def render(e: Explanation, lang: str, tz: str) -> dict[str, Any]:
    """The explain body of the contract, texts in `lang`."""
    cancelled = e.status is CardStatus.CANCELLED
    names = ("、" if lang == "zh-CN" else ", ").join(NAMES[lang][h.reason] for h in e.reasons)
    reasons = []
    for h in e.reasons:
        lifts: dict[str, Any] = {"how": Lifts.NONE if cancelled else h.lifts.how}
        if not cancelled:
            lifts.update(_lift_fields(h.lifts))
        reasons.append(
            {
                "reason": h.reason.value,
                "since": h.since.isoformat() if h.since else None,
                "facts": dict(h.facts),
                "lifts": lifts,
                "text": text(h, lang, tz, cancelled),
            }
        )
    return {
        "iccid": e.iccid,
        "state": e.status.value,
        "summary": Template(SUMMARY[lang][e.status]).substitute(names=names),
        "reasons": reasons,
        "next": [{"kind": k, "at": at.isoformat()} for k, at in e.next],
    }


def _lift_fields(lift: Lift) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if lift.at is not None:
        out["at"] = lift.at.isoformat()
    if lift.amount is not None:
        out["amount"] = lift.amount
    if lift.deadline is not None:
        out["deadline"] = lift.deadline.isoformat()
    if lift.then_resume:
        out["then"] = "customer_resume"
    return out
