"""An SMS provider call against real servers on loopback: like a webhook attempt, it has one
deadline for the whole request, however the provider spreads its answer over time."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx

from notifier.channels.sms import HttpGateway, Twilio
from notifier.domain.outcome import Result

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[int]:
    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await handler(reader, writer)
        writer.close()

    server = await asyncio.start_server(guarded, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Every byte of the answer comes well within a read timeout, the whole far after it."""
    await _read_request(reader)
    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}":
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.3)


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}")
    await writer.drain()


async def test_a_trickled_answer_is_abandoned_at_the_deadline_as_uncertain() -> None:
    async with raw_server(trickle) as port, httpx.AsyncClient() as client:
        for provider in (
            HttpGateway(client, f"http://127.0.0.1:{port}/sms", timeout_s=1.0),
            Twilio(client, f"http://127.0.0.1:{port}", "AC1", "token", "+1000", timeout_s=1.0),
        ):
            started = time.monotonic()
            outcome = await provider.send("+8613800000000", "hi", "key-1", {})
            elapsed = time.monotonic() - started
            # The request was written: whether it made an SMS is unknown.
            assert outcome.result is Result.UNCERTAIN, outcome
            assert "deadline" in outcome.detail, outcome
            assert elapsed < 1.0 + 0.5


async def test_an_answer_within_the_deadline_is_classified() -> None:
    async with raw_server(answer) as port, httpx.AsyncClient() as client:
        gateway = HttpGateway(client, f"http://127.0.0.1:{port}/sms", timeout_s=1.0)
        outcome = await gateway.send("+8613800000000", "hi", "key-1", {})
    assert outcome.result is Result.DELIVERED, outcome
