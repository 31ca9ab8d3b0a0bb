"""`usage-monitor watch`: a live terminal view of a running simwatch, read from the services'
/metrics endpoints (and the demo's webhook receiver, when given)."""

from __future__ import annotations

import argparse
import re
import time
from collections import defaultdict

import httpx
from rich.console import Group
from rich.live import Live
from rich.table import Table

SAMPLE = re.compile(r"^([a-z_]+)(?:\{([^}]*)\})? ([0-9.e+-]+)$", re.M)


def scrape(client: httpx.Client, url: str) -> dict[str, dict[str, float]]:
    """metric name -> label text -> value; empty when the service does not answer."""
    try:
        text = client.get(url, timeout=2).text
    except httpx.HTTPError:
        return {}
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for name, labels, value in SAMPLE.findall(text):
        out[name][labels or ""] = float(value)
    return out


def _label(labels: str, key: str) -> str:
    m = re.search(rf'{key}="([^"]*)"', labels)
    return m.group(1) if m else "-"


def render(
    now: dict[str, dict[str, float]],
    before: dict[str, dict[str, float]],
    dt: float,
    receiver: dict[str, int],
) -> Group:
    records = Table(title="usage records", expand=True)
    records.add_column("outcome")
    records.add_column("total", justify="right")
    records.add_column("per second", justify="right")
    for labels, value in sorted(now.get("usage_monitor_records_total", {}).items()):
        prev = before.get("usage_monitor_records_total", {}).get(labels, value)
        records.add_row(_label(labels, "outcome"), f"{value:,.0f}", f"{(value - prev) / dt:,.0f}")
    decisions = Table(title="decisions", expand=True)
    decisions.add_column("what")
    decisions.add_column("total", justify="right")
    for labels, value in sorted(now.get("usage_monitor_alerts_total", {}).items()):
        decisions.add_row(f"alert {_label(labels, 'type')}", f"{value:,.0f}")
    for labels, value in sorted(now.get("usage_monitor_commands_total", {}).items()):
        decisions.add_row(
            f"{_label(labels, 'type')} ({_label(labels, 'trigger')})", f"{value:,.0f}"
        )
    suspended = now.get("usage_monitor_suspended_cards", {}).get("", 0)
    decisions.add_row("[bold]cards suspended now", f"[bold]{suspended:,.0f}")
    deliveries = Table(title="notifications", expand=True)
    deliveries.add_column("channel / outcome")
    deliveries.add_column("total", justify="right")
    for labels, value in sorted(now.get("notifier_deliveries_total", {}).items()):
        deliveries.add_row(
            f"{_label(labels, 'channel')} {_label(labels, 'outcome')}", f"{value:,.0f}"
        )
    queue = now.get("notifier_retry_queue_depth", {}).get("", 0)
    deliveries.add_row("waiting (retry queue)", f"{queue:,.0f}")
    if receiver:
        deliveries.add_row(
            "[bold]webhooks received (verified)", f"[bold]{receiver.get('received', 0):,}"
        )
        deliveries.add_row(
            "duplicates / bad signatures",
            f"{receiver.get('duplicates', 0)} / {receiver.get('bad_signature', 0)}",
        )
    return Group(records, decisions, deliveries)


def run(args: argparse.Namespace) -> None:
    with httpx.Client() as client, Live(refresh_per_second=2, screen=False) as live:
        before: dict[str, dict[str, float]] = {}
        last = time.monotonic()
        while True:
            now = scrape(client, args.usage_monitor)
            now.update(scrape(client, args.notifier))
            receiver: dict[str, int] = {}
            if args.receiver:
                try:
                    receiver = client.get(args.receiver, timeout=2).json()
                except (httpx.HTTPError, ValueError):
                    receiver = {}
            t = time.monotonic()
            live.update(render(now, before or now, max(t - last, 1e-3), receiver))
            before, last = now, t
            time.sleep(1)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--usage-monitor", default="http://127.0.0.1:6066/metrics")
    parser.add_argument("--notifier", default="http://127.0.0.1:6067/metrics")
    parser.add_argument("--receiver", default="", help="the demo receiver's /stats URL")
