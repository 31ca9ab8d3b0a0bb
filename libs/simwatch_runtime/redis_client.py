"""One way to reach Redis, a single server or a Redis Cluster, chosen by `REDIS_URL`.

``redis://`` and ``rediss://`` name one server (with a database number); ``redis+cluster://``
and ``rediss+cluster://`` name any node of a cluster (database 0 only), from which the client
discovers the others and follows ``MOVED`` / ``ASK`` redirections. Both services keep every
script's keys in one hash slot (see ``keys.py`` and the notifier's ledger), so nothing else
changes between the two.

One difference matters to callers: a pipeline on a cluster cannot call a script by name
nor load it for you. ``queue_script``, ``run_pipeline`` and ``run_script_calls`` do both,
for either client.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

AnyRedis = Redis | RedisCluster
"""What the stores accept: both clients share the command API used here."""

_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def connect(url: str, **options: Any) -> AnyRedis:
    """A client for `url`; `options` are connection settings (timeouts, health checks)."""
    scheme, _, rest = url.partition("://")
    if scheme not in _CLUSTER_SCHEMES:
        return Redis.from_url(url, **options)
    authority, _, path = rest.partition("/")
    if path.strip("/") not in ("", "0"):
        raise ValueError(f"a Redis Cluster has database 0 only, not /{path}")
    return RedisCluster.from_url(f"{_CLUSTER_SCHEMES[scheme]}://{authority}", **options)


def queue_script(pipe: Any, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> None:
    """Queue one call of `script` on a pipeline of either client.

    By its SHA only: redis-py refuses ``evalsha`` by name in cluster pipelines, and the
    script text is sent once per node by ``run_pipeline``, not once per call.
    """
    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)


async def run_pipeline(
    redis: AnyRedis,
    queue: Callable[[Any], None],
    scripts: Sequence[AsyncScript] = (),
) -> list[Any]:
    """Queue commands with `queue(pipe)` and run them as one non-transactional pipeline.

    When a server lacks one of the `scripts` (``NOSCRIPT``: a restart, a failover, or the
    first call on a cluster node), they are loaded on every primary and the pipeline runs
    again. Callers must tolerate that: commands that ran before the error run a second time
    (every script here is idempotent or version-checked).
    """
    for attempt in (1, 2):
        async with redis.pipeline(transaction=False) as pipe:
            queue(pipe)
            try:
                return list(await pipe.execute())
            except NoScriptError:
                if attempt == 2:
                    raise
        for script in scripts:
            script.sha = await redis.script_load(script.script)  # every primary of a cluster
    raise AssertionError("unreachable")


async def run_script_calls(
    redis: AnyRedis,
    script: AsyncScript,
    calls: Sequence[tuple[Sequence[Any], Sequence[Any]]],
) -> list[Any]:
    """Call `script` once per (keys, args) in one non-transactional pipeline; the replies,
    in order. One round trip for all: a batch's twelve shard calls made as twelve concurrent
    calls cost the worker ~3x the CPU and twelve wake-ups of each side.

    Unlike ``run_pipeline``, only a call that found its server without the script
    (``NOSCRIPT``: a restart, a failover, or the first call on a cluster node) runs again,
    once the script is loaded: the others ran, and a script's reply need not be idempotent
    (``ingest.lua`` reports a record it has already counted as a duplicate). Any other error
    is raised; the calls that ran before it, or that ran and lost their reply (redis-py sends
    a pipeline again after a broken connection), run again in the caller's retry, so every
    script called this way must be safe to run twice (``ingest.lua`` counts nothing twice,
    and reports the pools of duplicates as touched, for them to be settled all the same).
    """
    replies: list[Any] = [None] * len(calls)
    todo = list(range(len(calls)))
    for attempt in (1, 2):
        async with redis.pipeline(transaction=False) as pipe:
            for i in todo:
                keys, args = calls[i]
                queue_script(pipe, script, keys, args)
            results = await pipe.execute(raise_on_error=False)
        missing = []
        for i, result in zip(todo, results, strict=True):
            if isinstance(result, NoScriptError):
                missing.append(i)
            elif isinstance(result, Exception):
                raise result
            else:
                replies[i] = result
        if not missing:
            return replies
        if attempt == 2:
            raise NoScriptError("the script is still missing after it was loaded")
        script.sha = await redis.script_load(script.script)  # every primary of a cluster
        todo = missing
    raise AssertionError("unreachable")
