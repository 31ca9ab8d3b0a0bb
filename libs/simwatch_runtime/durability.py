"""Durability barriers: a Kafka offset is committed only once Redis has made durable every
write made before it (issue #16).

Redis answers a write once it is applied *in memory*. With `appendfsync everysec` a host
crash can lose the last second of those writes, and a Redis Cluster failover can promote a
replica that lacks the last writes of its master (replication is asynchronous). A consumer
that committed the offsets of such writes has lost them. So a consumer applies a batch,
then asks a `Barrier` to `confirm` it, and commits only after that:

* ``memory``: no barrier (the offsets trail the in-memory write, as before).
* ``fsync``: the local AOF has reached the disk. With WAITAOF (Redis/Valkey >= 7.2):
  ``WAITAOF 1 0``; without it, only a server with ``appendfsync always`` qualifies (it
  fsyncs before it replies, so no wait is needed).
* ``replica``: at least one replica holds the writes (``WAIT 1``).

WAIT and WAITAOF wait for the *calling connection's* last write, so the barrier writes one
small key on each primary, then waits, on the same connection (one pipeline per primary;
on a cluster, a key in a slot of that primary). Every write acknowledged before the barrier
has a smaller replication offset, so it is covered too.

A confirmation also names which server *instances* answered (address and ``run_id`` of
every primary): the `Epoch`. Writes must be confirmed by the instances that took them; a
failover or a restart between the writes and the barrier changes the epoch, and the
barrier then refuses (`NotDurableError`): the caller applies its uncommitted input again on the
new primaries (every write here is idempotent) instead of committing writes a promoted
replica may never have received.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from redis.asyncio import ConnectionPool, Redis, RedisCluster
from redis.crc import key_slot
from redis.exceptions import ConnectionError, ReadOnlyError, RedisError, ResponseError, TimeoutError

from .redis_client import AnyRedis

Epoch = frozenset[tuple[str, str]]
"""(address, run_id) of every primary: which server instances took the writes."""


class Durability(StrEnum):
    MEMORY = "memory"
    FSYNC = "fsync"
    REPLICA = "replica"


class NotDurableError(Exception):
    """Redis did not confirm the writes before a barrier (transient; never commit their
    offsets meanwhile). `reapply`: they may be lost (apply the input again under a new
    epoch); otherwise they are still in memory where they were written: confirm later."""

    def __init__(self, message: str, *, reapply: bool = False) -> None:
        super().__init__(message)
        self.reapply = reapply


def _gone(exc: BaseException) -> bool:
    """Whether a barrier's failure means the primary that took the writes may be gone: no
    connection, or it no longer serves the slot (MOVED) or is a replica now (READONLY)."""
    if isinstance(exc, NotDurableError):
        return exc.reapply
    if isinstance(exc, (ConnectionError, TimeoutError, OSError, ReadOnlyError)):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith(("MOVED", "ASK", "CLUSTERDOWN"))


@dataclass(frozen=True, slots=True)
class _Primary:
    name: str
    client: Redis
    key: str


class Barrier:
    """Confirms that the writes made so far are durable at `level`, on every primary.

    `key_of(tag)` names the key the barrier writes (one per primary; `tag` is a hash tag
    that puts it in a slot of that primary). `timeout_s` bounds each wait.
    """

    def __init__(
        self,
        redis: AnyRedis,
        level: Durability,
        key_of: Callable[[str], str],
        *,
        timeout_s: float = 5.0,
        replicas: int = 1,
    ) -> None:
        self.redis = redis
        self.level = level
        self.key_of = key_of
        self.timeout_ms = int(timeout_s * 1000)
        self.replicas = replicas
        self._clients: dict[str, Redis] = {}
        self._waitaof: bool | None = None

    @property
    def enabled(self) -> bool:
        return self.level is not Durability.MEMORY

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    async def epoch(self) -> Epoch:
        """The primaries now (empty at level ``memory``): take it before applying input."""
        if not self.enabled:
            return frozenset()
        primaries = await self._primaries()
        try:
            infos = await asyncio.gather(*(p.client.info("server") for p in primaries))
        except (RedisError, OSError):
            await self._refresh()
            raise
        return frozenset((p.name, str(i["run_id"])) for p, i in zip(primaries, infos, strict=True))

    async def confirm(self, epoch: Epoch) -> None:
        """Return once every write made so far is durable at `level` on the primaries of
        `epoch`; raise `NotDurableError` if they cannot say so: with ``reapply`` when the
        writes may be gone (a primary died, restarted, was replaced or moved its slots),
        without it when they are still where they were written but not yet confirmed (a
        wait timed out, the server refuses the wait): confirm again later."""
        if not self.enabled:
            return
        try:
            await self._detect()
            primaries = await self._primaries()
        except (RedisError, OSError) as exc:
            await self._refresh()
            raise NotDurableError(f"{type(exc).__name__}: {exc}", reapply=True) from exc
        results = await asyncio.gather(
            *(self._confirm_on(p) for p in primaries), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            gone = [f for f in failures if _gone(f)]
            if gone:
                await self._refresh()
            first = (gone or failures)[0]
            if isinstance(first, NotDurableError):
                raise first
            if not isinstance(first, Exception):
                raise first  # CancelledError and the like
            raise NotDurableError(f"{type(first).__name__}: {first}", reapply=bool(gone)) from first
        seen = frozenset(r for r in results if not isinstance(r, BaseException))
        if seen != epoch:
            await self._refresh()
            raise NotDurableError(
                "the primaries changed since the writes (a failover or a restart)", reapply=True
            )

    async def _confirm_on(self, p: _Primary) -> tuple[str, str]:
        async with p.client.pipeline(transaction=False) as pipe:
            pipe.info("server")
            pipe.set(p.key, b"1")
            if self.level is Durability.REPLICA:
                pipe.execute_command("WAIT", self.replicas, self.timeout_ms)
            elif self._waitaof:
                pipe.execute_command("WAITAOF", 1, 0, self.timeout_ms)
            info, _, *waited = await pipe.execute()
        if waited:
            count = waited[0] if self.level is Durability.REPLICA else waited[0][0]
            want = self.replicas if self.level is Durability.REPLICA else 1
            if int(count) < want:
                raise NotDurableError(
                    f"{p.name} confirmed {self.level.value} for {count} of {want} within "
                    f"{self.timeout_ms} ms"
                )
        return p.name, str(info["run_id"])

    async def check(self) -> str:
        """'' when every primary can confirm `level`, else why not, in words."""
        if not self.enabled:
            return ""
        for p in await self._primaries():
            problem = await self._check_one(p)
            if problem:
                return problem
        return ""

    async def _check_one(self, p: _Primary) -> str:
        if self.level is Durability.REPLICA:
            replication = await p.client.info("replication")
            have = int(replication.get("connected_slaves", 0))
            if have < self.replicas:
                return f"{p.name} has {have} connected replicas; {self.replicas} needed"
            return ""
        persistence = await p.client.info("persistence")
        if not int(persistence.get("aof_enabled", 0)):
            return f"{p.name} has no AOF (appendonly no)"
        if await _has_waitaof(p.client) or await _fsync_always(p.client):
            return ""
        server = await p.client.info("server")
        return (
            f"{p.name} (Redis {server.get('redis_version', '?')}) has neither WAITAOF "
            "(Redis/Valkey >= 7.2) nor appendfsync always"
        )

    async def _detect(self) -> None:
        if self._waitaof is None and self.level is Durability.FSYNC:
            flags = [await _has_waitaof(p.client) for p in await self._primaries()]
            self._waitaof = all(flags)

    async def _refresh(self) -> None:
        """After a failed barrier on a cluster: read the topology again (a failover)."""
        if isinstance(self.redis, RedisCluster):
            try:
                await self.redis.nodes_manager.initialize()
            except (RedisError, OSError):  # the cluster is still moving: the next try refreshes
                return

    async def _primaries(self) -> list[_Primary]:
        if not isinstance(self.redis, RedisCluster):
            kwargs = self.redis.connection_pool.connection_kwargs
            name = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
            return [_Primary(name, self.redis, self.key_of("0"))]
        await self.redis.initialize()
        slots = self.redis.nodes_manager.slots_cache
        owned: dict[str, int] = {}
        for slot, nodes in slots.items():
            if nodes:
                owned.setdefault(nodes[0].name, slot)
        out = []
        for node in self.redis.get_primaries():
            if node.name in owned:
                key = self.key_of(_tag(owned[node.name]))
                out.append(_Primary(node.name, self._client(node), key))
        return out

    def _client(self, node: Any) -> Redis:
        """A plain client of one cluster node: WAIT needs the write on the same connection."""
        client = self._clients.get(node.name)
        if client is None:
            pool = ConnectionPool(connection_class=node.connection_class, **node.connection_kwargs)
            client = self._clients[node.name] = Redis(connection_pool=pool)
        return client


async def _has_waitaof(client: Redis) -> bool:
    try:
        async with client.pipeline(transaction=False) as pipe:
            pipe.execute_command("WAITAOF", 0, 0, 0)  # waits for nothing: a probe
            await pipe.execute()
    except ResponseError:  # unknown command: Redis < 7.2
        return False
    return True


async def _fsync_always(client: Redis) -> bool:
    try:
        config = await client.config_get("appendfsync")
    except ResponseError:  # CONFIG renamed or refused (managed Redis): cannot tell
        return False
    value = config.get("appendfsync", "")
    return (value.decode() if isinstance(value, bytes) else str(value)) == "always"


_TAGS: dict[int, str] = {}


def _tag(slot: int) -> str:
    """A short hash tag whose key slot is `slot` (found once per slot, then remembered)."""
    if slot not in _TAGS:
        for i in itertools.count():
            s = key_slot(str(i).encode())
            _TAGS.setdefault(s, str(i))
            if s == slot:
                break
    return _TAGS[slot]
