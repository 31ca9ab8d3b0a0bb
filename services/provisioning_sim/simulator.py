"""The Kafka side of the simulator: consume `card.commands`, answer each after its delay on
`card.command_results`, observe the cards on `card.events`, and print a summary line."""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import time
from dataclasses import dataclass, fields
from datetime import datetime

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from simwatch_contracts import (
    CardCommand,
    CommandResult,
    NetworkObserved,
    ResultStatus,
    describe_validation_error,
)
from simwatch_runtime.kafka_publisher import KafkaPublisher

from .network import Draw, NetworkView, draw
from .settings import Settings

log = logging.getLogger("provisioning_sim")

MAX_PENDING = 10_000
"""Commands waiting for their delay; the consumer pauses above it."""
DRAIN_GRACE_S = 5.0
"""At shutdown, pending commands get their longest delay plus this to be answered."""


@dataclass
class Counters:
    seen: int = 0
    malformed: int = 0
    applied: int = 0
    failed: int = 0
    rejected: int = 0
    dropped: int = 0
    duplicated: int = 0
    observations: int = 0
    drifts: int = 0
    publish_errors: int = 0

    def line(self, pending: int) -> str:
        parts = [f"{f.name}={getattr(self, f.name)}" for f in fields(self)]
        return "provisioning-sim: " + " ".join([*parts, f"pending={pending}"])


_COUNTED = {
    ResultStatus.APPLIED: "applied",
    ResultStatus.FAILED: "failed",
    ResultStatus.REJECTED: "rejected",
}


def now() -> datetime:
    """The local time with its offset (RFC 3339 on the wire)."""
    return datetime.now().astimezone()


class Simulator:
    """The network's view and the answering of commands; Kafka is handed in (a publisher)."""

    def __init__(self, settings: Settings, publisher: KafkaPublisher) -> None:
        self.settings = settings
        self.publisher = publisher
        self.view = NetworkView()
        self.counts = Counters()
        seed = settings.seed
        self._rng = random.Random(seed)
        # Apart from the commands' draws, so the observation timing leaves those unchanged.
        self._drift_rng = random.Random(None if seed is None else f"{seed}-drift")
        self._rates = settings.rates()
        self._chains: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Event ids stay unique across restarts: usage_monitor remembers card event ids.
        self._run = f"{int(time.time()):x}"
        self._observed = 0

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def receive(self, raw: bytes | None) -> None:
        """Parse one `card.commands` message and schedule its answer (after the card's earlier
        commands: the network handles one card's commands in order)."""
        try:
            command = CardCommand.model_validate_json(raw or b"")
        except ValidationError as exc:
            self.counts.malformed += 1
            log.warning("malformed command skipped: %s", describe_validation_error(exc))
            return
        self.counts.seen += 1
        s = self.settings
        chosen = draw(self._rng, self._rates, s.delay_min_s, s.delay_max_s)
        previous = self._chains.get(command.iccid)
        task = asyncio.create_task(self._handle(command, chosen, previous))
        self._chains[command.iccid] = task
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._forget(command.iccid, t))

    def _forget(self, iccid: str, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._chains.get(iccid) is task:
            del self._chains[iccid]

    async def _handle(
        self, command: CardCommand, chosen: Draw, previous: asyncio.Task[None] | None
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # its outcome (even a cancellation) is not ours
        await asyncio.sleep(chosen.delay_s)
        answer = self.view.answer(command, chosen.outcome)
        if answer is None:
            self.counts.dropped += 1
            log.debug("dropped %s (attempt %d)", command.command_id, command.attempt)
            return
        counter = _COUNTED[answer.status]
        setattr(self.counts, counter, getattr(self.counts, counter) + 1)
        result = CommandResult(
            command_id=command.command_id,
            iccid=command.iccid,
            status=answer.status,
            network_state=answer.network_state,
            detail=answer.detail,
            at=now(),
        )
        copies = 2 if chosen.duplicate else 1
        self.counts.duplicated += copies - 1
        value = result.model_dump_json().encode()
        topic, key = self.settings.topic_results, command.iccid.encode()
        try:
            await self.publisher.publish([(topic, key, value)] * copies)
        except KafkaError as exc:  # the broker is away: this answer is lost, like a drop
            self.counts.publish_errors += 1
            log.error("result of %s not published: %r", command.command_id, exc)

    async def observe_once(self) -> int:
        """Publish one round of `card.network_observed` events; how many."""
        s = self.settings
        observations = self.view.observe(self._drift_rng, s.drift_rate, s.observe_max)
        if not observations:
            return 0
        at = now()
        messages = []
        for obs in observations:
            self._observed += 1
            event = NetworkObserved(
                type="card.network_observed",
                event_id=f"obs-{self._run}-{obs.iccid}-{self._observed}",
                occurred_at=at,
                iccid=obs.iccid,
                network_state=obs.network_state,
            )
            messages.append((s.topic_events, obs.iccid.encode(), event.model_dump_json().encode()))
        self.counts.drifts += sum(obs.drifted for obs in observations)
        try:
            await self.publisher.publish(messages)
        except KafkaError as exc:  # the broker is away: the next round observes again
            self.counts.publish_errors += 1
            log.error("observations not published: %r", exc)
            return 0
        self.counts.observations += len(messages)
        return len(messages)

    async def room(self) -> None:
        """Wait while MAX_PENDING commands wait for their answer (the consumer pauses)."""
        while len(self._tasks) >= MAX_PENDING:
            await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)

    async def drain(self, timeout_s: float) -> None:
        """Let pending commands be answered for up to `timeout_s`, then cancel the rest."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))


async def _consume(consumer: AIOKafkaConsumer, sim: Simulator) -> None:
    while True:
        await sim.room()
        batches = await consumer.getmany(timeout_ms=500, max_records=500)
        for messages in batches.values():
            for message in messages:
                sim.receive(message.value)


async def _observe(sim: Simulator, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        await sim.observe_once()


async def _summarize(sim: Simulator, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        print(sim.counts.line(sim.pending), flush=True)


async def run(settings: Settings) -> Counters:
    """Run until `duration_s` passes (0: forever) or SIGTERM / SIGINT; the final counts."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    publisher = KafkaPublisher(
        settings.kafka_bootstrap_servers,
        "provisioning-sim",
        idempotence=settings.producer_idempotence,
    )
    consumer = AIOKafkaConsumer(
        settings.topic_commands,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.group_id,
        client_id="provisioning-sim",
        auto_offset_reset=settings.offset_reset,
        enable_auto_commit=True,
    )
    sim = Simulator(settings, publisher)
    try:
        await consumer.start()
        jobs = [asyncio.create_task(_consume(consumer, sim), name="consume")]
        jobs.append(asyncio.create_task(_summarize(sim, settings.summary_interval_s)))
        if settings.observe_interval_s > 0:
            jobs.append(asyncio.create_task(_observe(sim, settings.observe_interval_s)))
        log.info("answering %s on %s", settings.topic_commands, settings.topic_results)
        try:
            await _until(stop, jobs, settings.duration_s or None)
        finally:
            await sim.drain(settings.delay_max_s + DRAIN_GRACE_S)
    finally:
        # The handlers stay until the loop closes: removed here, a signal still being
        # delivered would meet Python's default handler (KeyboardInterrupt mid-cleanup).
        await consumer.stop()
        await publisher.close()
        print(sim.counts.line(sim.pending), flush=True)
    return sim.counts


async def _until(
    stop: asyncio.Event, jobs: list[asyncio.Task[None]], duration_s: float | None
) -> None:
    """Wait for the stop signal or `duration_s` (None: no limit); a job that ends first ends
    the run (its exception is raised). Every job is cancelled on the way out."""
    stopped = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait(
            [stopped, *jobs], timeout=duration_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for task in [stopped, *jobs]:
            task.cancel()
        await asyncio.gather(stopped, *jobs, return_exceptions=True)
    for task in done:
        if task is not stopped and not task.cancelled():
            exc = task.exception()
            if exc is not None:
                raise exc
