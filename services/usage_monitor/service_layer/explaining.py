"""`GET /cards/{iccid}/explain` and `usage-monitor explain`: the card brought up to now by the
same rules that decide (nothing is written), explained, with its recent decisions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..domain.cycles import zone
from ..domain.explain import explain
from ..domain.explain_texts import LANGUAGES, render
from ..domain.lifecycle import evaluate
from ..domain.policy import Policy
from ..ports import CardStore
from . import history
from .status import command_view, overshoot

DEFAULT_LANGUAGE = "zh-CN"


class UnknownLanguageError(ValueError):
    pass


async def explain_card(
    store: CardStore, iccid: str, now: datetime, policy: Policy, lang: str | None = None
) -> dict[str, Any] | None:
    """The explain body of the contract, or None for a card never seen."""
    language = lang or DEFAULT_LANGUAGE
    if language not in LANGUAGES:
        raise UnknownLanguageError(f"lang must be one of {', '.join(LANGUAGES)}")
    snap = (await store.load([iccid]))[iccid]
    if snap.version == 0:
        return None
    state = evaluate(snap.state, snap.usage, now, policy).state  # as of now, not written
    tz = state.profile.timezone if state.profile else policy.default_timezone
    body = render(explain(state, snap.usage, now, policy), language, tz)
    body["overshoot_bytes"] = overshoot(state, snap.usage)
    if state.pending is not None:
        body["command"] = command_view(state)
    lines = await store.history(iccid)
    body["history"] = [history.item(line, zone(tz)) for line in lines]
    return body
