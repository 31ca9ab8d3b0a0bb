"""aiokafka on uvloop, against the real broker: a write to a transport the peer has reset
raises uvloop's RuntimeError, which ended aiokafka's background tasks for good (the
client's metadata synchroniser, a producer's sender: both seen in CI). With
`aiokafka_patch` it is a broken connection, which aiokafka retries."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.metadata import MetadataRequest

from simwatch_runtime import aiokafka_patch

from ..conftest import KAFKA

pytestmark = pytest.mark.integration


def on_uvloop(scenario: Callable[[], Awaitable[Any]]) -> Any:
    """The services run on uvloop (`process.new_event_loop`); the tests' loop is asyncio's."""
    loop = uvloop.new_event_loop()
    try:
        return loop.run_until_complete(scenario())
    finally:
        loop.close()


async def _client() -> tuple[AIOKafkaClient, Any]:
    client = AIOKafkaClient(bootstrap_servers=KAFKA, request_timeout_ms=5000)
    await client.bootstrap()
    node = client.cluster.brokers().pop().nodeId
    return client, await client._get_conn(node)


async def _reset_under(conn: Any) -> None:
    """The peer resets the connection (ECONNRESET, as uvloop sees it): uvloop closes the
    transport and hands the reader the error, not an end of stream, so aiokafka still takes
    the connection for connected until its reader task runs."""
    conn._writer.transport._force_close(ConnectionResetError(104, "Connection reset by peer"))
    await asyncio.sleep(0)


def test_a_write_to_a_reset_transport_is_a_broken_connection() -> None:
    aiokafka_patch.install()

    async def scenario() -> None:
        client, conn = await _client()
        try:
            await _reset_under(conn)
            unpatched = type(conn).send.__wrapped__
            with pytest.raises(RuntimeError, match="the handler is closed"):
                unpatched(conn, MetadataRequest([]))  # what ended aiokafka's tasks
            with pytest.raises(KafkaConnectionError, match="broken"):
                conn.send(MetadataRequest([]))
            assert not conn.connected()  # closed as for an OSError: the next use reconnects
        finally:
            await client.close()

    on_uvloop(scenario)


def test_the_metadata_synchroniser_survives_a_reset_under_its_write() -> None:
    """The CI case: the synchroniser writes on a connection reset under it. Unpatched, it
    died and `force_metadata_update` never returned again (a consumer then never found its
    group coordinator)."""
    aiokafka_patch.install()

    async def scenario() -> None:
        client, _ = await _client()
        get_conn = client._get_conn
        resets = 0

        async def reset_first(*args: Any, **kwargs: Any) -> Any:
            """The reset lands in the loop turn before the synchroniser's write (in CI it
            did; left to chance, aiokafka's reader usually notices first)."""
            nonlocal resets
            conn = await get_conn(*args, **kwargs)
            if conn is not None and resets == 0:
                resets += 1
                await _reset_under(conn)
            return conn

        client._get_conn = reset_first  # type: ignore[method-assign]
        try:
            first = await asyncio.wait_for(client.force_metadata_update(), 10)
            assert resets == 1 and first is False  # that round failed, as on a broken link
            assert not client._sync_task.done(), "the metadata synchroniser died"
            assert await asyncio.wait_for(client.force_metadata_update(), 10)  # reconnected
        finally:
            await client.close()

    on_uvloop(scenario)
