"""One webhook delivery against real servers on loopback: endpoints that answer too much, too
slowly or with the wrong certificate must cost a bounded time and memory, and every delivery
is verified against its own host name."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from notifier.channels.ssrf import IPAddress
from notifier.channels.webhook import WebhookSender
from notifier.domain.outcome import Result
from simwatch_contracts import CardAlert

from ..receiver import SECRET
from ..tls import LocalCA

ALERT = CardAlert.model_validate(
    {
        "alert_id": "alr-sender-1",
        "type": "usage_threshold",
        "iccid": "89860412345678901234",
        "customer_id": "acme",
        "cycle": "2026-11-01",
        "percent": 80,
        "used_bytes": 800,
        "quota_bytes": 1000,
        "occurred_at": "2026-11-25T10:00:01+08:00",
    },
    strict=False,
)
NOW = datetime.now(UTC)
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def pinned(names: dict[str, str], delay_s: float = 0.0) -> Any:
    """A resolver that knows only `names` (each to one address), after `delay_s`."""

    async def lookup(host: str, port: int) -> list[IPAddress]:
        await asyncio.sleep(delay_s)
        if host not in names:
            raise OSError(f"{host} unknown to the test resolver")
        return [ipaddress.ip_address(names[host])]

    return lookup


@pytest.fixture
async def make_sender() -> AsyncIterator[Callable[..., WebhookSender]]:
    senders: list[WebhookSender] = []

    def make(*, timeout_s: float = 1.0, **kw: Any) -> WebhookSender:
        senders.append(WebhookSender(allow_private=True, timeout_s=timeout_s, **kw))
        return senders[-1]

    yield make
    for sender in senders:
        await sender.close()


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
    """A bare TCP server on loopback speaking just enough HTTP/1.1 for one scripted reply."""

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The client hanging up early is what these tests provoke.
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await handler(reader, writer)
        writer.close()

    server = await asyncio.start_server(guarded, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_a_huge_answer_is_delivered_without_being_read(
    make_sender: Callable[..., WebhookSender],
) -> None:
    size = 64 * 2**20
    written = 0

    async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal written
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        chunk = b"x" * 2**16
        for _ in range(size // len(chunk)):
            writer.write(chunk)
            await writer.drain()
            written += len(chunk)

    async with raw_server(huge) as port:
        sender = make_sender(timeout_s=10)
        tracemalloc.start()
        try:
            outcome = await sender.send(f"http://127.0.0.1:{port}/hook", SECRET, ALERT, NOW)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert outcome.result is Result.DELIVERED, outcome
    assert peak < 4 * 2**20, f"{peak / 2**20:.1f} MiB allocated while delivering"
    assert written < size, "the body was not read to its end"


async def test_a_trickled_answer_is_abandoned_at_the_deadline(
    make_sender: Callable[..., WebhookSender],
) -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.3)

    async with raw_server(trickle) as port:
        sender = make_sender(timeout_s=1.0)
        started = time.monotonic()
        outcome = await sender.send(f"http://127.0.0.1:{port}/hook", SECRET, ALERT, NOW)
        elapsed = time.monotonic() - started
    assert outcome.result is Result.RETRY and "timeout" in outcome.detail, outcome
    assert elapsed < 1.0 + 0.5


@pytest.mark.parametrize("status", [200, 410, 503])
async def test_an_answer_cut_off_after_its_status_is_that_status(
    make_sender: Callable[..., WebhookSender], status: int
) -> None:
    """The endpoint has answered once its status line is in: a connection that drops while
    its body is read must not turn a 200 into a retry (the customer would get it twice)."""

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 %d X\r\nContent-Length: 100\r\n\r\npartial" % status)
        await writer.drain()
        writer.transport.abort()  # reset mid-body

    async with raw_server(cut) as port:
        outcome = await make_sender().send(f"http://127.0.0.1:{port}/hook", SECRET, ALERT, NOW)
    expected = {200: Result.DELIVERED, 410: Result.GONE, 503: Result.RETRY}[status]
    assert outcome.result is expected, outcome


async def test_a_connection_dropped_before_any_answer_is_retried(
    make_sender: Callable[..., WebhookSender],
) -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.transport.abort()

    async with raw_server(drop) as port:
        outcome = await make_sender().send(f"http://127.0.0.1:{port}/hook", SECRET, ALERT, NOW)
    assert outcome.result is Result.RETRY, outcome


async def test_slow_name_resolution_counts_against_the_deadline(
    make_sender: Callable[..., WebhookSender],
) -> None:
    sender = make_sender(timeout_s=1.0, lookup=pinned({"slow.test": "127.0.0.1"}, delay_s=5))
    started = time.monotonic()
    outcome = await sender.send("http://slow.test:9/hook", SECRET, ALERT, NOW)
    elapsed = time.monotonic() - started
    assert outcome.result is Result.RETRY and "timeout" in outcome.detail, outcome
    assert elapsed < 1.0 + 0.5


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[LocalCA, int, list[str], list[str]]]:
    """A TLS endpoint on 127.0.0.1 whose certificate is valid for good.test only; yields the
    CA, the port, the server names (SNI) and Host headers it saw."""
    ca = LocalCA.create(tmp_path)
    ctx = ca.server_context("good.test")
    sni: list[str] = []
    hosts: list[str] = []
    ctx.sni_callback = lambda _sock, name, _ctx: sni.append(name or "")  # type: ignore[assignment]

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        hosts.append(request.headers.get("Host", ""))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = runner.addresses[0][1]
    yield ca, port, sni, hosts
    await runner.cleanup()


async def test_every_delivery_is_verified_against_its_own_host_name(
    make_sender: Callable[..., WebhookSender],
    tls_server: tuple[LocalCA, int, list[str], list[str]],
) -> None:
    ca, port, sni, hosts = tls_server
    lookup = pinned({"good.test": "127.0.0.1", "other.test": "127.0.0.1"})
    sender = make_sender(ssl_context=ca.client_context(), lookup=lookup)
    good = await sender.send(f"https://good.test:{port}/hook", SECRET, ALERT, NOW)
    assert good.result is Result.DELIVERED, good
    assert sni == ["good.test"] and hosts == [f"good.test:{port}"]
    # The same address right after: a connection verified for good.test must not serve it.
    other = await sender.send(f"https://other.test:{port}/hook", SECRET, ALERT, NOW)
    assert other.result is Result.RETRY, other
    assert "certificate" in other.detail.lower(), other
    assert hosts == [f"good.test:{port}"], "nothing was sent to other.test"


async def test_an_ipv6_literal_host_header_is_bracketed(
    make_sender: Callable[..., WebhookSender],
) -> None:
    hosts: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        hosts.append(request.headers.get("Host", ""))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "::1", 0).start()
    port = runner.addresses[0][1]
    try:
        outcome = await make_sender().send(f"http://[::1]:{port}/hook", SECRET, ALERT, NOW)
    finally:
        await runner.cleanup()
    assert outcome.result is Result.DELIVERED, outcome
    assert hosts == [f"[::1]:{port}"]


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("http://127.0.0.1:70000/hook", SECRET),  # port above 65535
        ("http://xn--/hook", SECRET),  # not a valid IDNA name
        ("http://\u2603\u2318.test/hook", SECRET),  # a non-ASCII name the resolver lacks
        ("http://[::1/hook", SECRET),
        ("http://127.0.0.1:9/hook", "whsec_not*base64"),
        ("http://127.0.0.1:9/hook", "whsec_abcde"),  # bad padding
    ],
)
async def test_unusable_webhook_settings_are_refused_not_raised(
    make_sender: Callable[..., WebhookSender], url: str, secret: str
) -> None:
    outcome = await make_sender(lookup=pinned({})).send(url, secret, ALERT, NOW)
    assert outcome.result is Result.REFUSED, outcome
