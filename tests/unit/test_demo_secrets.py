"""The demo passes the webhook secret by environment, never on a command line (where `ps`
shows it to every user of the machine)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from standardwebhooks import Webhook

from usage_monitor.tools.simulate import add_arguments, webhook_secret

from ..servers import free_port

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_dGVzdC1zZWNyZXQtb2YtdGhlLWRlbW8tcmVjZWl2ZXI="


def test_demo_puts_no_secret_on_a_command_line() -> None:
    demo = (ROOT / "scripts" / "demo.sh").read_text()
    assert "--secret" not in demo and "--webhook-secret" not in demo
    assert not re.search(r'"\$SECRET"|\$\{?SECRET\b(?!=)', demo), "the secret is expanded"
    assert "SIMWATCH_WEBHOOK_SECRET" in demo


def test_simulate_reads_the_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert "--webhook-secret" not in parser.format_help()
    monkeypatch.setenv("SIMWATCH_WEBHOOK_SECRET", SECRET)
    assert webhook_secret() == SECRET


def test_the_demo_receiver_takes_its_secret_from_the_environment() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "webhook_receiver.py"), "--port", str(port)],
        env={"SIMWATCH_WEBHOOK_SECRET": SECRET, "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/stats", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None, "did not start"
                time.sleep(0.1)
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert SECRET.encode() not in cmdline and b"dGVzdC1z" not in cmdline
        body = b'{"type": "usage_threshold", "timestamp": "2026-11-25T10:00:00Z", "data": {}}'
        at = datetime.fromtimestamp(int(time.time()), UTC)
        headers = {"webhook-id": "alr-1", "webhook-timestamp": str(int(at.timestamp()))}
        headers["webhook-signature"] = Webhook(SECRET).sign("alr-1", at, body.decode())
        good = httpx.post(f"http://127.0.0.1:{port}/hook", content=body, headers=headers)
        headers["webhook-signature"] = "v1,AAAA"
        bad = httpx.post(f"http://127.0.0.1:{port}/hook", content=body, headers=headers)
        assert (good.status_code, bad.status_code) == (204, 400)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
