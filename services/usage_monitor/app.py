"""The faust app: lifecycle, web server and timers, the `card.events` agent, and the batched
usage consumer as a service inside it."""

from __future__ import annotations

import logging
from typing import Any

import faust
from mode import Service
from prometheus_client import generate_latest
from pydantic import TypeAdapter, ValidationError

from simwatch_contracts.common import Iccid
from simwatch_runtime.errors import TRANSIENT
from simwatch_runtime.preflight import redis_status

from .api_auth import bearer_guard
from .bootstrap import Components
from .card_events import handle_card_event
from .status import card_status, customer_status
from .usage_consumer import UsageConsumer

log = logging.getLogger(__name__)
_ICCID: TypeAdapter[str] = TypeAdapter(Iccid)
PROMETHEUS_TEXT = "text/plain; version=0.0.4"


class _Resources(Service):
    """Closes the Redis client and Kafka producer when the worker stops."""

    def __init__(self, components: Components, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.components = components

    async def on_stop(self) -> None:
        await self.components.close()


def create_app(c: Components) -> tuple[faust.App, UsageConsumer]:
    s = c.settings
    app = faust.App(
        s.app_id,
        broker=[f"kafka://{h.strip()}" for h in s.kafka_bootstrap_servers.split(",")],
        autodiscover=False,
        store="memory://",
        web_enabled=True,
        web_bind=s.web_bind,
        web_port=s.web_port,
        web_in_thread=False,
        # faust's own endpoints expose table data, cluster topology and internals: off.
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        web_application_options={"middlewares": bearer_guard(s.api_token)},
        broker_session_timeout=s.broker_session_timeout_s,
        broker_heartbeat_interval=max(0.1, s.broker_session_timeout_s / 4),
        consumer_auto_offset_reset="earliest",
        topic_partitions=s.topic_partitions,
        topic_allow_declare=s.create_topics,
        producer_acks=-1,
    )
    events = app.topic(
        s.topic_events,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    @app.agent(events, name="card-events")
    async def card_events(stream: Any) -> None:
        async for event in stream.events():
            await handle_card_event(c, event.message)

    @app.timer(interval=s.outbox_sweep_interval_s, name="outbox-sweep")  # type: ignore[untyped-decorator]
    async def outbox_sweep() -> None:
        try:
            await c.service.sweep()
        except TRANSIENT as exc:  # Redis or Kafka away: one line, the next tick tries again
            log.warning("outbox sweep: %s: %s", type(exc).__name__, exc)
        except Exception:  # a timer must survive any failure: the next tick sweeps again
            log.exception("outbox sweep failed; retrying next tick")

    @app.timer(interval=s.scheduler_interval_s, on_leader=True, name="lifecycle-clock")  # type: ignore[untyped-decorator]
    async def lifecycle_clock() -> None:
        try:
            await c.service.tick()
        except TRANSIENT as exc:  # Redis or Kafka away: due cards stay due until it is back
            log.warning("lifecycle tick: %s: %s", type(exc).__name__, exc)
        except Exception:  # the clock must keep ticking: due cards stay due until it works
            log.exception("lifecycle tick failed; retrying next tick")

    consumer = UsageConsumer(c.pipeline, c.usage_dead_letters, s, c.metrics, loop=app.loop)
    # App.service is typed for classes; it starts instances just the same.
    app.service(consumer)  # type: ignore[arg-type]
    app.service(_Resources(c, loop=app.loop))  # type: ignore[arg-type]
    _routes(app, c, consumer)
    return app, consumer


def _routes(app: faust.App, c: Components, consumer: UsageConsumer) -> None:
    @app.page("/cards/{iccid}")
    async def card(self: Any, request: Any, iccid: str) -> Any:
        try:
            iccid = _ICCID.validate_python(iccid)
        except ValidationError:
            return self.json({"error": "malformed ICCID"}, status=400)
        snap = (await c.store.load([iccid]))[iccid]
        view = card_status(snap, c.service.clock(), c.service.policy)
        if view is None:
            return self.json({"error": "unknown card", "iccid": iccid}, status=404)
        return self.json(view)

    @app.page("/customers/{customer_id}")
    async def customer(self: Any, request: Any, customer_id: str) -> Any:
        if not 1 <= len(customer_id) <= 128:
            return self.json({"error": "malformed customer id"}, status=400)
        return self.json(customer_status(customer_id, await c.store.customer_view(customer_id)))

    @app.page("/health")
    async def health(self: Any, request: Any) -> Any:
        checks: dict[str, str] = {"usage_consumer": "ok" if consumer.running else "down"}
        checks["redis"] = await redis_status(c.redis)
        ok = all(v == "ok" for v in checks.values())
        return self.json(
            {"status": "ok" if ok else "degraded", **checks}, status=200 if ok else 503
        )

    @app.page("/metrics")
    async def metrics(self: Any, request: Any) -> Any:
        # aiohttp refuses a charset inside content_type; Prometheus reads the text format as UTF-8.
        return self.bytes(generate_latest(c.registry), content_type=PROMETHEUS_TEXT)
