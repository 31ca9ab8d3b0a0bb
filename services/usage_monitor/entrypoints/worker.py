"""`usage-monitor worker`: the faust worker process, built by ``bootstrap`` from its settings."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging

from simwatch_runtime.process import new_event_loop

from ..settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--loglevel", default="info")


def tune_gc() -> None:
    """The hot path allocates a few objects per record and makes no reference cycles, while
    the process holds a large long-lived heap (faust, aiokafka, modules) that every full
    collection would scan again. Freeze what exists after start-up and collect the young
    generation less often. Measured: `make bench`, one worker (docs/benchmarks.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def run(settings: Settings, loglevel: str) -> int:
    import faust

    from ..bootstrap import build
    from .app import create_app

    logging.basicConfig(
        level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if settings.clock_offset_s:
        logging.getLogger(__name__).warning(
            "USAGE_MONITOR_CLOCK_OFFSET_S=%s: deciding by a shifted clock (tests only)",
            settings.clock_offset_s,
        )
    asyncio.set_event_loop(new_event_loop())
    app, _ = create_app(build(settings))
    tune_gc()
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
    return 0
