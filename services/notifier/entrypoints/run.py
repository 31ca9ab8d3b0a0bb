"""Runs the notifier: inputs, dispatcher and HTTP server in one event loop, until SIGTERM;
then stops taking input, lets attempts in flight finish, and closes every client."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry

from simwatch_runtime.liveness import exit_after
from simwatch_runtime.redis_client import AnyRedis

from ..metrics import Metrics
from ..ports import DeliveryLedger
from ..service_layer.dispatcher import Dispatcher
from ..settings import Settings
from .consumers import EXIT_GRACE_S, Inputs
from .web import http_app

log = logging.getLogger(__name__)


class Parts(Protocol):
    """What `serve` runs (bootstrap's `Components`)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def registry(self) -> CollectorRegistry: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def redis(self) -> AnyRedis: ...
    @property
    def ledger(self) -> DeliveryLedger: ...
    @property
    def dispatcher(self) -> Dispatcher: ...
    @property
    def inputs(self) -> Inputs: ...

    async def close(self) -> None: ...


async def serve(c: Parts) -> None:
    tasks = [
        asyncio.create_task(c.inputs.run(), name="inputs"),
        asyncio.create_task(c.dispatcher.run(), name="dispatcher"),
    ]
    runner = web.AppRunner(http_app(c.registry, c.metrics, c.ledger, c.redis, tasks))
    await runner.setup()
    site = web.TCPSite(runner, c.settings.web_bind, c.settings.web_port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("notifier ready on %s:%d", c.settings.web_bind, c.settings.web_port)
    failure: BaseException | None = None
    try:
        done, _ = await asyncio.wait(
            [*tasks, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            if task in tasks and (failure := task.exception()):
                raise failure
    finally:
        c.inputs.stop()
        await c.dispatcher.stop()  # first: its attempts in flight finish and are recorded
        if failure is not None:
            # What follows stops the consumers and producers, on a Kafka that stalled or
            # whose link broke (a dead fetch task): their stop can wait on it for minutes.
            exit_after(EXIT_GRACE_S)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await c.inputs.close()
        await runner.cleanup()
        await c.close()
