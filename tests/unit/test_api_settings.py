"""The card API's protection is configured or the worker does not start: a non-loopback web
bind needs `USAGE_MONITOR_API_TOKEN`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from usage_monitor.settings import Settings

BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("USAGE_MONITOR_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("bind", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_a_loopback_bind_needs_no_token(bind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USAGE_MONITOR_WEB_BIND", bind)
    assert Settings().api_token is None


@pytest.mark.parametrize("bind", ["0.0.0.0", "::", "10.0.0.5", "usage-monitor.example"])
def test_a_non_loopback_bind_without_a_token_is_refused(
    bind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USAGE_MONITOR_WEB_BIND", bind)
    with pytest.raises(ValidationError, match="api_token"):
        Settings()
    monkeypatch.setenv("USAGE_MONITOR_API_TOKEN", "")
    with pytest.raises(ValidationError):
        Settings()
    monkeypatch.setenv("USAGE_MONITOR_API_TOKEN", "t" * 32)
    token = Settings().api_token
    assert token is not None and token.get_secret_value() == "t" * 32
    assert "t" * 32 not in repr(Settings())


def test_a_short_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USAGE_MONITOR_API_TOKEN", "short")
    with pytest.raises(ValidationError, match="16"):
        Settings()


def test_the_worker_exits_2_with_one_line_naming_the_setting() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("USAGE_MONITOR_")}
    env["USAGE_MONITOR_WEB_BIND"] = "0.0.0.0"
    # Nothing to reach: were the setting accepted, the preflight would fail at once instead.
    env |= {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "REDIS_URL": "redis://127.0.0.1:1/0"}
    done = subprocess.run(
        [str(BIN / "usage-monitor"), "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "USAGE_MONITOR_API_TOKEN" in lines[0], lines
