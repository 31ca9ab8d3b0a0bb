"""Webhook targets: only public https endpoints, checked after resolution."""

from __future__ import annotations

import pytest

from notifier.channels.ssrf import TargetRefusedError, resolve


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
