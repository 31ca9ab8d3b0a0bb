"""Unit-test safety: no test may end the pytest process through a worker's exit timer."""

from __future__ import annotations

import pytest

from usage_monitor.entrypoints import app, usage_consumer


@pytest.fixture(autouse=True)
def _no_exit_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    # A crashed consumer arms a timer that calls os._exit 20 s later; in a test process it
    # would end the whole run. Tests that check the timer is armed stub it themselves.
    monkeypatch.setattr(usage_consumer, "exit_after", lambda seconds: None)
    monkeypatch.setattr(app, "exit_after", lambda seconds: None)
