"""`provisioning-sim`: flags over ``PROVISIONING_SIM_*`` settings, then the simulator's loop."""

from __future__ import annotations

import argparse
import logging
import sys

from aiokafka.errors import KafkaError
from pydantic import ValidationError

from simwatch_runtime import redact
from simwatch_runtime.process import new_event_loop

from .settings import PREFIX, Settings
from .simulator import run

DESCRIPTION = (
    "Stand in for the carrier's HLR / CMP provisioning path: answer card.commands on "
    "card.command_results (delayed, sometimes failed, rejected, dropped or duplicated) and "
    "publish card.network_observed events. Flags win over the environment."
)

# (flag, settings field, type, help)
_FLAGS: list[tuple[str, str, type, str]] = [
    ("--bootstrap", "kafka_bootstrap_servers", str, "Kafka (KAFKA_BOOTSTRAP_SERVERS)"),
    ("--group-id", "group_id", str, "consumer group of card.commands"),
    ("--topic-commands", "topic_commands", str, "input (or USAGE_MONITOR_TOPIC_COMMANDS)"),
    ("--topic-results", "topic_results", str, "output (or USAGE_MONITOR_TOPIC_COMMAND_RESULTS)"),
    ("--topic-events", "topic_events", str, "observations (or USAGE_MONITOR_TOPIC_EVENTS)"),
    ("--delay-min", "delay_min_s", float, "least delay of an answer, seconds (0.2)"),
    ("--delay-max", "delay_max_s", float, "longest delay of an answer, seconds (2)"),
    ("--drop-rate", "drop_rate", float, "share of commands never answered (0)"),
    ("--fail-rate", "fail_rate", float, "share answered `failed` (0)"),
    ("--reject-rate", "reject_rate", float, "share answered `rejected` (0)"),
    ("--duplicate-rate", "duplicate_rate", float, "share of answers published twice (0)"),
    ("--observe-interval", "observe_interval_s", float, "seconds between observations (30; 0 off)"),
    ("--observe-max", "observe_max", int, "cards observed per round (1000)"),
    ("--drift-rate", "drift_rate", float, "share of suspended cards re-activated (0)"),
    ("--seed", "seed", int, "random seed, for a reproducible run"),
    ("--duration", "duration_s", float, "seconds to run (0: until SIGTERM / SIGINT)"),
    ("--summary-interval", "summary_interval_s", float, "seconds between summary lines (5)"),
]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="provisioning-sim", description=DESCRIPTION)
    for flag, field, kind, text in _FLAGS:
        env = "" if field == "kafka_bootstrap_servers" else f"; env {PREFIX}{field.upper()}"
        metavar = {str: "NAME", int: "N", float: "X"}[kind]
        parser.add_argument(
            flag, dest=field, type=kind, default=None, metavar=metavar, help=text + env
        )
    parser.add_argument(
        "--offset-reset",
        dest="offset_reset",
        choices=["earliest", "latest"],
        default=None,
        help="where a new consumer group starts reading (earliest)",
    )
    parser.add_argument("--loglevel", default="info", help="log level (info)")
    return parser


def _settings_error(exc: ValidationError) -> str:
    """One line naming the variable and flag at fault (or none, for a mismatch of several)."""
    flags = {field: flag for flag, field, _, _ in _FLAGS}
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        name = str(err["loc"][0]) if err["loc"] else ""
        field = name.lower().removeprefix(PREFIX.lower())  # an alias: the variable's name
        env = name if name.isupper() else f"{PREFIX}{name.upper()}"
        env = "KAFKA_BOOTSTRAP_SERVERS" if field == "kafka_bootstrap_servers" else env
        where = f"{env} ({flags[field]}): " if field in flags else ""
        parts.append(f"{where}{err['msg']}")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None and k != "loglevel"}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        print(f"provisioning-sim: invalid setting: {_settings_error(exc)}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    redact.install(args.loglevel)
    loop = new_event_loop()
    try:
        loop.run_until_complete(run(settings))
    except KafkaError as exc:
        print(f"provisioning-sim: Kafka: {exc!r}", file=sys.stderr)
        return 1
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
