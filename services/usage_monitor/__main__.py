"""`usage-monitor <command>`: parse the command line, read the settings once, and hand over to
the module that owns the command (``entrypoints/worker.py``, ``tools/``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys

from pydantic import ValidationError

from simwatch_runtime import redact
from simwatch_runtime.process import settings_error

from .settings import Settings

DESCRIPTION = (
    "`usage-monitor worker`: validate settings and dependencies, then run the faust worker."
)


def _parser() -> argparse.ArgumentParser:
    from .entrypoints import worker
    from .tools import explain, rebuild, replay, simulate, watch

    parser = argparse.ArgumentParser(prog="usage-monitor", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    worker.add_arguments(sub.add_parser("worker", help="run a usage_monitor worker"))
    sub.add_parser("check", help="validate settings and reach Kafka and Redis, then exit")
    rebuild.add_arguments(
        sub.add_parser(
            "rebuild",
            help="after Redis lost its data: rewind the workers' consumer groups to replay Kafka",
        )
    )
    simulate.add_arguments(sub.add_parser("simulate", help="produce a synthetic fleet's traffic"))
    watch.add_arguments(sub.add_parser("watch", help="a live view of the running services"))
    explain.add_arguments(
        sub.add_parser("explain", help="why a card is in its state and what would change it")
    )
    replay.add_arguments(
        sub.add_parser("replay", help="re-run a card's inputs and diff them with card.decisions")
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "watch":
        from .tools import watch

        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends the view
            watch.run(args)
        return 0
    if args.command == "simulate":
        from .tools import simulate

        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a user stops it
            asyncio.run(simulate.run(args))
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
    return _run(args, settings)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from .entrypoints import preflight

    if args.command == "explain":  # reads Redis only: answers while Kafka is away
        from .tools import explain

        return explain.run(settings, args)
    if args.command == "replay":  # reads Kafka only
        from .tools import replay

        return replay.run(settings, args)
    if preflight.run(settings):
        return 2
    if args.command == "check":
        print("usage-monitor: settings valid, Kafka and Redis reachable")
        return 0
    if args.command == "rebuild":
        from .tools import rebuild

        return rebuild.run(settings, args.since, args.wait)
    from .entrypoints import worker

    return worker.run(settings, args.loglevel)


if __name__ == "__main__":
    sys.exit(main())
