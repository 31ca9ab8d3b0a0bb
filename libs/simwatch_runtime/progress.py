"""What a consumer's handlers tell its stall watchdog (`simwatch_runtime.liveness`)."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(slots=True)
class Progress:
    """Batches applied (the sign of progress), and when a retry loop last saw a dependency
    fail (monotonic): a consumer waiting on a failing dependency is not stalled, its retries
    are logged and counted, and a restart would not cure them."""

    applied: int = 0
    failed_at: float = -1e9

    def note_applied(self) -> None:
        self.applied += 1

    def note_failure(self) -> None:
        self.failed_at = time.monotonic()
