"""`usage-monitor explain ICCID [--lang en] [--json]`: why the card is in its state and what
would change it, for a person (or, with --json, the body of `GET /cards/{iccid}/explain`).
Reads Redis directly, so it answers without a running worker."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from simwatch_contracts import Reason
from simwatch_contracts.common import Iccid

from ..bootstrap import build
from ..domain.explain_texts import LANGUAGES, NAMES
from ..service_layer.explaining import explain_card
from ..settings import Settings

_ICCID: TypeAdapter[str] = TypeAdapter(Iccid)
HOW = {
    "zh-CN": "恢复方式",
    "en": "what lifts it",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("iccid", help="the card (19-20 characters, starts with 89)")
    parser.add_argument("--lang", choices=LANGUAGES, default="zh-CN")
    parser.add_argument("--json", action="store_true", help="print the API's JSON body")


def run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        iccid = _ICCID.validate_python(args.iccid)
    except ValidationError:
        print(f"usage-monitor explain: malformed ICCID {args.iccid!r}", file=sys.stderr)
        return 2
    body = asyncio.run(_explain(settings, iccid, args.lang))
    if body is None:
        print(f"usage-monitor explain: unknown card {iccid}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(body, ensure_ascii=False, indent=2))
    else:
        show(body, args.lang, Console())
    return 0


async def _explain(settings: Settings, iccid: str, lang: str) -> dict[str, Any] | None:
    c = build(settings)
    try:
        return await explain_card(c.store, iccid, datetime.now(UTC), settings.policy, lang)
    finally:
        await c.close()


def show(body: dict[str, Any], lang: str, console: Console) -> None:
    """The explanation as a support agent would read it out."""
    console.print(Panel(body["summary"], title=f"{body['iccid']} · {body['state']}"))
    for reason in body["reasons"]:
        since = reason.get("since") or "-"
        name = NAMES[lang][Reason(reason["reason"])]
        console.print(f"[bold]{name}[/bold] ({reason['reason']}, since {since})")
        console.print(f"  {reason['text']}")
        lifts = reason["lifts"]
        detail = ", ".join(f"{k}={v}" for k, v in lifts.items() if k != "how")
        console.print(f"  [dim]{HOW[lang]}: {lifts['how']}{' (' + detail + ')' if detail else ''}")
    if body.get("history"):
        table = Table("at", "kind", "type", "trigger", "id", title="history", title_justify="left")
        for h in body["history"][:10]:
            table.add_row(h["at"], h["kind"], h["type"], h.get("trigger", ""), h.get("id", ""))
        console.print(table)
