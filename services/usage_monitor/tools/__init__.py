"""Operator tools of the `usage-monitor` command: simulate, watch, rebuild."""
