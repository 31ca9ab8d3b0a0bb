"""The faust app: lifecycle, timers, the `card.events`, `card.command_results` and
`pool.events` agents, the batched usage consumer as a service inside it, and the web views
(``web.py``)."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from mode import Service

from simwatch_runtime.dead_letters import RawMessage
from simwatch_runtime.errors import TRANSIENT
from simwatch_runtime.liveness import Watchdog, exit_after

from ..bootstrap import Components
from ..settings import Settings
from .api_auth import bearer_guard
from .card_events import EVENT_BATCH, EVENT_BATCH_WITHIN_S, handle_card_events
from .command_results import RESULT_BATCH, RESULT_BATCH_WITHIN_S, handle_command_results
from .pipeline import UsagePipeline
from .pool_events import POOL_BATCH, POOL_BATCH_WITHIN_S, handle_pool_events
from .usage_consumer import EXIT_GRACE_S, WATCH_EVERY_S, UsageConsumer
from .web import add_routes

log = logging.getLogger(__name__)


class _Resources(Service):
    """Ends the pool fan-outs in progress, then closes the Redis client and Kafka producer,
    when the worker stops."""

    def __init__(self, components: Components, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.components = components

    async def on_stop(self) -> None:
        # Pool fan-outs in progress first (their parts are recorded per shard; what is cut
        # short stays requested for the next owner), then the clients they use.
        await self.components.pools.stop(timeout_s=10)
        await self.components.close()


class _AgentsWatchdog(Service):
    """The stall watchdogs on faust's own consumer (`liveness.Watchdog`), one per agent's
    topic: after an outage past the session timeout it rejoined its group and applied none
    of the `card.events` and `pool.events` waiting, without a word, in about one run in
    three on a slower machine. A stall stops the worker, for its supervisor to restart it,
    as the usage consumer's watchdog does. One watchdog per topic, not one for the
    consumer: a `card.events` handler that hangs must not be hidden by command results
    still being applied."""

    def __init__(self, app: faust.App, c: Components, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        s = c.settings
        self._watchdogs = [
            Watchdog(
                f"faust consumer of {topic}",
                lambda: _faust_kafka_consumer(app),
                progress,
                stall_s=s.consumer_stall_s,
                retry_backoff_max_s=s.retry_backoff_max_s,
                bootstrap_servers=s.kafka_bootstrap_servers,
                every_s=WATCH_EVERY_S,
                report=lambda: _faust_report(app),
                taken=functools.partial(_unacked, app, topic),
                topics=frozenset({topic}),
                stopping=lambda: self.should_stop,
            )
            for topic, progress in c.agents.items()
        ]

    @Service.task
    async def _watch(self) -> None:
        watching = [asyncio.ensure_future(w.run()) for w in self._watchdogs]
        try:
            done, _ = await asyncio.wait(watching, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in watching:
                task.cancel()
        stalled = next(iter(done)).result()
        if self.should_stop:
            return
        exit_after(EXIT_GRACE_S)  # the stop waits on Kafka, which may not answer
        await self.crash(stalled)


def _faust_kafka_consumer(app: faust.App) -> Any:
    """faust's `AIOKafkaConsumer` (in the thread faust runs it in), or None before it exists:
    private state, as the watchdog's reading of aiokafka is (`liveness.consumer_state`)."""
    consumer = getattr(app, "_consumer", None)
    return getattr(getattr(consumer, "_thread", None), "_consumer", None)


def _unacked(app: faust.App, topic: str) -> str | None:
    """Messages of `topic` faust took from Kafka for its agent (buffered or being handled)
    and has not acked: a handler that hangs holds them, while aiokafka's positions are past
    them."""
    try:
        held = list(getattr(getattr(app, "_consumer", None), "_unacked_messages", ()))
    except (TypeError, RuntimeError):  # not a collection; changed while read
        return None
    unacked = sum(1 for m in held if getattr(m, "topic", None) == topic)
    return f"{unacked} messages taken by faust and not yet applied" if unacked else None


def _faust_report(app: faust.App) -> str:
    """faust's side of a stall, for the log line (the watchdog's name gives the topic): its
    flow (suspended during a rebalance), and whether it is rebalancing."""
    consumer = getattr(app, "_consumer", None)
    flow = "active" if getattr(consumer, "flow_active", True) else "suspended"
    return f"faust's flow {flow}, rebalancing {bool(getattr(app, 'rebalancing', False))}; "


def create_app(c: Components) -> tuple[faust.App, UsageConsumer]:
    """The worker's app: the `card.events` agent, the timers, the usage consumer, the views."""
    s = c.settings
    app = _faust_app(s)
    # In small batches: faust acks (and later commits) a batch's messages only once the
    # body is done, and the body ends with the batch confirmed durable in Redis.
    _agent(
        app,
        s.topic_events,
        "card-events",
        EVENT_BATCH,
        EVENT_BATCH_WITHIN_S,
        lambda ms: handle_card_events(c, ms),
    )
    _agent(
        app,
        s.topic_command_results,
        "command-results",
        RESULT_BATCH,
        RESULT_BATCH_WITHIN_S,
        lambda ms: handle_command_results(c, ms),
    )
    _agent(
        app,
        s.topic_pools,
        "pool-events",
        POOL_BATCH,
        POOL_BATCH_WITHIN_S,
        lambda ms: handle_pool_events(c, ms),
    )

    pipeline = UsagePipeline(c.service, c.usage_dead_letters, c.metrics, c.pools)
    consumer = UsageConsumer(pipeline, c.usage_dead_letters, s, c.metrics, c.barrier, loop=app.loop)
    c.pools.owned = consumer.owned_shards  # a pool decided here fans out to these at once
    if (pool_progress := c.agents.get(s.topic_pools)) is not None:
        c.pools.on_slice = pool_progress.note_applied  # a big pool's definition takes long
    _add_timers(app, c, consumer)
    # App.service is typed for classes; it starts instances just the same.
    app.service(consumer)  # type: ignore[arg-type]
    app.service(_AgentsWatchdog(app, c, loop=app.loop))  # type: ignore[arg-type]
    app.service(_Resources(c, loop=app.loop))  # type: ignore[arg-type]
    add_routes(app, c, consumer)
    return app, consumer


def _agent(
    app: faust.App,
    topic_name: str,
    name: str,
    batch: int,
    within_s: float,
    handle: Callable[[list[RawMessage]], Awaitable[None]],
) -> None:
    """A faust agent on a topic of raw bytes, handing `handle` batches of its messages."""
    topic = app.topic(
        topic_name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )

    async def agent(stream: Any) -> None:
        async for events in stream.take_events(batch, within=within_s):
            await handle([event.message for event in events])

    app.agent(topic, name=name)(agent)


def _faust_app(s: Settings) -> faust.App:
    datadir = os.path.join(tempfile.gettempdir(), "simwatch-faust")
    os.makedirs(datadir, exist_ok=True)
    return faust.App(
        s.app_id,
        broker=[f"kafka://{h.strip()}" for h in s.kafka_bootstrap_servers.split(",")],
        autodiscover=False,
        store="memory://",
        # Tables live in memory (Redis holds the state): faust's data directory stays empty,
        # so it goes to the temp directory rather than one `<app id>-data` per run in the cwd.
        datadir=os.path.join(datadir, "{conf.name}-data"),
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


def _add_timers(app: faust.App, c: Components, consumer: UsageConsumer) -> None:
    s = c.settings

    @app.timer(interval=s.outbox_sweep_interval_s, name="outbox-sweep")  # type: ignore[untyped-decorator]
    async def outbox_sweep() -> None:
        try:
            await c.service.sweep()
        except TRANSIENT as exc:  # Redis or Kafka away: one line, the next tick tries again
            log.warning("outbox sweep: %s: %s", type(exc).__name__, exc)
        except Exception:  # a timer must survive any failure: the next tick sweeps again
            log.exception("outbox sweep failed; retrying next tick")

    # A pool's stop or resume reaches every worker: each evaluates the members that live in
    # the shards it owns (the deciding worker starts its part at once, without waiting).
    @app.timer(interval=s.pool_fanout_poll_s, name="pool-fanouts")  # type: ignore[untyped-decorator]
    async def pool_fanouts() -> None:
        try:
            await c.pools.resume(consumer.owned_shards)
        except TRANSIENT as exc:  # Redis or Kafka away: the requests wait in Redis
            log.warning("pool fan-outs: %s: %s", type(exc).__name__, exc)
        except Exception:  # the poll must survive: requests stay until their parts are done
            log.exception("pool fan-outs failed; retrying next poll")

    # On every worker, for the shards it owns (its `usage.records` partitions): the first of
    # the month is spread over the workers like the usage stream (docs/architecture.md).
    @app.timer(interval=s.scheduler_interval_s, name="lifecycle-clock")  # type: ignore[untyped-decorator]
    async def lifecycle_clock() -> None:
        try:
            await c.service.tick(consumer.owned_shards, s.scheduler_batch)
        except TRANSIENT as exc:  # Redis or Kafka away: due cards stay due until it is back
            log.warning("lifecycle tick: %s: %s", type(exc).__name__, exc)
        except Exception:  # the clock must keep ticking: due cards stay due until it works
            log.exception("lifecycle tick failed; retrying next tick")
