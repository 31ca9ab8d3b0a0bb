"""What an operator sees: every metric the dashboard and the alert rules name is exported by
the running services, and a real Prometheus scrapes them."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ..conftest import KafkaIO
from ..integration.helpers import iccid, record, upsert
from ..servers import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
METRIC = re.compile(r"\b((?:usage_monitor|notifier)_[a-z_]+)\b")


def exported(text: str) -> set[str]:
    """Every series name a scrape can contain, from the TYPE lines (also for label sets that
    have no sample yet) and the samples."""
    names = set()
    # A counter's TYPE line already names its `_total` series; a histogram's names the base.
    suffixes = {"histogram": ("_bucket", "_count", "_sum")}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names |= {name + s for s in suffixes.get(kind, ("",))}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def referenced() -> dict[str, set[str]]:
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/simwatch.json").read_text())
    exprs = {
        f"panel {p['title']!r}": " ".join(t["expr"] for t in p["targets"])
        for p in dashboard["panels"]
    }
    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules/simwatch.rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            exprs[f"alert {rule['alert']}"] = rule["expr"]
    return {where: set(METRIC.findall(expr)) for where, expr in exprs.items()}


async def test_dashboard_and_rules_name_only_exported_metrics(
    start_worker: Any,
    start_notifier: Any,
) -> None:
    worker, notifier = start_worker(), start_notifier()
    names = exported(httpx.get(f"{worker.url}/metrics").text)
    names |= exported(httpx.get(f"{notifier.url}/metrics").text)
    missing = {where: sorted(m - names) for where, m in referenced().items() if m - names}
    assert not missing, f"not exported by the services: {missing}"


async def test_a_real_prometheus_scrapes_both_services(
    start_worker: Any,
    start_notifier: Any,
    kafka: KafkaIO,
    names: dict[str, str],
    tmp_path: Path,
) -> None:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: apt-get install prometheus (.ci/run does)"
    worker, notifier = start_worker(), start_notifier()
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "usage-monitor",
                "static_configs": [{"targets": [f"127.0.0.1:{worker.port}"]}],
            },
            {
                "job_name": "notifier",
                "static_configs": [{"targets": [f"127.0.0.1:{notifier.port}"]}],
            },
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, not awaited
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        card = iccid(9001)
        await kafka.send(names["USAGE_MONITOR_TOPIC_EVENTS"], upsert(card, 1000), key=card)
        await kafka.send_many(
            names["USAGE_MONITOR_TOPIC_USAGE"],
            [(card, record(card, f"p{i}", 10)) for i in range(25)],
        )
        query = 'sum(usage_monitor_records_total{outcome=~"applied|unknown_card"})'
        deadline = time.monotonic() + 60
        value = 0.0
        while value < 25 and time.monotonic() < deadline:
            await asyncio.sleep(1)
            try:
                reply = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": query})
                result = reply.json()["data"]["result"]
            except (httpx.HTTPError, KeyError, ValueError):
                continue
            value = float(result[0]["value"][1]) if result else 0.0
        assert value == 25
        # Both targets up: one scrape slower than its 1 s timeout on a busy machine reads 0,
        # so the next scrapes are given a few seconds.
        jobs: set[str] = set()
        deadline = time.monotonic() + 15
        while jobs != {"usage-monitor", "notifier"} and time.monotonic() < deadline:
            up = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": "up"}).json()
            jobs = {r["metric"]["job"] for r in up["data"]["result"] if r["value"][1] == "1"}
            if jobs != {"usage-monitor", "notifier"}:
                await asyncio.sleep(1)
        assert jobs == {"usage-monitor", "notifier"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
