"""The usage consumer notices when aiokafka's fetch routine has died (it then returns no
records for ever) instead of idling with its partitions assigned."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from usage_monitor.entrypoints.usage_consumer import fetcher_failure


async def test_a_dead_fetch_routine_is_noticed() -> None:
    async def dies() -> None:
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True>")

    async def runs() -> None:
        await asyncio.sleep(3600)

    dead = asyncio.create_task(dies())
    alive = asyncio.create_task(runs())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    try:
        assert isinstance(
            fetcher_failure(SimpleNamespace(_fetcher=SimpleNamespace(_fetch_task=dead))),
            RuntimeError,
        )
        assert fetcher_failure(SimpleNamespace(_fetcher=SimpleNamespace(_fetch_task=alive))) is None
        assert fetcher_failure(SimpleNamespace()) is None  # not started: nothing to say
    finally:
        alive.cancel()
