"""The crash-point switch fault tests use: off by default, strict about what it accepts."""

from __future__ import annotations

import pytest

from usage_monitor.crash_points import _armed, crash_point


def test_unset_means_off_and_reaching_a_point_does_nothing() -> None:
    assert _armed(None) is None and _armed("") is None
    crash_point("usage.before_commit")  # this process is not armed: it lives on


def test_a_point_and_a_count() -> None:
    assert _armed("outbox.before_ack:3") == ("outbox.before_ack", 3)


@pytest.mark.parametrize("spec", ["usage.before_commit", "nowhere:1", "outbox.before_ack:0"])
def test_a_typo_is_an_error_not_a_silent_no_op(spec: str) -> None:
    with pytest.raises(ValueError, match="SIMWATCH_CRASH_AT"):
        _armed(spec)
