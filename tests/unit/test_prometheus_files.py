"""Prometheus configuration and alert rules pass promtool, and the rule unit tests hold."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: apt-get install prometheus (.ci/run does)"
    return subprocess.run([tool, *args], capture_output=True, text=True, check=False, timeout=60)


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.compose.yml"])
def test_scrape_configs_are_valid(config: str) -> None:
    result = promtool("check", "config", str(PROM / config))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_are_valid() -> None:
    result = promtool("check", "rules", str(PROM / "rules" / "simwatch.rules.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 17 rules found" in result.stdout


@pytest.mark.parametrize("tests", sorted(p.name for p in (PROM / "tests").glob("*.yml")))
def test_alert_rule_unit_tests_pass(tests: str) -> None:
    result = promtool("test", "rules", str(PROM / "tests" / tests))
    assert result.returncode == 0, result.stdout + result.stderr
