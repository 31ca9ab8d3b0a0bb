"""The notifier's Kafka inputs: `customer.settings` and `card.alerts`, parsed here and handed
to the scheduler (malformed input goes to the dead-letter topic). An alert's offset is
committed only after each of its deliveries is scheduled and Redis has confirmed those
writes durable (NOTIFIER_DURABILITY; a batch Redis cannot confirm is scheduled again, under
the new primaries after a failover); delivering is the dispatcher's job, so no endpoint can
stall a partition. A stall watchdog on each consumer (`simwatch_runtime.liveness`) stops
the notifier, for its supervisor to restart it, if records wait and nothing is applied for
NOTIFIER_CONSUMER_STALL_S without an error to show for it."""

from __future__ import annotations

import asyncio
import logging
import time
from asyncio import FIRST_COMPLETED
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from pydantic import ValidationError

from simwatch_contracts import CardAlert, CustomerSettings, describe_validation_error
from simwatch_runtime.aiokafka_tasks import fetcher_failure
from simwatch_runtime.dead_letters import letter_of
from simwatch_runtime.durability import Barrier
from simwatch_runtime.errors import MAX_BACKOFF_S, component_of, retrying
from simwatch_runtime.liveness import ConsumerStalledError, Watchdog, await_chain
from simwatch_runtime.progress import Progress

from ..metrics import Metrics
from ..ports import Publisher
from ..service_layer.scheduling import Scheduler
from ..settings import Settings

log = logging.getLogger(__name__)

_T = TypeVar("_T")
Handler = Callable[[list[ConsumerRecord[bytes, bytes]]], Awaitable[None]]
"""Applies one fetched batch of records, in order."""
INPUTS = ("settings", "alerts")
EXIT_GRACE_S = 20.0
"""After a stall, how long the notifier's stop may take before the process exits anyway (a
stop waits on Kafka; nothing uncommitted is lost: it is read again)."""

CONSUMER_STOP_S = 8.0
"""How long one consumer's stop (leaving its group) may take: over a broken link it waits on
Kafka, and the failure that ended the loop must still reach `serve` within its grace."""


async def _stop(consumer: AIOKafkaConsumer, name: str) -> None:
    """Stop a consumer, bounded; its failure is logged, not raised: aiokafka re-raises a dead
    fetch task's error from `stop`, which would hide why the loop ended."""
    try:
        async with asyncio.timeout(CONSUMER_STOP_S):
            await consumer.stop()
    except Exception as exc:  # nothing uncommitted is lost: it is read again
        log.warning("the %s consumer did not stop cleanly: %s: %s", name, type(exc).__name__, exc)


class Inputs:
    def __init__(
        self,
        settings: Settings,
        scheduler: Scheduler,
        metrics: Metrics,
        publish: Publisher,
        wake: asyncio.Event,
        barrier: Barrier,
    ) -> None:
        self.barrier = barrier
        self.s = settings
        self.scheduler = scheduler
        self.metrics = metrics
        self.publish = publish
        self.wake = wake
        self._stopping = asyncio.Event()
        self.progress = {name: Progress() for name in INPUTS}
        self._consumers: dict[str, AIOKafkaConsumer] = {}
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._taken: dict[str, tuple[int, float]] = {}
        self._work: asyncio.Task[None] | None = None
        """Records a batch took and has not applied yet (count, since when, monotonic)."""

    def _consumer(self, topic: str, group: str) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            topic,
            bootstrap_servers=self.s.kafka_bootstrap_servers,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=2_500,
        )

    async def run(self) -> None:
        """Consume both topics until `stop`; raises `ConsumerStalledError` when a watchdog
        finds either consumer stalled (the process then ends, for its supervisor). After a
        stall the consumers are left to `close`: their stop waits on the Kafka that stalled,
        and the dispatcher is to stop first (`run.serve`), its attempts in flight recorded."""
        work = self._work = asyncio.create_task(self._consume(), name="notifier-inputs")
        watchdogs = [
            asyncio.create_task(self._watchdog(name).run(), name=f"notifier-{name}-watchdog")
            for name in INPUTS
        ]
        stalled = False
        try:
            done, _ = await asyncio.wait([work, *watchdogs], return_when=FIRST_COMPLETED)
            for task in done:
                outcome = task.result()  # the inputs' own failure, raised as it is
                if isinstance(outcome, ConsumerStalledError):
                    stalled = True
                    raise outcome
        finally:
            for task in watchdogs:
                task.cancel()
            await asyncio.gather(*watchdogs, return_exceptions=True)
            if not stalled:
                await self.close()

    async def close(self) -> None:
        """Stop the consumers (they leave their groups), if `run` left them running."""
        if self._work is not None:
            self._work.cancel()
            await asyncio.gather(self._work, return_exceptions=True)

    def _watchdog(self, name: str) -> Watchdog:
        def report() -> str:
            return f"the {name} loop waits at {await_chain(self._loops.get(name))}; "

        def taken() -> str | None:
            held = self._taken.get(name)
            if held is None:
                return None
            return f"{held[0]} records taken {time.monotonic() - held[1]:.0f} s ago, not applied"

        topic = self.s.topic_settings if name == "settings" else self.s.topic_alerts
        return Watchdog(
            f"notifier consumer of {topic}",
            lambda: self._consumers.get(name),
            self.progress[name],
            stall_s=self.s.consumer_stall_s,
            retry_backoff_max_s=MAX_BACKOFF_S,
            bootstrap_servers=self.s.kafka_bootstrap_servers,
            report=report,
            taken=taken,
            stopping=self._stopping.is_set,
        )

    async def _consume(self) -> None:
        settings = self._consumer(self.s.topic_settings, f"{self.s.group_id}-settings")
        alerts = self._consumer(self.s.topic_alerts, self.s.group_id)
        await settings.start()
        try:
            self._consumers["settings"] = settings
            await self._catch_up(settings)
            await alerts.start()
            try:
                self._consumers["alerts"] = alerts
                self._loops = {
                    "settings": asyncio.create_task(
                        self._loop(settings, self._on_settings_batch, "settings")
                    ),
                    "alerts": asyncio.create_task(self._loop(alerts, self._on_alerts, "alerts")),
                }
                try:
                    await asyncio.gather(*self._loops.values())
                finally:
                    for task in self._loops.values():
                        task.cancel()
                    await asyncio.gather(*self._loops.values(), return_exceptions=True)
            finally:
                self._consumers.pop("alerts", None)
                await _stop(alerts, "alerts")
        finally:
            self._consumers.pop("settings", None)
            await _stop(settings, "settings")

    def stop(self) -> None:
        self._stopping.set()

    async def _on_settings_batch(self, messages: list[ConsumerRecord[bytes, bytes]]) -> None:
        for msg in messages:  # in order: the latest value per customer holds
            await self._on_settings(msg)

    async def _catch_up(self, consumer: AIOKafkaConsumer, limit_s: float = 15.0) -> None:
        """Wait, before the first alert, until the settings that existed at this replica's
        start are stored, whichever replica holds their partitions: an alert read earlier
        would find its customer missing and reach no one. This replica reads the partitions
        it holds; for the others it reads the group's committed offsets, which their holders
        advance only once a batch is stored. Bounded: every Kafka query is cut off at
        `limit_s` from the start, and then the replica goes on (a setting read later still
        counts for later alerts), saying which partitions lagged. Only a batch being
        applied is not cut off (its records would be skipped until the next rebalance)."""
        deadline = time.monotonic() + limit_s
        lagging: dict[TopicPartition, int] = {}  # partition -> its end offset at the start
        try:
            lagging = await _until(deadline, self._settings_ends(consumer))
            while lagging:
                if self._stopping.is_set():
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError
                stored = await _until(deadline, _stored(consumer, list(lagging)))
                lagging = {tp: end for tp, end in lagging.items() if stored[tp] < end}
                if not lagging:
                    return
                if consumer.assignment():
                    await self._batch(consumer, self._on_settings_batch, "settings")
                else:  # other replicas hold them all: their commits show their progress
                    await asyncio.sleep(0.25)
        except (TimeoutError, KafkaError) as exc:
            log.warning(
                "settings catch-up: going on after %.1f s with %s (%s)",
                limit_s - (deadline - time.monotonic()),
                ", ".join(
                    f"partition {tp.partition} not stored up to {e}" for tp, e in lagging.items()
                )
                or "the settings topic's end offsets unknown",
                type(exc).__name__,
            )

    async def _settings_ends(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
        """The end offset of each settings partition that holds records (none: no topic)."""
        known = consumer.partitions_for_topic(self.s.topic_settings) or set()
        parts = [TopicPartition(self.s.topic_settings, p) for p in sorted(known)]
        if not parts:
            return {}
        ends = await consumer.end_offsets(parts)
        starts = await consumer.beginning_offsets(parts)  # emptied by retention: nothing to read
        return {tp: end for tp, end in ends.items() if end > starts.get(tp, 0)}

    async def _loop(self, consumer: AIOKafkaConsumer, handle: Handler, name: str) -> None:
        while not self._stopping.is_set():
            await self._batch(consumer, handle, name)

    async def _batch(self, consumer: AIOKafkaConsumer, handle: Handler, name: str) -> None:
        fetched = await consumer.getmany(timeout_ms=200, max_records=500)
        if not fetched:
            failure = fetcher_failure(consumer)
            if failure is not None:
                # aiokafka's fetch task died (see `aiokafka_tasks`): getmany would return
                # nothing for ever. End the notifier, for its supervisor to restart it.
                raise RuntimeError(
                    f"an aiokafka background task of the {name} consumer died"
                ) from failure
            return
        progress = self.progress[name]
        offsets = {tp: msgs[-1].offset + 1 for tp, msgs in fetched.items()}

        async def apply() -> None:
            # Idempotent: scheduling is keyed by delivery id, settings are overwritten.
            epoch = await self.barrier.epoch()
            await handle([msg for messages in fetched.values() for msg in messages])
            await self.barrier.confirm(epoch)  # NotDurableError: transient, the batch again
            try:
                await consumer.commit(offsets)
            except (CommitFailedError, IllegalStateError) as exc:
                # The partitions moved: their new owner reads the batch again, harmlessly.
                log.info("offset commit skipped after rebalance: %s", exc)

        def on_error(exc: BaseException) -> None:
            self.metrics.transient_errors.labels(component_of(exc)).inc()
            progress.note_failure()  # waiting on a dependency, visibly: not a stall

        # Redis or Kafka away: retry the batch in place rather than crash the notifier.
        self._taken[name] = (sum(len(m) for m in fetched.values()), time.monotonic())
        try:
            await retrying(apply, what="notifier input batch", on_error=on_error)
        finally:
            self._taken.pop(name, None)
        progress.note_applied()
        self.wake.set()

    async def _on_settings(self, msg: ConsumerRecord[bytes, bytes]) -> None:
        """The key names the customer: a tombstone deletes that key's settings, and a value
        is stored only under its own key, so no key can overwrite another customer's."""
        key, problem = _customer_key(msg.key)
        if key is None:
            await self._dead_letter(msg, problem)
            self.metrics.settings.labels("dead_lettered").inc()
            return
        if msg.value is None:  # tombstone: the customer is gone
            await self.scheduler.delete_settings(key)
            return
        try:
            parsed = CustomerSettings.model_validate_json(msg.value)
        except ValidationError as exc:
            await self._dead_letter(msg, describe_validation_error(exc))
            self.metrics.settings.labels("dead_lettered").inc()
            return
        if parsed.customer_id != key:
            await self._dead_letter(
                msg, f"key {key!r} differs from customer_id {parsed.customer_id!r}"
            )
            self.metrics.settings.labels("dead_lettered").inc()
            return
        await self.scheduler.store_settings(key, msg.value)

    async def _on_alerts(self, messages: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Parse each alert once; schedule the valid ones together, dead-letter the others."""
        valid = []
        for msg in messages:
            try:
                alert = CardAlert.model_validate_json(msg.value or b"")
            except ValidationError as exc:
                await self._dead_letter(msg, describe_validation_error(exc))
                self.metrics.alerts.labels("dead_lettered").inc()
                continue
            valid.append((alert, msg.partition, msg.offset))
        if valid:
            await self.scheduler.alerts(valid)

    async def _dead_letter(self, msg: ConsumerRecord[bytes, bytes], error: str) -> None:
        letter = letter_of(msg, error, datetime.now(UTC), service="notifier")
        await self.publish(self.s.topic_dlq, msg.key, letter)
        self.metrics.dead_letters.labels(msg.topic, "malformed").inc()


def _customer_key(raw: bytes | None) -> tuple[str | None, str]:
    """The customer id a `customer.settings` key names, or None and why it names none."""
    if not raw:
        return None, "no key: customer.settings is keyed by customer id"
    try:
        return raw.decode("utf-8"), ""
    except UnicodeDecodeError:  # bytes from a foreign producer: poison, not a crash loop
        return None, "key is not UTF-8 text: customer.settings is keyed by customer id"


async def _stored(
    consumer: AIOKafkaConsumer, parts: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """How far each partition's settings are stored: this replica's position where it holds
    the partition (a batch is applied before the next is fetched), else the group's
    committed offset (a holder commits once a batch is stored)."""
    held = consumer.assignment()

    async def one(tp: TopicPartition) -> int:
        if tp in held:
            try:
                return int(await consumer.position(tp))
            except IllegalStateError:  # revoked since: its new holder's commits tell
                pass
        return int(await consumer.committed(tp) or 0)

    queries = [asyncio.ensure_future(one(tp)) for tp in parts]
    try:
        return dict(zip(parts, await asyncio.gather(*queries), strict=True))
    finally:  # one failed, or the bound cut them off: none is left retrying on its own
        for query in queries:
            query.cancel()


async def _until(deadline: float, work: Awaitable[_T]) -> _T:
    """`work`, cut off (TimeoutError) at `deadline` (monotonic): aiokafka's `committed`
    retries without a bound of its own while the group's coordinator is away, and its other
    offset queries for up to the 40 s request timeout. (A relative timeout: the event
    loop's clock, uvloop's for one, need not be `time.monotonic`.)"""
    async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
        return await work
