"""Signed webhook deliveries/s of one `WebhookSender` to a loopback endpoint in another
process: `python -m bench.webhook_sender [--n 20000] [--concurrency 50]` (issue #20 asks for
2000/s per replica). The endpoint answers 204 without verifying, so the sender is measured."""

from __future__ import annotations

import argparse
import asyncio
import inspect
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

from notifier.channels.webhook import WebhookSender
from simwatch_contracts import CardAlert

from .procs import free_port

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
_SERVER = """
import sys
from aiohttp import web
async def hook(request):
    await request.read()
    return web.Response(status=204)
app = web.Application()
app.router.add_post("/hook", hook)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def _alert(n: int) -> CardAlert:
    return CardAlert.model_validate(
        {
            "alert_id": f"alr-bench-{n}",
            "type": "usage_threshold",
            "iccid": "89860412345678901234",
            "customer_id": "acme",
            "cycle": "2026-11-01",
            "percent": 80,
            "used_bytes": 800,
            "quota_bytes": 1000,
            "occurred_at": datetime.now(UTC),
        },
        strict=False,
    )


async def _sender() -> tuple[Any, Any]:
    """A sender built the way `bootstrap` builds it, for either constructor generation."""
    # Any: each generation's constructor is checked against the other's signature otherwise.
    sender_type: Any = WebhookSender
    params = inspect.signature(sender_type.__init__).parameters
    if "client" in params:  # the httpx generation
        import httpx

        client = httpx.AsyncClient(limits=httpx.Limits(max_connections=200))
        return sender_type(client, allow_private=True, timeout_s=15), client.aclose
    sender = sender_type(allow_private=True, timeout_s=15)
    return sender, sender.close


async def run(n: int, concurrency: int, port: int) -> float:
    sender, close = await _sender()
    url = f"http://127.0.0.1:{port}/hook"
    alerts = [_alert(i) for i in range(n)]
    queue = iter(alerts)
    results: dict[str, int] = {}

    async def worker() -> None:
        for alert in queue:
            out = await sender.send(url, SECRET, alert, datetime.now(UTC))
            results[out.result.value] = results.get(out.result.value, 0) + 1

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))  # warm-up pass
        queue = iter(alerts)
        results.clear()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    finally:
        await close()
    print(f"{results} in {elapsed:.2f} s: {n / elapsed:.0f} deliveries/s")
    return n / elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", _SERVER, str(port)])
    try:
        time.sleep(1.5)
        asyncio.run(run(args.n, args.concurrency, port))
    finally:
        server.terminate()
        server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
