"""The ports of the service layer: what it needs from a card store and from a publisher, as
`typing.Protocol`s, and the values that cross them. ``adapters/`` implements them (Redis, and
in memory for tests); the service layer and the entry points see only these."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import NamedTuple, Protocol

from .domain.card import CardState
from .domain.pools import Pool, PoolState

CONFLICT = -1
DUPLICATE_EVENT = 0


class IngestRow(NamedTuple):
    """One usage record ready for Redis: the cycle was named under `calendar`; `late` when
    that cycle had ended by the time the record was processed. A named tuple, not a frozen
    dataclass: one is made per record on the hot path, and a frozen dataclass's `__init__`
    (an `object.__setattr__` per field) cost a fifth of parsing a record."""

    record_id: str
    iccid: str
    calendar: str
    cycle: date
    nbytes: int
    late: bool = False
    day: str = ""
    """The event-time day (UTC, yyyymmdd) the record id is remembered under."""
    digest: int | None = None
    """`dedupe.digest(record_id)` when the reader computed it already (the store does if not)."""


@dataclass(slots=True)
class IngestResult:
    applied: int = 0
    duplicates: int = 0
    due: list[tuple[str, date, int]] = field(default_factory=list)
    recalendar: list[tuple[int, str]] = field(default_factory=list)
    unknown: int = 0
    late: int = 0
    pools: list[tuple[str, date]] = field(default_factory=list)
    """(pool, cycle) whose usage this batch added to."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A card as read from Redis: its version guards the commit of a decision about it."""

    version: int
    state: CardState
    usage: dict[date, int]
    calendar: str


@dataclass(frozen=True, slots=True)
class CommitRequest:
    """One decision to write: the card as read (`snap`), its new state, and what goes with
    it atomically (wake levels, outbox messages, due time, event id, statistics)."""

    snap: Snapshot
    state: CardState
    calendar: str = ""
    wakes: dict[date, int] = field(default_factory=dict)
    messages: Sequence[tuple[str, bytes, bytes]] = ()
    drop_cycles: Sequence[date] = ()
    event_id: str | None = None
    due: datetime | None = None
    suspended_delta: int = 0
    history: Sequence[str] = ()
    """Entries for the card's history list (oldest first), kept to the store's length."""
    counts: Mapping[str, int] = field(default_factory=dict)
    """Changes of the fleet's counts kept with the cards (commands pending, unconfirmed,
    rejected), added atomically with the commit (see `CardStore.counts`)."""


@dataclass(frozen=True, slots=True)
class PoolRecord:
    """A pool as stored: its definition (None until `pool.upserted` arrives: its members'
    usage is counted meanwhile), what it announced, and the version guarding commits."""

    pool_id: str
    definition: Pool | None
    state: PoolState
    version: int = 0


@dataclass(frozen=True, slots=True)
class CustomerDebt:
    """The blacklist of one customer: the debt still owed and the cards held for it."""

    debt: int
    held: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    entry_id: bytes
    topic: str
    key: bytes
    value: bytes


def new_token() -> str:
    """A fresh holder token for an outbox drain lock."""
    return uuid.uuid4().hex


class CardStore(Protocol):
    """Cards, their usage counters, the per-shard outbox and due set, and the customers'
    blacklists. Every method that writes is atomic per card (or per shard for `ingest`)."""

    @property
    def shards(self) -> int:
        """How many shards the cards are spread over (the usage topic's partition count)."""
        ...

    def shard(self, iccid: str) -> int:
        """The shard of a card: Kafka's partition of its ICCID, modulo `shards`."""
        ...

    async def ingest(self, shard: int, rows: Sequence[IngestRow]) -> IngestResult:
        """Count a batch of one shard's records once each (de-duplicated by record id); see
        ``adapters/lua/ingest.lua`` for the outcome of each record and the wake levels."""
        ...

    async def ingest_many(
        self, batches: Mapping[int, Sequence[IngestRow]]
    ) -> dict[int, IngestResult]:
        """`ingest` for several shards' batches at once (in one round trip where the store
        has round trips); each shard's batch is atomic on its own."""
        ...

    async def load(self, iccids: Iterable[str]) -> dict[str, Snapshot]:
        """Read cards (state, version and usage counters); an unknown card is version 0."""
        ...

    async def commit(self, request: CommitRequest) -> int:
        """Write a decision if the card is still at `request.snap.version`: the new version,
        `CONFLICT`, or `DUPLICATE_EVENT` when `request.event_id` was applied before."""
        ...

    async def commit_many(self, requests: Sequence[CommitRequest]) -> list[int]:
        """`commit` for many cards at once (each card's commit stays atomic)."""
        ...

    async def due_cards(self, shard: int, until: datetime, limit: int) -> list[str]:
        """Cards of `shard` due at or before `until`, earliest first."""
        ...

    async def history(self, iccid: str) -> list[str]:
        """The card's most recent decisions, newest first."""
        ...

    async def suspended_cards(self) -> int:
        """Cards suspended right now, over every shard."""
        ...

    async def counts(self, names: Sequence[str]) -> dict[str, int]:
        """The fleet's counts `names` (as `CommitRequest.counts` changed them), all shards."""
        ...

    async def outbox_claim(
        self, shard: int, token: str, lock_ms: int, count: int
    ) -> list[OutboxEntry] | None:
        """Take the shard's drain lock for `lock_ms` and read the messages of its oldest
        `count` entries, in one round trip; None when someone else holds the lock."""
        ...

    async def outbox_settle(
        self, shard: int, token: str, lock_ms: int, published: Sequence[bytes], count: int
    ) -> list[OutboxEntry] | None:
        """End a drain round in one round trip: remove the `published` entries, then release
        the lock if the outbox is empty (``[]``), else extend it and return the next `count`
        entries' messages; None when the lock was lost (expired, taken by another)."""
        ...

    async def outbox_read(self, shard: int, count: int) -> list[OutboxEntry]:
        """The messages of the shard's oldest `count` outbox entries, in order (an entry is
        one commit's messages; they share its `entry_id`)."""
        ...

    async def outbox_depth(self, shards: Iterable[int]) -> dict[int, int]:
        """Entries waiting in each shard's outbox."""
        ...

    async def pool_load(self, pool_ids: Iterable[str]) -> dict[str, PoolRecord]:
        """Pools as stored (an unknown pool: no definition, version 0)."""
        ...

    async def pool_define(self, pool: Pool) -> None:
        """Store a pool's definition (`pool.upserted`; the latest holds)."""
        ...

    async def pool_used(self, pools: Sequence[tuple[str, date]]) -> dict[tuple[str, date], int]:
        """Each pool's usage in a cycle: the sum of its per-shard counts."""
        ...

    async def pool_top(self, pool_id: str, cycle: date, n: int) -> list[tuple[str, int]]:
        """The pool's `n` biggest members in `cycle`, biggest first."""
        ...

    async def pool_commit(
        self,
        record: PoolRecord,
        state: PoolState,
        messages: Sequence[tuple[str, bytes, bytes]],
        fan_out: bool,
    ) -> int:
        """Write a pool's decision if it is still at `record.version`, with its messages
        (outbox) and, with `fan_out`, a request to evaluate its members again: the new
        version, or `CONFLICT`."""
        ...

    async def pool_members(self, pool_id: str, shard: int) -> list[str]:
        """The pool's members in `shard`."""
        ...

    async def pool_member_count(self, pool_id: str) -> int:
        """How many cards the pool has, over every shard."""
        ...

    async def pool_fanout_done(self, pool_id: str, version: int) -> bool:
        """The members were evaluated for `version`: forget the request (unless a newer
        decision asked again); whether this call forgot it."""
        ...

    async def pool_fanout_requests(self) -> list[tuple[str, int]]:
        """Every shard's fan-out requests (pool, version), in one round trip: each worker
        does the part of them that lives in its shards."""
        ...

    async def pool_fanout_progress(self, pool_id: str) -> dict[int, int]:
        """For each shard, the pool version its members were last evaluated with (0: none)."""
        ...

    async def pool_fanout_mark(self, pool_id: str, shard: int, version: int) -> None:
        """The pool's members in `shard` were evaluated with `version`'s view (a mark only
        moves forward)."""
        ...

    async def customer_apply(self, customer_id: str, entries: Sequence[object]) -> CustomerDebt:
        """Apply blacklist entries (see ``service_layer/blacklist.py``); the customer's debt."""
        ...

    async def customer_debt(self, customer_id: str) -> CustomerDebt:
        """What a customer owes from cards cancelled for debt, and the cards held for it."""
        ...

    async def customer_debts(self, customer_ids: Iterable[str]) -> dict[str, CustomerDebt]:
        """`customer_debt` of each customer, read at once."""
        ...

    async def customer_view(self, customer_id: str) -> dict[bytes, bytes]:
        """The customer's blacklist record, field by field (read by `status.customer_status`)."""
        ...


class Publisher(Protocol):
    """Publishes (topic, key, value) messages in order, acknowledged by every replica."""

    async def publish(self, messages: Sequence[tuple[str, bytes | None, bytes]]) -> None: ...
