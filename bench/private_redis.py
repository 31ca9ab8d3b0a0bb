"""A private redis-server for the measurements that read Redis's own counters (memory, CPU):
nothing else writes to it, and it runs with the deployed configuration."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from simwatch_runtime.redis_client import AnyRedis

from .procs import free_port

# As deployed (scripts/stack.sh, docker-compose.yml): a card's hash stays a compact listpack,
# a set of remembered record ids an intset.
DEPLOYED_CONFIG = ("--hash-max-listpack-value", "256", "--set-max-intset-entries", "4096")


@asynccontextmanager
async def private_redis(extra_config: tuple[str, ...] = DEPLOYED_CONFIG) -> AsyncIterator[Redis]:
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="bench-redis-")
    args = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    args += ["--appendonly", "no", "--dir", workdir, *extra_config]
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # A blocking pool: thousands of concurrent commits wait for one of 64 connections.
    pool = BlockingConnectionPool.from_url(f"redis://127.0.0.1:{port}/0", max_connections=64)
    redis = Redis(connection_pool=pool)
    try:
        for _ in range(100):
            try:
                await redis.ping()
                break
            except RedisConnectionError:  # not listening yet
                await asyncio.sleep(0.05)
        yield redis
    finally:
        await redis.aclose()
        server.terminate()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


async def cpu_seconds(redis: AnyRedis, main_thread: bool = False) -> float:
    """Redis's own CPU time so far (user + system), from INFO. `main_thread`: only the thread
    that runs commands and scripts, where the server says (the whole process where not)."""
    info = await redis.info("cpu")
    if main_thread and "used_cpu_user_main_thread" in info:
        return float(info["used_cpu_user_main_thread"]) + float(info["used_cpu_sys_main_thread"])
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
