"""Runs the notifier: inputs, dispatcher and HTTP server in one event loop, until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web
from prometheus_client import generate_latest

from simwatch_runtime.preflight import redis_status

from ..bootstrap import Components

log = logging.getLogger(__name__)
PROMETHEUS_TEXT = "text/plain; version=0.0.4"


def http_app(c: Components, tasks: list[asyncio.Task[None]]) -> web.Application:
    async def health(_: web.Request) -> web.Response:
        checks = {
            "inputs": "ok" if tasks and not tasks[0].done() else "down",
            "dispatcher": "ok" if len(tasks) > 1 and not tasks[1].done() else "down",
        }
        checks["redis"] = await redis_status(c.redis)
        ok = all(v == "ok" for v in checks.values())
        return web.json_response(
            {"status": "ok" if ok else "degraded", **checks}, status=200 if ok else 503
        )

    async def metrics(_: web.Request) -> web.Response:
        c.metrics.retry_queue.set(await c.ledger.depth())
        return web.Response(body=generate_latest(c.registry), content_type=PROMETHEUS_TEXT)

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    return app


async def serve(c: Components) -> None:
    tasks = [
        asyncio.create_task(c.inputs.run(), name="inputs"),
        asyncio.create_task(c.dispatcher.run(), name="dispatcher"),
    ]
    runner = web.AppRunner(http_app(c, tasks))
    await runner.setup()
    site = web.TCPSite(runner, c.settings.web_bind, c.settings.web_port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("notifier ready on %s:%d", c.settings.web_bind, c.settings.web_port)
    try:
        done, _ = await asyncio.wait(
            [*tasks, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            if task in tasks and task.exception():
                raise task.exception()  # type: ignore[misc]
    finally:
        c.inputs.stop()
        await c.dispatcher.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.cleanup()
        await c.close()
