"""Webhook targets are customer-supplied URLs: refuse anything that is not a public https
endpoint, and connect to exactly the addresses that were checked (no second DNS lookup).

The URL keeps its host name (Host header, TLS server name and certificate check, connection
pooling all go by it); only the transport is pinned to the checked addresses, by
`webhook.PinningResolver`."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from yarl import URL

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
    url: URL
    """The URL to request, as the customer wrote it (host name kept)."""
    host: str
    """The host as it goes on the wire (IDNA-encoded): Host header and TLS server name."""
    port: int
    addresses: tuple[IPAddress, ...]
    """Every address the host resolved to, all checked: the only ones connected to."""

    @property
    def address(self) -> IPAddress:
        return self.addresses[0]


_EMBEDDING_V4: tuple[ipaddress.IPv6Network, ...] = (
    ipaddress.IPv6Network("::ffff:0:0/96"),  # IPv4-mapped (RFC 4291)
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64 well-known prefix (RFC 6052)
)
"""Translation prefixes whose last 32 bits are the IPv4 address reached: judged by it, so
a NAT64 gateway may reach a public host but never 127.0.0.1 or 169.254.169.254."""

_NEVER_PUBLIC: tuple[ipaddress.IPv6Network, ...] = (
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible (deprecated), with :: and ::1
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # IPv4-translated (SIIT, RFC 2765)
    ipaddress.IPv6Network("64:ff9b:1::/48"),  # local-use NAT64 (RFC 8215): a local network
    ipaddress.IPv6Network("2001::/32"),  # Teredo: a tunnel to an address we cannot check
    ipaddress.IPv6Network("fec0::/10"),  # site-local (deprecated): private by intent
)
"""Prefixes refused whatever they embed (Python 3.11 calls some of them global)."""


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.sixtofour is not None:  # 6to4 (2002::/16, RFC 3056)
        return address.sixtofour
    if any(address in net for net in _EMBEDDING_V4):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """Global unicast only: not loopback, private, link-local, site-local, CGNAT
    (100.64/10), ULA, multicast, reserved or unspecified; an IPv6 address embedding an IPv4
    one (IPv4-mapped, NAT64, 6to4) is judged by the IPv4 address it reaches, and the other
    translation prefixes are refused (see `_NEVER_PUBLIC`)."""
    if isinstance(address, ipaddress.IPv6Address):
        if any(address in net for net in _NEVER_PUBLIC):
            return False
        embedded = _embedded_v4(address)
        if embedded is not None:
            return is_public(embedded)
    return (
        address.is_global
        and not address.is_multicast
        and not address.is_reserved
        and not address.is_link_local
    )


def parse(url: str, *, allow_private: bool) -> URL:
    """The URL as the HTTP client will read it (the same parser: no parser differential),
    or TargetRefusedError for a URL that is malformed or not https."""
    try:
        parsed = URL(url)
        host, port = parsed.raw_host, parsed.port
    except (ValueError, TypeError) as exc:  # bad port, bad IDNA (UnicodeError is a ValueError)
        raise TargetRefusedError(f"invalid URL: {type(exc).__name__}") from exc
    if parsed.scheme != "https" and not (allow_private and parsed.scheme == "http"):
        raise TargetRefusedError(f"scheme {parsed.scheme!r} refused: https only")
    if not host or port is None or not parsed.is_absolute():
        raise TargetRefusedError("URL has no host")
    return parsed


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:  # a name, not an address
        return None


async def resolve(url: str, *, allow_private: bool, lookup: Lookup = system_lookup) -> Target:
    """Parse, resolve and check `url`; raises TargetRefusedError when it may not be called."""
    parsed = parse(url, allow_private=allow_private)
    host, port = str(parsed.raw_host), int(parsed.port or 0)
    literal = _literal(host)
    try:
        addresses = [literal] if literal is not None else await lookup(host, port)
    except (OSError, UnicodeError) as exc:  # gaierror, or a name the resolver cannot encode
        raise TargetRefusedError(f"host does not resolve: {exc}") from exc
    if not addresses:
        raise TargetRefusedError("host resolves to no address")
    if not allow_private:
        blocked = [a for a in addresses if not is_public(a)]
        if blocked:
            raise TargetRefusedError(f"address {blocked[0]} is not public")
    return Target(parsed, host, port, tuple(addresses))
