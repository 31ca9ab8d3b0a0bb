"""usage_monitor: counts usage per card and cycle, and owns each card's suspension lifecycle."""
