"""Webhook targets: only public https endpoints, checked after resolution."""

from __future__ import annotations

import ipaddress

import pytest

from notifier.channels.ssrf import IPAddress, TargetRefusedError, is_public, resolve


@pytest.mark.parametrize(
    "url",
    [
        "https://127.1/hook",
        "https://0x7f000001/hook",
        "https://[::1]/hook",
        "https://[::ffff:10.0.0.1]/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://100.64.0.1/hook",
        "https://10.1.2.3/hook",
        "https://192.168.1.10/hook",
        "https://[fd00::1]/hook",
        "https://0.0.0.0/hook",
        "https://localhost/hook",
        "http://93.184.216.34/hook",
        "ftp://93.184.216.34/hook",
    ],
)
async def test_private_loopback_and_plain_http_targets_are_refused(url: str) -> None:
    with pytest.raises(TargetRefusedError):
        await resolve(url, allow_private=False)


async def test_public_address_is_pinned_and_keeps_its_host() -> None:
    target = await resolve("https://93.184.216.34:8443/hook?x=1", allow_private=False)
    assert str(target.address) == "93.184.216.34"
    assert target.url.host == "93.184.216.34" and target.url.port == 8443
    assert target.url.path == "/hook"


async def test_local_targets_allowed_only_when_configured() -> None:
    target = await resolve("http://127.0.0.1:9/hook", allow_private=True)
    assert str(target.address) == "127.0.0.1"


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        # NAT64 (RFC 6052): the well-known prefix embeds an IPv4 address in the last 32 bits
        ("64:ff9b::7f00:1", False),  # 127.0.0.1
        ("64:ff9b::a00:1", False),  # 10.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # 169.254.169.254
        ("64:ff9b::5db8:d822", True),  # 93.184.216.34, reached through a NAT64 gateway
        ("64:ff9b:1::5db8:d822", False),  # local-use NAT64 (RFC 8215): never public
        # 6to4 (RFC 3056): 2002:AABB:CCDD::/48 embeds AA.BB.CC.DD
        ("2002:7f00:1::1", False),
        ("2002:c0a8:101::1", False),  # 192.168.1.1
        ("2002:5db8:d822::1", True),
        # IPv4-compatible (deprecated) and IPv4-mapped
        ("::7f00:1", False),
        ("::5db8:d822", False),  # deprecated form: refused whatever it embeds
        ("::ffff:7f00:1", False),
        ("::ffff:a9fe:a9fe", False),
        ("::ffff:5db8:d822", True),
        ("::ffff:0:7f00:1", False),  # IPv4-translated (SIIT)
        # Teredo (RFC 4380): server and obfuscated client addresses embedded
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),
        ("2001:0:7f00:1::1", False),
        # site-local (deprecated), link-local, ULA, loopback, unspecified, multicast
        ("fec0::1", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("::1", False),
        ("::", False),
        ("ff02::1", False),
        ("100::1", False),  # discard-only
        ("2001:db8::1", False),  # documentation
    ],
)
def test_embedded_and_translated_addresses_are_judged_by_what_they_reach(
    address: str, public: bool
) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


async def test_a_name_resolving_to_a_nat64_loopback_is_refused() -> None:
    async def nat64(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address("64:ff9b::7f00:1")]

    with pytest.raises(TargetRefusedError):
        await resolve("https://hooks.example.test/x", allow_private=False, lookup=nat64)
