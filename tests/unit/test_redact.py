"""Secrets never reach the logs: URL and text redaction, the log record factory both services
install, the loggers it quiets, and the preflight's error lines."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from simwatch_runtime import redact
from simwatch_runtime.errors import ConfigError
from simwatch_runtime.preflight import check_redis


@pytest.mark.parametrize(
    ("url", "shown", "hidden"),
    [
        ("redis://:s3cret-pw@redis:6379/0", "redis://***@redis:6379/0", ["s3cret-pw"]),
        ("redis://default:s3cret-pw@redis:6379/1", "redis://***@redis:6379/1", ["s3cret-pw"]),
        (
            "redis://redis:6379/0?password=s3cret-pw&socket_timeout=5",
            "redis://redis:6379/0?…",
            ["s3cret-pw"],
        ),
        ("rediss+cluster://u:pw-9@node:7000", "rediss+cluster://***@node:7000", ["pw-9"]),
        (
            "https://user:hook-pw@hooks.acme.example/services/T0/B0/XyZ?token=tok-1#frag",
            "https://***@hooks.acme.example/…",
            ["hook-pw", "tok-1", "XyZ", "services"],
        ),
        ("https://sms.example:8443/send?key=k-1", "https://sms.example:8443/…", ["k-1"]),
        ("https://sms.example", "https://sms.example", []),
    ],
)
def test_redact_url_keeps_where_and_hides_credentials_paths_and_queries(
    url: str, shown: str, hidden: list[str]
) -> None:
    got = redact.redact_url(url)
    assert got == shown
    assert not [h for h in hidden if h in got]


def test_redact_text_hides_urls_phone_numbers_iccids_and_secrets() -> None:
    text = (
        "POST https://u:pw-1@hook.example/x?token=tok-2 for +8613912345678 "
        "card 8986041234567ABCXYZ and b'89860400000000000001' secret whsec_abcDEF123+/= "
        "password=hunter2 token: ok; alert alr-b28d27acd1a8dabcd31c6ed8942eb5a3"
    )
    got = redact.redact(text)
    for secret in (
        "pw-1",
        "tok-2",
        "/x",
        "8613912345678",
        "8986041234567ABCXYZ",
        "BCXYZ",
        "89860400000000000001",
        "abcDEF123",
        "hunter2",
    ):
        assert secret not in got, (secret, got)
    assert "…XYZ" not in got and "…CXYZ" in got and "…0001" in got  # at most the last 4
    assert "+…78" in got
    assert "alr-b28d27acd1a8dabcd31c6ed8942eb5a3" in got  # ids that are not ICCIDs stay
    assert redact.mask_iccid("8986041234567ABCXYZ") == "…CXYZ"
    assert (
        redact.redact("REDIS_URL=redis://h:1/0: Redis down.")
        == "REDIS_URL=redis://h:1/0: Redis down."
    )


@pytest.fixture
def installed() -> Iterator[None]:
    factory = logging.getLogRecordFactory()
    levels = {name: logging.getLogger(name).level for name in redact.QUIET_FLOORS}
    redact.install("debug")
    yield
    logging.setLogRecordFactory(factory)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("installed")
def test_every_log_record_is_redacted_and_http_loggers_stay_quiet(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger("usage_monitor.test")
    log.warning("sending to %s for %s", "https://u:pw-3@h.example/p?t=tok-4", "+8613800000001")
    try:
        raise RuntimeError("failed at http://h.example/hook?token=tok-5")
    except RuntimeError:
        log.exception("card %s", "8986041234567ABCXYZ")
    text = caplog.text
    assert "sending to https://***@h.example/…" in text
    for secret in ("pw-3", "tok-4", "8613800000001", "tok-5", "8986041234567ABCXYZ"):
        assert secret not in text, secret
    for name, floor in redact.QUIET_FLOORS.items():
        assert logging.getLogger(name).getEffectiveLevel() >= floor
    assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING
    assert logging.getLogger("httpcore").getEffectiveLevel() >= logging.WARNING


@pytest.mark.parametrize(
    "url",
    [
        "redis://:pw-in-userinfo@127.0.0.1:1/0",
        "redis://127.0.0.1:1/0?password=pw-in-query",
        "redis+cluster://127.0.0.1:1/3?password=pw-in-query",
    ],
)
async def test_preflight_errors_never_show_the_redis_password(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        await check_redis(url, loading_wait_s=0)
    assert "REDIS_URL=" in str(caught.value)
    assert "pw-in" not in str(caught.value), str(caught.value)
