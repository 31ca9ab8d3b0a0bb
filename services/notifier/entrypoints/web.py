"""The notifier's HTTP surface: `/health` (its tasks and Redis) and `/metrics` (Prometheus)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from simwatch_runtime.preflight import redis_status
from simwatch_runtime.redis_client import AnyRedis

from ..metrics import Metrics
from ..ports import DeliveryLedger

PROMETHEUS_TEXT = "text/plain; version=0.0.4"


def http_app(
    registry: CollectorRegistry,
    metrics: Metrics,
    ledger: DeliveryLedger,
    redis: AnyRedis,
    tasks: list[asyncio.Task[None]],
) -> web.Application:
    """`tasks` are the inputs, then the dispatcher: healthy while both run."""

    async def health(_: web.Request) -> web.Response:
        checks = {
            "inputs": "ok" if tasks and not tasks[0].done() else "down",
            "dispatcher": "ok" if len(tasks) > 1 and not tasks[1].done() else "down",
        }
        checks["redis"] = await redis_status(redis)
        ok = all(v == "ok" for v in checks.values())
        return web.json_response(
            {"status": "ok" if ok else "degraded", **checks}, status=200 if ok else 503
        )

    async def metrics_text(_: web.Request) -> web.Response:
        metrics.retry_queue.set(await ledger.depth())
        return web.Response(body=generate_latest(registry), content_type=PROMETHEUS_TEXT)

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics_text)
    return app
