"""Process start-up both services share: the event loop, and settings errors in one line."""

from __future__ import annotations

import asyncio

from pydantic import ValidationError

from . import aiokafka_patch

SHARED_SETTINGS = frozenset({"KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL"})


def settings_error(exc: ValidationError, prefix: str) -> str:
    """One line naming the environment variable(s) at fault."""
    parts = []
    for err in exc.errors(include_url=False):
        if not err["loc"]:  # a rule across settings: its message names them
            parts.append(str(err["msg"]).removeprefix("Value error, "))
            continue
        name = str(err["loc"][0])
        env = name.upper() if name.upper() in SHARED_SETTINGS else (f"{prefix}{name.upper()}")
        parts.append(f"{env}: {err['msg']}")
    return "; ".join(parts)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where installed. faust's `--loop` option does not switch loops when the worker is
    started programmatically, so the loop is made here, before faust asks for one. aiokafka
    is patched here too, to survive uvloop's closed-transport error (`aiokafka_patch`)."""
    aiokafka_patch.install()
    try:
        import uvloop
    except ImportError:  # optional: plain asyncio works, somewhat slower
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
