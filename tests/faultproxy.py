"""A small TCP fault proxy (what toxiproxy does, for loopback tests): it forwards a local
port to a target and, on demand, delays every chunk, black-holes the link (bytes wait, as
TCP retransmits them; new connections hang, then are reset) or resets every connection.

It runs its own event loop in a thread, so a test that blocks (starting a process, a
synchronous HTTP poll) does not stall the traffic it forwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any

from .servers import free_port


class FaultProxy:
    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self.delay_s = 0.0
        self.disturbed = 0
        """Connections reset, or open while black-holed: requests whose answer may be lost."""
        self._open: asyncio.Event | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def start(self) -> FaultProxy:
        self._thread.start()

        async def serve() -> None:
            self._open = asyncio.Event()
            self._open.set()
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

        self._call(serve())
        return self

    def stop(self) -> None:
        """Close the listener and every connection; stopping again does nothing."""
        if not self._thread.is_alive():
            return

        async def close() -> None:
            assert self._server is not None and self._open is not None
            self._open.set()
            self._server.close()
            for w in list(self._links):
                w.transport.abort()

        self._call(close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    # Faults, callable from any thread.

    def delay(self, seconds: float) -> None:
        """Hold every chunk `seconds` before forwarding it (0: no delay)."""
        self.delay_s = seconds

    def blackhole(self) -> None:
        """Forward nothing, in either direction, until `heal()`; connections stay open."""
        assert self._open is not None

        async def close() -> None:
            assert self._open is not None
            self._open.clear()
            self.disturbed += len(self._links) // 2

        self._call(close())

    def heal(self) -> None:
        assert self._open is not None
        self._loop.call_soon_threadsafe(self._open.set)

    def reset(self) -> int:
        """Reset (RST) every open connection, both ends; returns how many were reset."""

        async def rst() -> int:
            links = list(self._links)
            for w in links:
                _abort_with_rst(w)
            self.disturbed += len(links) // 2
            return len(links) // 2

        n: int = self._call(rst())
        return n

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        assert self._open is not None
        if not self._open.is_set():
            # A black hole: in a real one the SYN never arrives. The kernel has completed the
            # handshake here, so the connection is left hanging, then reset at `heal()`; it
            # never reaches the target (unlike bytes of established connections, which TCP
            # would deliver late).
            self.disturbed += 1
            await self._open.wait()
            _abort_with_rst(client_w)
            return
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            _abort_with_rst(client_w)
            return
        self._links |= {client_w, server_w}
        try:
            await asyncio.gather(self._pump(client_r, server_w), self._pump(server_r, client_w))
        finally:
            self._links -= {client_w, server_w}
            for w in (client_w, server_w):
                w.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._open is not None
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while chunk := await reader.read(65536):
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                await self._open.wait()
                writer.write(chunk)
                await writer.drain()
        writer.close()  # one side closed: close the other, so the EOF travels through


def _abort_with_rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
