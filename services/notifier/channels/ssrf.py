"""Webhook targets are customer-supplied URLs: refuse anything that is not a public https
endpoint, and connect to exactly the address that was checked (no second DNS lookup)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Lookup = Callable[[str, int], Awaitable[list[IPAddress]]]
"""Name resolution: (host, port) -> its addresses; raises OSError when the name does not resolve.
Injected so tests can resolve any name to a local server, or slowly."""


async def system_lookup(host: str, port: int) -> list[IPAddress]:
    """The operating system's resolver (getaddrinfo in a thread)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(info[4][0]) for info in infos]


class TargetRefusedError(Exception):
    """The URL may not be called (scheme, or an address that is not public)."""


@dataclass(frozen=True, slots=True)
class Target:
    url: httpx.URL
    """The URL to request: the checked IP address in place of the host name."""
    host: str
    """The original host name: Host header and TLS server name."""
    address: IPAddress


def is_public(address: IPAddress) -> bool:
    """Global unicast only: not loopback, private, link-local, CGNAT (100.64/10), ULA,
    multicast, reserved or unspecified, also when written as an IPv4-mapped IPv6 address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


async def resolve(url: str, *, allow_private: bool, lookup: Lookup = system_lookup) -> Target:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise TargetRefusedError(f"invalid URL: {exc}") from exc
    if parsed.scheme != "https" and not (allow_private and parsed.scheme == "http"):
        raise TargetRefusedError(f"scheme {parsed.scheme!r} refused: https only")
    if not parsed.host:
        raise TargetRefusedError("URL has no host")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        addresses = await lookup(parsed.host, port)
    except socket.gaierror as exc:
        raise TargetRefusedError(f"host does not resolve: {exc}") from exc
    if not addresses:
        raise TargetRefusedError("host resolves to no address")
    if not allow_private:
        blocked = [a for a in addresses if not is_public(a)]
        if blocked:
            raise TargetRefusedError(f"address {blocked[0]} is not public")
    chosen = addresses[0]
    return Target(parsed.copy_with(host=str(chosen)), parsed.host, chosen)
