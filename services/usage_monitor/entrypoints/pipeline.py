"""The usage hot path for one fetched batch: parse, dead-letter the malformed, count every
record once per shard in one Lua call, and settle the cards that reached a wake level.

It pays no per-record framework cost: records arrive as aiokafka batches (see
``usage_consumer.py``) and leave as one script call per shard.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from pydantic import ValidationError

from simwatch_contracts import UsageRecord, describe_validation_error
from simwatch_runtime.dead_letters import DeadLetters, Letters, RawMessage

from ..adapters import dedupe, record_scan
from ..domain.cycles import cycle_of, cycle_start, next_cycle
from ..metrics import Metrics
from ..ports import IngestResult, IngestRow
from ..service_layer.pooling import PoolService
from ..service_layer.service import CardService

log = logging.getLogger(__name__)
MAX_RECALENDAR_ROUNDS = 3
LAG_SAMPLE_EVERY = 8  # event-time lag is observed for one record in 8: it costs ~3 us each
PARSE_SLICE = 1000
"""Messages parsed between two yields to the event loop (~1-4 ms of CPU)."""


def _instant(posix_s: float) -> datetime:
    """An event time back from its timestamp (exact to the microsecond: the instant is all
    that names a cycle)."""
    return datetime.fromtimestamp(posix_s, UTC)


def oversized(size: int, limit: int) -> str:
    """The error of a message too large to be a usage record or card event: not parsed at all
    (a megabyte of JSON costs milliseconds of the hot path, and is no record we know)."""
    return f"message is {size} bytes; the limit is {limit} (USAGE_MONITOR_MAX_MESSAGE_BYTES)"


@dataclass(slots=True)
class BatchOutcome:
    applied: int = 0
    duplicates: int = 0
    late: int = 0
    dead_lettered: int = 0
    unknown: int = 0
    changed: int = 0


@dataclass(slots=True)
class Parsed:
    """A fetched batch parsed and ready to apply: its rows, their event times (POSIX
    seconds, for a card whose billing calendar names its cycle) and its dead letters."""

    now: datetime
    rows: list[IngestRow]
    event_times: list[float]
    out: BatchOutcome
    size: int
    letters: Letters

    def extend(self, more: Parsed) -> None:
        """Take in a later fetch's records: one batch, applied as one, at the later time
        (its decisions are made as of then)."""
        self.now = more.now
        self.rows += more.rows
        self.event_times += more.event_times
        self.out.dead_lettered += more.out.dead_lettered
        self.size += more.size
        self.letters += more.letters


class UsagePipeline:
    def __init__(
        self,
        service: CardService,
        dead_letters: DeadLetters,
        metrics: Metrics,
        pools: PoolService | None = None,
    ) -> None:
        self.service = service
        self.pools = pools
        self.store = service.store
        self.settings = service.settings
        self.dead_letters = dead_letters
        self.metrics = metrics
        self._default = self.settings.default_calendar
        self._scan = record_scan.scan if self.settings.native_records else None
        if self.settings.native_records and record_scan.scan is None:
            log.warning(
                "compiled record reader not built (no C compiler at install?): every usage "
                "record is validated by pydantic, ~3 us more CPU a record"
            )

    async def process(self, messages: Sequence[RawMessage]) -> BatchOutcome:
        """Parse and apply a batch, its dead letters published."""
        parsed = await self.parse(messages)
        out = await self.apply(parsed)
        await self.dead_letters.publish(parsed.letters)
        return out

    async def parse(self, messages: Sequence[RawMessage]) -> Parsed:
        """The CPU part of a batch (no I/O), done while earlier batches wait on Redis and
        Kafka. It yields to them every `PARSE_SLICE` messages: a batch in flight whose
        script returned meanwhile goes on at once (sends its decisions, its next script),
        rather than after the whole parse. Its dead letters travel with it."""
        now = self.service.clock()
        out = BatchOutcome()
        rows: list[IngestRow] = []
        event_times: list[float] = []
        for i in range(0, len(messages), PARSE_SLICE):
            if i:
                await asyncio.sleep(0)
            self._parse(messages[i : i + PARSE_SLICE], now, rows, event_times)
        out.dead_lettered = self.dead_letters.pending
        return Parsed(now, rows, event_times, out, len(messages), self.dead_letters.take())

    async def apply(self, parsed: Parsed) -> BatchOutcome:
        """Count a parsed batch and settle what it woke. Idempotent: re-running it after a
        failure counts nothing twice."""
        now, rows, times, out = parsed.now, parsed.rows, parsed.event_times, parsed.out
        out.applied = out.duplicates = out.unknown = out.late = out.changed = 0
        by_shard: dict[int, list[int]] = defaultdict(list)
        for i, row in enumerate(rows):
            by_shard[self.store.shard(row.iccid)].append(i)
        # Every shard's script in one round trip; a shard whose records came back for their
        # card's own billing calendar goes on alone (rare).
        batches = {shard: [rows[i] for i in idx] for shard, idx in by_shard.items()}
        first = await self.store.ingest_many(batches)
        results = await asyncio.gather(
            *(
                self._recalendar_rounds(shard, first[shard], batches[shard], idx, times, now)
                for shard, idx in by_shard.items()
            )
        )
        due: dict[str, None] = {}
        touched: dict[tuple[str, date], None] = {}
        for result in results:
            touched.update(dict.fromkeys(result.pools))
            out.applied += result.applied
            out.duplicates += result.duplicates
            out.unknown += result.unknown
            out.late += result.late
            due.update(dict.fromkeys(iccid for iccid, _, _ in result.due))
        if due:
            out.changed = await self.service.evaluate(due, origin=now)
        if touched and self.pools is not None:
            # After the cards: a pool's crossing stops members whose own decisions are done.
            await self.pools.settle(touched)
        self._observe(out, parsed.size)
        return out

    def _parse(
        self,
        messages: Sequence[RawMessage],
        now: datetime,
        rows: list[IngestRow],
        event_times: list[float],
    ) -> None:
        tz, day = self.settings.default_timezone, self.settings.default_cycle_day
        # Compare POSIX timestamps, not aware datetimes (each comparison of those calls
        # utcoffset() twice), and name the cycle of the usual record, one in the current
        # cycle, by that comparison rather than by a timezone conversion.
        now_ts = now.timestamp()
        horizon = now_ts + self.settings.future_skew_s
        current = cycle_of(now, tz, day)
        start = cycle_start(current, tz).timestamp()
        end = cycle_start(next_cycle(current), tz).timestamp()
        lag = self.metrics.event_lag
        # A record whose remembered-id window may be gone before a redelivery is refused.
        forgotten = dedupe.oldest_accepted(now, self.settings.record_dedupe_ttl_s).timestamp()
        too_large = self.settings.max_message_bytes
        scan, validate, window_at = self._scan, UsageRecord.model_validate_json, dedupe.window_at
        add_row, add_time = rows.append, event_times.append
        digest: int | None
        for n, msg in enumerate(messages):
            value = msg.value
            if value is not None and len(value) > too_large:
                self.dead_letters.add(msg, oversized(len(value), too_large), "too_large")
                continue
            # The plain form by the compiled reader; anything else, and every error, by
            # the model (record_scan.py).
            fast = scan(value) if scan is not None and value is not None else None
            if fast is not None:
                record_id, iccid, at, nbytes, digest = fast
            else:
                try:
                    record = validate(value or b"")
                except ValidationError as exc:
                    self.dead_letters.add(msg, describe_validation_error(exc), "malformed")
                    continue
                record_id, iccid, nbytes = record.record_id, record.iccid, record.total_bytes
                at, digest = record.event_time.timestamp(), None
            if at > horizon:
                self._too_early(msg, at - now_ts)
                continue
            if not n % LAG_SAMPLE_EVERY:
                lag.observe(max(0.0, now_ts - at))
            if at < forgotten:
                self._too_old(msg)
                continue
            add_time(at)  # with its row: `_recalendar` finds a row's event time by its index
            add_row(
                IngestRow(
                    record_id,
                    iccid,
                    "",
                    current if start <= at < end else cycle_of(_instant(at), tz, day),
                    nbytes,
                    at < start,
                    window_at(at),
                    digest,
                )
            )

    def _too_old(self, msg: RawMessage) -> None:
        days = self.settings.record_dedupe_ttl_s // 86_400
        reason = (
            f"event_time is older than the {days}-day de-duplication window "
            "(USAGE_MONITOR_RECORD_DEDUPE_TTL_S): it could not be counted exactly once"
        )
        self.dead_letters.add(msg, reason, "too_old")

    def _too_early(self, msg: RawMessage, ahead: float) -> None:
        limit = self.settings.future_skew_s
        reason = f"event_time is {ahead:.0f} s in the future (limit {limit} s)"
        self.dead_letters.add(msg, reason, "future_event")

    async def _recalendar_rounds(
        self,
        shard: int,
        result: IngestResult,
        batch: list[IngestRow],
        indices: list[int],
        times: list[float],
        now: datetime,
    ) -> IngestResult:
        """The shard's first result (of `batch`, the rows at `indices`), and the rounds after
        it: records of cards with their own billing calendar come back and are sent again with
        the cycle named in that calendar."""
        total = IngestResult()
        origin = list(indices)
        for round_ in range(MAX_RECALENDAR_ROUNDS):
            if round_:
                result = await self.store.ingest(shard, batch)
            total.applied += result.applied
            total.duplicates += result.duplicates
            total.unknown += result.unknown
            total.late += result.late
            total.due += result.due
            total.pools += result.pools
            if not result.recalendar:
                return total
            batch, origin = self._recalendar(result.recalendar, batch, origin, times, now)
        raise RuntimeError("billing calendars kept changing under a batch; giving up this round")

    def _recalendar(
        self,
        recal: list[tuple[int, str]],
        batch: list[IngestRow],
        origin: list[int],
        times: list[float],
        now: datetime,
    ) -> tuple[list[IngestRow], list[int]]:
        new_batch, new_origin = [], []
        for pos, calendar in recal:
            row, src = batch[pos], origin[pos]
            tz, day = (calendar or self._default).split("|")
            cycle = cycle_of(_instant(times[src]), tz, int(day))
            late = cycle < cycle_of(now, tz, int(day))
            new_batch.append(row._replace(calendar=calendar, cycle=cycle, late=late))
            new_origin.append(src)
        return new_batch, new_origin

    def _observe(self, out: BatchOutcome, size: int) -> None:
        m = self.metrics.records
        m.labels("applied").inc(out.applied)
        m.labels("duplicate").inc(out.duplicates)
        m.labels("late").inc(out.late)
        m.labels("unknown_card").inc(out.unknown)
        m.labels("dead_lettered").inc(out.dead_lettered)
        self.metrics.batch_records.observe(size)
