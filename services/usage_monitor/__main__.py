"""`usage-monitor worker`: validate settings and dependencies, then run the faust worker."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import sys
from datetime import datetime

from pydantic import ValidationError

from simwatch_runtime import redact
from simwatch_runtime.errors import ConfigError
from simwatch_runtime.process import new_event_loop, settings_error

from .settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="usage-monitor", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker", help="run a usage_monitor worker")
    worker.add_argument("--loglevel", default="info")
    sub.add_parser("check", help="validate settings and reach Kafka and Redis, then exit")
    rebuild = sub.add_parser(
        "rebuild",
        help="after Redis lost its data: rewind the workers' consumer groups to replay Kafka",
    )
    rebuild.add_argument(
        "--since",
        required=True,
        type=datetime.fromisoformat,
        help="replay usage records from this moment on, with its UTC offset "
        "(normally the start of the current cycle, e.g. 2026-11-01T00:00:00+08:00)",
    )
    rebuild.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="retry this long while a group still has members (a killed worker stays one "
        "until its session times out)",
    )
    from .simulate import add_arguments

    add_arguments(sub.add_parser("simulate", help="produce a synthetic fleet's traffic"))
    from . import watch

    watch.add_arguments(sub.add_parser("watch", help="a live view of the running services"))
    args = parser.parse_args(argv)
    if args.command == "watch":
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends the view
            watch.run(args)
        return 0
    if args.command == "simulate":
        from .simulate import run

        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a user stops it
            asyncio.run(run(args))
        return 0

    redact.install(args.loglevel if args.command == "worker" else logging.WARNING)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(
            f"usage-monitor: invalid setting: {settings_error(exc, 'USAGE_MONITOR_')}",
            file=sys.stderr,
        )
        return 2
    from .preflight import preflight

    # aiokafka logs each refused connection itself; the check reports it once, in one line.
    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    try:
        asyncio.run(preflight(settings))
    except ConfigError as exc:
        print(f"usage-monitor: {redact.redact(str(exc))}", file=sys.stderr)
        return 2
    finally:
        kafka_log.setLevel(level)
    if args.command == "check":
        print("usage-monitor: settings valid, Kafka and Redis reachable")
        return 0
    if args.command == "rebuild":
        return run_rebuild(settings, args.since, args.wait)
    return run_worker(settings, args.loglevel)


def run_rebuild(settings: Settings, since: datetime, wait_s: float) -> int:
    from .rebuild import rebuild

    try:
        moved = asyncio.run(rebuild(settings, since, wait_s))
    except ConfigError as exc:
        print(f"usage-monitor: {redact.redact(str(exc))}", file=sys.stderr)
        return 2
    for m in moved:
        offsets = " ".join(f"{p}:{o}" for p, o in sorted(m.offsets.items()))
        print(f"usage-monitor: group {m.group} on {m.topic} now at {offsets}")
    print("usage-monitor: start the workers to replay")
    return 0


def tune_gc() -> None:
    """The hot path allocates a few objects per record and makes no reference cycles, while
    the process holds a large long-lived heap (faust, aiokafka, modules) that every full
    collection would scan again. Freeze what exists after start-up and collect the young
    generation less often. Measured: `make bench`, one worker (docs/benchmarks.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def run_worker(settings: Settings, loglevel: str) -> int:
    import faust

    from .app import create_app
    from .bootstrap import build

    logging.basicConfig(
        level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    asyncio.set_event_loop(new_event_loop())
    app, _ = create_app(build(settings))
    tune_gc()
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
