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
    return Group(records, decisions, network(now), deliveries)


def network(now: dict[str, dict[str, float]]) -> Table:
    """The loop with the network: what it has not confirmed, retries, corrections, and how
    long enforcement takes and how much usage gets through meanwhile."""
    table = Table(title="network (provisioning results)", expand=True)
    table.add_column("what")
    table.add_column("now / total", justify="right")
    for status in ("pending", "unconfirmed", "rejected"):
        value = now.get(f"usage_monitor_commands_{status}", {}).get("", 0)
        table.add_row(f"commands {status}", f"{value:,.0f}")
    for labels, value in sorted(now.get("usage_monitor_command_results_total", {}).items()):
        if value:
            what = f"results {_label(labels, 'status')} → {_label(labels, 'outcome')}"
            table.add_row(what, f"{value:,.0f}")
    for name, what in (
        ("usage_monitor_command_retries_total", "published again"),
        ("usage_monitor_commands_reconciled_total", "reconciled (network corrected)"),
    ):
        table.add_row(what, f"{sum(now.get(name, {}).values()):,.0f}")
    latency = now.get("usage_monitor_enforcement_seconds_bucket", {})
    table.add_row(
        "enforcement p50 / p99 (record → applied)",
        f"{_quantile(latency, 0.5)} / {_quantile(latency, 0.99)} s",
    )
    overshoot = now.get("usage_monitor_overshoot_bytes_bucket", {})
    enforced = {k: v for k, v in overshoot.items() if 'at="enforced"' in k}
    table.add_row(
        "overshoot p50 / p99 at enforcement",
        f"{_quantile(enforced, 0.5)} / {_quantile(enforced, 0.99)} B",
    )
    return table


def _quantile(buckets: dict[str, float], q: float) -> str:
    """The bucket bound holding quantile `q` of a histogram (all label sets summed): an
    upper bound, as Prometheus's histogram_quantile would interpolate within it."""
    cumulative: dict[float, float] = defaultdict(float)
    for labels, value in buckets.items():
        le = _label(labels, "le")
        cumulative[float("inf") if le == "+Inf" else float(le)] += value
    if not cumulative or not cumulative[float("inf")]:
        return "-"
    total = cumulative[float("inf")]
    for bound in sorted(cumulative):
        if cumulative[bound] >= q * total:
            return "> max" if bound == float("inf") else f"≤ {bound:,.0f}"
    return "-"


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
